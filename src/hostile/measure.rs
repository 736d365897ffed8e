//! The measuring side of `bench/hostile.sh` (`tranzcast bench hostile`):
//! for each attack, a legitimate viewer plays the title and a probe (its own
//! process, `tranzcast bench probe`) times small requests while an attacker
//! process runs; the attacked server's RSS, descriptors, requests in hand
//! and tasks are read before, during and after, and the goals checked.

#![allow(clippy::wildcard_imports)]

use super::probe::{ProbeOver, run_probe};
use super::*;
use clap::ValueEnum;

#[derive(clap::Args, Debug)]
pub struct HostileArgs {
    /// The edge under attack (https://localhost:PORT) and its process id.
    #[arg(long)]
    edge: String,
    #[arg(long)]
    edge_pid: u32,
    /// The origin (attacked by the play flood) and its process id.
    #[arg(long)]
    origin: String,
    #[arg(long)]
    origin_pid: u32,
    /// The cluster's CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The storefront token (a customer and an order for the legitimate viewer).
    #[arg(long)]
    storefront_token: String,
    /// The title the viewer plays, and its original file (for byte checks).
    #[arg(long)]
    title: String,
    #[arg(long)]
    plain: PathBuf,
    /// Plaintext bytes per segment (as ingested).
    #[arg(long)]
    segment_size: usize,
    /// Wall time of one segment's playback.
    #[arg(long, default_value_t = 1.0)]
    segment_wall: f64,
    /// Seconds per attack.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Attacks to run (comma-separated kinds; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    attacks: Vec<AttackKind>,
    /// The edge's and the origin's memory cache budgets, bytes (for the RSS goal).
    #[arg(long)]
    edge_budget: u64,
    #[arg(long)]
    origin_budget: u64,
    /// The servers' idle timeout, seconds (descriptors must be back within it).
    #[arg(long, default_value_t = 60.0)]
    idle_timeout: f64,
    /// Scale of the attacks (1.0: the figures: 5,000 slowloris, 10,000 + 2,000 idle, 1,000,000 h3 requests).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// CPUs for the probe (a `taskset -c` list), when not those of this process.
    #[arg(long)]
    probe_cpus: Option<String>,
    /// Client addresses each attack comes from, instead of its own default.
    #[arg(long)]
    sources: Option<usize>,
    /// Niceness of the attack processes.
    #[arg(long, default_value_t = 10)]
    nice: i32,
    /// Write every figure as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())))
        .flatten()
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) of a process so far, seconds.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// This process's niceness.
fn own_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace().nth(16).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn fds_of(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}

/// Datagrams the kernel dropped at the UDP sockets bound to `port` (every
/// socket of a reuseport group), from `/proc/net/udp{,6}`: a full receive
/// buffer drops honest packets with the flood's.
fn udp_drops(port: u16) -> u64 {
    ["/proc/net/udp", "/proc/net/udp6"].iter().map(|f| udp_drops_in(&std::fs::read_to_string(f).unwrap_or_default(), port)).sum()
}

/// [`udp_drops`] on the table's text: each row's local address is
/// `HEXADDR:HEXPORT`, its last column the socket's drops.
fn udp_drops_in(table: &str, port: u16) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let local = u16::from_str_radix(cols.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            (local == port).then(|| cols.last()?.parse::<u64>().ok()).flatten()
        })
        .sum()
}

/// A metric's value from Prometheus text (the first sample named exactly `name`).
fn metric_in(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(f64::NAN)
}

fn p99(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1]
}

/// Milliseconds of the samples, failures counted as 10 s.
fn latencies(samples: &[(f64, f64)]) -> (Vec<f64>, u64) {
    let failed = samples.iter().filter(|(_, ms)| *ms < 0.0).count() as u64;
    (samples.iter().map(|(_, ms)| if *ms < 0.0 { 10_000.0 } else { *ms }).collect(), failed)
}

#[derive(serde::Serialize, Default, Clone)]
struct Row {
    attack: String,
    target: String,
    attacker: serde_json::Value,
    rss_idle_mib: f64,
    rss_peak_mib: f64,
    rss_after_10s_mib: f64,
    rss_goal_mib: f64,
    fds_before: u64,
    fds_peak: u64,
    fds_after: u64,
    fds_back_s: f64,
    play_identical: bool,
    play_finished: bool,
    longest_stall_s: f64,
    probe_p99_unloaded_ms: f64,
    probe_p99_attack_ms: f64,
    probe_failed: u64,
    /// The attacked server's CPU during the attack, % of one core.
    server_cpu_pct: f64,
    /// QUIC Initials answered with a Retry, and handshakes failed or
    /// abandoned (each a signature spent), during the attack and the 10 s after.
    quic_retries: f64,
    handshakes_failed: f64,
    /// Datagrams dropped at the server's UDP sockets (receive buffer full).
    udp_dropped: u64,
    /// HTTP/3 send windows held to their address's share during the attack.
    send_windows_capped: f64,
    in_flight_after: f64,
    tasks_before: f64,
    tasks_after: f64,
    goals_met: bool,
}

pub fn hostile(a: HostileArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(hostile_run(a))
}

async fn hostile_run(a: HostileArgs) -> Result<()> {
    use base64::Engine;
    let ca = std::fs::read_to_string(&a.ca).with_context(|| format!("cannot read {}", a.ca.display()))?;
    for url in [&a.edge, &a.origin] {
        loopback_target(url)?;
    }
    let http = tranzcast_net::client::https(ca.as_bytes())?;
    use tranzcast_proto::{answers, api};
    let storefront = |path: &str| http.post(format!("{}{path}", a.origin)).bearer_auth(&a.storefront_token);
    let b =
        storefront("/v1/customers").json(&api::CustomerBody { name: "viewer".into() }).send().await?.error_for_status()?.bytes().await?;
    let c: answers::CustomerCreated = answers::parse_small("customer", &b)?;
    let b =
        storefront("/v1/orders").json(&api::OrderBody::buy(c.customer, a.title.clone())).send().await?.error_for_status()?.bytes().await?;
    let o: answers::OrderPlaced = answers::parse_small("order", &b)?;
    let ticket = o.ticket;
    let p = http
        .post(format!("{}/v1/play", a.origin))
        .json(&api::PlayBody::client(ticket.clone()))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let cert = answers::PlayGrant::parse(&p)?.certificate;
    let auth = format!("Tranzcast {cert}");
    let t = http.get(format!("{}/v1/titles/{}", a.origin, a.title)).send().await?.error_for_status()?.bytes().await?;
    let t: answers::TitleSummary = answers::parse_bounded("title", 4 << 20, &t)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.manifest_blob.as_deref().context("no manifest")?)?;
    let manifest = tranzcast_proto::manifest::SignedManifest::decode(&raw)?.manifest;
    let blob = manifest.segments.first().context("no segments")?.to_hex();
    // Warm the edge: every segment through it once.
    for s in &manifest.segments {
        http.get(format!("{}/v1/blobs/{s}", a.edge)).header("authorization", &auth).send().await?.error_for_status()?.bytes().await?;
    }
    let plain = std::fs::read(&a.plain).with_context(|| format!("cannot read {}", a.plain.display()))?;
    let title = tranzcast_loadtest::titles::Title {
        id: a.title.clone(),
        segments: manifest.segments.len() as u64,
        plain: plain.chunks(a.segment_size.max(1)).map(blake3::hash).collect(),
    };
    let attacks = if a.attacks.is_empty() {
        vec![
            AttackKind::Slowloris,
            AttackKind::Idle,
            AttackKind::Reset,
            AttackKind::H3Flood,
            AttackKind::Oversized,
            AttackKind::Ranges,
            AttackKind::PlayFlood,
            AttackKind::InitialFlood,
            AttackKind::H3Silent,
        ]
    } else {
        a.attacks.clone()
    };
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for kind in attacks {
        let on_origin = kind == AttackKind::PlayFlood;
        let (target, pid, prefix, budget) =
            if on_origin { (&a.origin, a.origin_pid, "origin", a.origin_budget) } else { (&a.edge, a.edge_pid, "edge", a.edge_budget) };
        // The probe: a 4 KiB range of a hot blob on the edge, or a title's summary on the origin.
        // Under silent clients, a whole 1 MiB blob on one HTTP/3 connection:
        // its window is what they would take.
        let (probe_url, probe_range) = if on_origin {
            (format!("{}/v1/titles/{}", a.origin, a.title), false)
        } else {
            (format!("{}/v1/blobs/{blob}", a.edge), kind != AttackKind::H3Silent)
        };
        let probe_over = match kind {
            // Under an Initial flood, what matters is whether honest HTTP/3 clients still get in.
            AttackKind::InitialFlood => ProbeOver::H3Fresh,
            AttackKind::H3Silent => ProbeOver::H3Kept,
            _ => ProbeOver::H2,
        };
        // The viewer presses play a second in, so its session opens under attack.
        let start_viewer = |limit: Duration| -> Result<tokio::task::JoinHandle<tranzcast_loadtest::viewer::ViewerOutcome>> {
            let setup = tranzcast_loadtest::viewer::ViewerSetup {
                origin: a.origin.clone(),
                ticket: ticket.clone(),
                http: tranzcast_net::client::https(ca.as_bytes())?,
                home: None,
                precast_segments: 0,
                segment_wall: Duration::from_secs_f64(a.segment_wall),
                buffer: 4,
                parallel: 4,
                access: (0.0, Duration::ZERO),
            };
            let plan = tranzcast_loadtest::demand::ViewerPlan {
                id: 0,
                arrival: Duration::from_secs(1),
                title: 0,
                watch: title.segments,
                seek: None,
            };
            let title = title.clone();
            let live = Arc::new(tranzcast_loadtest::viewer::Live::default());
            Ok(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let start = Instant::now();
                tranzcast_loadtest::viewer::watch(plan, &title, setup, start, start + limit, &live).await
            }))
        };
        // Unloaded: the same viewer plays (its start is the busiest part), no attack.
        eprintln!("== {kind:?}: probe unloaded, a viewer playing (10 s)");
        let calm = start_viewer(Duration::from_secs(60))?;
        let (unloaded, _) =
            latencies(&run_probe(&probe_url, &auth, probe_range, &a.ca, 10.0, a.probe_cpus.as_deref(), probe_over, None).await?);
        calm.abort();
        let _ = calm.await;
        let scrape = || async {
            match http.get(format!("{target}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        };
        let before = scrape().await;
        let udp_port = loopback_target(target)?.port();
        let drops_before = udp_drops(udp_port);
        let (rss_idle, fds_before) = (rss_of(pid), fds_of(pid));
        let tasks_before = metric_in(&before, &format!("{prefix}_tasks"));
        // The attacker, its own process at a lower priority.
        let s = |x: f64| ((x * a.scale).round() as usize).max(1).to_string();
        // The h3 flood runs to its million requests (at most 120 s); the others their time.
        // The Initial flood's probe takes a new connection every 100 ms: at
        // least 30 s of it, for a p99 over some 300 samples.
        let attack_secs = match kind {
            AttackKind::H3Flood => a.seconds.max(120.0),
            AttackKind::InitialFlood => a.seconds.max(30.0),
            _ => a.seconds,
        };
        let mut args: Vec<String> = vec![
            "-n".into(),
            // nice(1) adds to our own niceness: the attacker ends at `a.nice`.
            (a.nice - own_nice()).max(0).to_string(),
            exe.display().to_string(),
            "bench".into(),
            "attack".into(),
            "--kind".into(),
            kind.to_possible_value().map(|v| v.get_name().to_string()).context("attack name")?,
            "--target".into(),
            target.clone(),
            "--ca".into(),
            a.ca.display().to_string(),
            "--blob".into(),
            blob.clone(),
            "--seconds".into(),
            attack_secs.to_string(),
        ];
        match kind {
            AttackKind::Slowloris => args.extend(["--connections".into(), s(5000.0), "--sources".into(), "50".into()]),
            AttackKind::Idle => {
                args.extend(["--connections".into(), s(10_000.0), "--quic".into(), s(2000.0), "--sources".into(), "64".into()])
            }
            AttackKind::Reset => {
                args.extend(["--cert".into(), cert.clone(), "--connections".into(), "64".into(), "--sources".into(), "16".into()])
            }
            AttackKind::H3Flood => args.extend(["--cert".into(), cert.clone(), "--requests".into(), s(1_000_000.0)]),
            AttackKind::Oversized => {
                args.extend(["--cert".into(), cert.clone(), "--connections".into(), "32".into(), "--sources".into(), "8".into()])
            }
            AttackKind::Ranges => args.extend(["--cert".into(), cert.clone(), "--connections".into(), "32".into()]),
            AttackKind::PlayFlood => args.extend(["--connections".into(), "64".into(), "--sources".into(), "16".into()]),
            AttackKind::InitialFlood => {
                args.extend(["--requests".into(), s(2_000_000.0), "--connections".into(), "8".into(), "--sources".into(), "64".into()])
            }
            // 64 connections from each of 4 addresses, 12 answers of 1 MiB each.
            AttackKind::H3Silent => args.extend([
                "--cert".into(),
                cert.clone(),
                "--connections".into(),
                s(256.0),
                "--sources".into(),
                "4".into(),
                "--streams".into(),
                "12".into(),
            ]),
        }
        if let Some(n) = a.sources {
            match args.iter().position(|x| x == "--sources") {
                Some(i) => args[i + 1] = n.to_string(),
                None => args.extend(["--sources".into(), n.to_string()]),
            }
        }
        eprintln!("== {kind:?}: attack ({} s) with a viewer playing and the probe", a.seconds);
        let mut attacker = tokio::process::Command::new("nice")
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the attacker")?;
        let attack_start = Instant::now();
        let cpu_start = cpu_of(pid);
        // The viewer presses play a second in, so its session opens under attack.
        let viewer = start_viewer(Duration::from_secs_f64(attack_secs + title.segments as f64 * a.segment_wall + 30.0))?;
        let stop = attack_start + Duration::from_secs_f64(attack_secs + 20.0);
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let sampler = {
            let done = done_rx.clone();
            tokio::spawn(async move {
                let (mut rss, mut fds) = (0u64, 0u64);
                while !*done.borrow() {
                    rss = rss.max(rss_of(pid));
                    fds = fds.max(fds_of(pid));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (rss, fds)
            })
        };
        let mut stdout = attacker.stdout.take().context("attacker stdout")?;
        let waiter = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text).await;
            let _ = attacker.wait().await;
            let _ = done_tx.send(true);
            text
        });
        let timeline = run_probe(
            &probe_url,
            &auth,
            probe_range,
            &a.ca,
            (stop - Instant::now()).as_secs_f64(),
            a.probe_cpus.as_deref(),
            probe_over,
            Some(done_rx.clone()),
        )
        .await?;
        let (loaded, probe_failed) = latencies(&timeline);
        // Every probe, beside the JSON (seconds into the attack, ms; -1: failed), to find what it waited on.
        if let Some(out) = &a.out {
            let text: String = timeline.iter().map(|(t, ms)| format!("{t:.3} {ms:.3}\n")).collect();
            let path = out.with_extension(format!("probe-{}.txt", format!("{kind:?}").to_lowercase()));
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
        // The slowest probes and when they came (seconds into the attack), for the log.
        let mut slow = timeline.clone();
        slow.sort_by(|a, b| b.1.total_cmp(&a.1));
        slow.truncate(12);
        eprintln!(
            "== {kind:?}: slowest probes (s into the attack, ms): {:?}",
            slow.iter().map(|(t, ms)| (format!("{t:.1}"), format!("{ms:.1}"))).collect::<Vec<_>>()
        );
        let text = waiter.await?;
        let attacker_json: serde_json::Value = text.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or_default();
        let (rss_peak, fds_peak) = sampler.await?;
        let server_cpu_pct = (cpu_of(pid) - cpu_start) / attack_start.elapsed().as_secs_f64().max(0.001) * 100.0;
        let outcome = viewer.await?;
        eprintln!("== {kind:?}: after (10 s), then descriptors back within the idle timeout");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let rss_after = rss_of(pid);
        let after = scrape().await;
        let refused = |text: &str, why: &str| metric_in(text, &format!("{prefix}_refused_total{{reason=\"{why}\"}}"));
        let retries_in = |text: &str| metric_in(text, &format!("{prefix}_quic_retries_total"));
        let quic_retries = retries_in(&after) - retries_in(&before);
        let udp_dropped = udp_drops(udp_port).saturating_sub(drops_before);
        let handshakes_failed = refused(&after, "handshake") - refused(&before, "handshake");
        let capped_in = |text: &str| metric_in(text, &format!("{prefix}_h3_send_window_capped_total"));
        let send_windows_capped = capped_in(&after) - capped_in(&before);
        let waited = Instant::now();
        let mut fds_after = fds_of(pid);
        // Tasks, and requests in hand (less this scrape's own).
        let work_now = || async {
            let m = scrape().await;
            (metric_in(&m, &format!("{prefix}_tasks")), metric_in(&m, &format!("{prefix}_requests_in_flight")) - 1.0)
        };
        // Pooled connections of our own clients (the viewer) count too: they
        // close with the idle timeout. QUIC connections hold no descriptor:
        // their tasks tell when the server let them go, and an attacker
        // that vanished without a word leaves its requests in hand until
        // the server gives up on them (the idle timeout, at the latest).
        let (mut tasks_after, mut in_flight_after) = work_now().await;
        while (fds_after > fds_before + 2 || tasks_after > tasks_before || in_flight_after > 0.0)
            && waited.elapsed() < Duration::from_secs_f64(a.idle_timeout + 10.0)
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            fds_after = fds_of(pid);
            (tasks_after, in_flight_after) = work_now().await;
        }
        let fds_back_s = 10.0 + waited.elapsed().as_secs_f64();
        let stall = outcome.stalls.iter().map(|(_, l)| *l).fold(0.0, f64::max);
        let mib = |b: u64| b as f64 / 1048576.0;
        let mut row = Row {
            attack: format!("{kind:?}"),
            target: prefix.to_string(),
            attacker: attacker_json,
            rss_idle_mib: mib(rss_idle),
            rss_peak_mib: mib(rss_peak),
            rss_after_10s_mib: mib(rss_after),
            rss_goal_mib: mib(rss_idle + budget + (256 << 20)),
            fds_before,
            fds_peak,
            fds_after,
            fds_back_s,
            play_identical: outcome.mismatches == 0 && outcome.error.is_none(),
            play_finished: outcome.finished,
            longest_stall_s: stall,
            probe_p99_unloaded_ms: p99(unloaded),
            probe_p99_attack_ms: p99(loaded),
            probe_failed,
            server_cpu_pct,
            quic_retries,
            handshakes_failed,
            udp_dropped,
            send_windows_capped,
            in_flight_after,
            tasks_before,
            tasks_after,
            goals_met: false,
        };
        row.goals_met = row.rss_peak_mib <= row.rss_goal_mib
            && row.fds_after <= row.fds_before + 2
            && row.fds_back_s <= a.idle_timeout + 10.0
            && row.play_identical
            && row.play_finished
            && row.longest_stall_s <= a.segment_wall
            && row.probe_p99_attack_ms <= 3.0 * row.probe_p99_unloaded_ms
            && row.in_flight_after <= 0.0
            && row.tasks_after <= row.tasks_before;
        eprintln!("{}", serde_json::to_string(&row)?);
        rows.push(row);
    }
    println!(
        "{:<12} {:<6} {:>9} {:>9} {:>9} {:>9} {:>13} {:>7} {:>6} {:>8} {:>15} {:>8} {:>11} {:>13} {:>9} {:>7} met",
        "attack",
        "target",
        "rss idle",
        "peak",
        "+10 s",
        "goal",
        "fds bef/peak/aft",
        "back s",
        "play",
        "stall s",
        "p99 ms idle/att",
        "inflight",
        "tasks b/a",
        "retry/hs fail",
        "udp drops",
        "capped",
    );
    for r in &rows {
        println!(
            "{:<12} {:<6} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>13} {:>7.1} {:>6} {:>8.2} {:>15} {:>8} {:>11} {:>13} {:>9} {:>7} {}",
            r.attack,
            r.target,
            r.rss_idle_mib,
            r.rss_peak_mib,
            r.rss_after_10s_mib,
            r.rss_goal_mib,
            format!("{}/{}/{}", r.fds_before, r.fds_peak, r.fds_after),
            r.fds_back_s,
            if r.play_identical && r.play_finished { "ok" } else { "BAD" },
            r.longest_stall_s,
            format!("{:.1}/{:.1}", r.probe_p99_unloaded_ms, r.probe_p99_attack_ms),
            r.in_flight_after,
            format!("{}/{}", r.tasks_before, r.tasks_after),
            format!("{}/{}", r.quic_retries, r.handshakes_failed),
            r.udp_dropped,
            r.send_windows_capped,
            if r.goals_met { "yes" } else { "NO" }
        );
    }
    println!("attackers:");
    for r in &rows {
        println!("  {:<12} {}", r.attack, r.attacker);
    }
    if let Some(p) = &a.out {
        std::fs::write(p, serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_drops_are_summed_over_the_port_s_sockets_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 5
 2: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 7
 3: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 100
 4: garbage
";
        assert_eq!(udp_drops_in(table, 0x1F90), 12);
        assert_eq!(udp_drops_in(table, 0x1F91), 100);
        assert_eq!(udp_drops_in(table, 1), 0);
        assert_eq!(udp_drops_in("", 0x1F90), 0);
    }
}
