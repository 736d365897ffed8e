//! Raw-speed baselines measured in the same process as the thing benchmarked,
//! so the bench scripts can print honest ratios on a noisy shared machine.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use tranzcast_proto::TitleId;
use tranzcast_proto::frame::FrameKind;
use tranzcast_proto::keys::{self, TitleKey};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// One attack client against a server on loopback, bounded in time (bench/hostile.sh).
    Attack(crate::hostile::AttackArgs),
    /// Every attack in turn against a running cluster's edge and origin, with a
    /// legitimate viewer and a latency probe; prints the table of bench/hostile.sh.
    Hostile(crate::hostile::HostileArgs),
    /// Times one small request after another, printing each (bench/hostile.sh's probe).
    Probe(crate::hostile::ProbeArgs),
    /// Ticket validations per second over HTTP/2 against raw Ed25519 sign+verify, same process.
    Tickets {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Concurrent validation requests.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Validate on this PostgreSQL (`postgres://...`, an empty database)
        /// instead of the embedded engine.
        #[arg(long)]
        state_url: Option<String>,
        /// Origin processes sharing the state (with --state-url), requests
        /// spread over them in turn.
        #[arg(long, default_value_t = 1)]
        origins: usize,
    },
    /// Cache policies on demand traces (bench/cache.sh): the edge's residency
    /// policy, LRU and Belady's optimum, by byte and object hit ratio.
    Cache {
        /// Seed of the Zipf trace.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Titles in the catalogue.
        #[arg(long, default_value_t = 1000)]
        titles: usize,
        /// Viewings in the Zipf trace.
        #[arg(long, default_value_t = 3000)]
        views: usize,
        /// Zipf exponent.
        #[arg(long, default_value_t = 0.8)]
        zipf: f64,
        /// The catalogue over the cache's size.
        #[arg(long, default_value_t = 10.0)]
        ratio: f64,
    },
    /// Raw AES-256-GCM-SIV sealing + blake3 hashing of a file's segments, no store.
    Crypto {
        /// Input file (read through the page cache, as ingest reads it).
        #[arg(long)]
        input: PathBuf,
        /// Segment size in bytes.
        #[arg(long, default_value_t = 4 << 20)]
        segment_size: usize,
        /// Threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// The edge's serving stack (our listeners: hyper, rustls, quinn + our HTTP/3) with
    /// nothing behind it: every file of a directory held in memory, served by
    /// name with one range at most; no access check, store,
    /// demand or headers beyond the length. What the stack allows, for bench/edge.sh.
    FloorServer {
        /// Address for TLS (TCP h1/h2 and UDP h3, same port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Directory whose files are served as /.../NAME.
        #[arg(long)]
        dir: PathBuf,
        /// Certificate (PEM), with --key.
        #[arg(long, requires = "key", conflicts_with = "ca_dir")]
        cert: Option<PathBuf>,
        /// Private key (PEM), with --cert.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Or: a local CA's directory (ca.pem, ca.key; created if absent)
        /// that issues the server a certificate for localhost and 127.0.0.1.
        #[arg(long, required_unless_present = "cert")]
        ca_dir: Option<PathBuf>,
    },
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Attack(a) => crate::hostile::attack(a),
        BenchCommand::Hostile(a) => crate::hostile::hostile(a),
        BenchCommand::Probe(a) => crate::hostile::probe(a),
        BenchCommand::Tickets { seconds, concurrency, state_url, origins } => tickets(seconds, concurrency, state_url.as_deref(), origins),
        BenchCommand::FloorServer { listen, dir, cert, key, ca_dir } => {
            let identity = match (cert, key, ca_dir) {
                (Some(c), Some(k), _) => tranzcast_net::TlsIdentity::from_pem_files(&c, &k)?,
                (_, _, Some(d)) => tranzcast_net::tls::LocalCa::load_or_create(&d)?.issue(&["localhost", "127.0.0.1"])?,
                _ => anyhow::bail!("give --cert and --key, or --ca-dir"),
            };
            let files = tranzcast_loadtest::floor::load_dir(&dir)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let server = tranzcast_loadtest::floor::start(listen, files, identity).await?;
                println!("{}", server.https_addr);
                crate::wait_for_signal().await;
                server.shutdown().await;
                anyhow::Ok(())
            })
        }
        BenchCommand::Cache { seed, titles, views, zipf, ratio } => cache(seed, titles, views, zipf, ratio),
        BenchCommand::Crypto { input, segment_size, threads } => {
            let threads = if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { threads };
            let file = std::fs::File::open(&input).with_context(|| format!("cannot open {}", input.display()))?;
            let len = file.metadata()?.len();
            let segments = len.div_ceil(segment_size as u64);
            let key = TitleKey::generate();
            let title = TitleId::new("bench")?;
            let started = Instant::now();
            let digest = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (file, key, title) = (&file, &key, &title);
                        s.spawn(move || -> Result<u64> {
                            let mut acc = 0u64;
                            let mut seq = t as u64;
                            while seq < segments {
                                let mut buf = keys::frame_buffer(segment_size);
                                buf.resize(tranzcast_proto::frame::FIXED_HEADER_LEN + segment_size, 0);
                                let off = seq * segment_size as u64;
                                let want = (len - off).min(segment_size as u64) as usize;
                                file.read_exact_at(&mut buf[tranzcast_proto::frame::FIXED_HEADER_LEN..][..want], off)?;
                                keys::seal_in_place(key, title, FrameKind::Media, seq, &mut buf)?;
                                acc ^= u64::from(blake3::hash(&buf).as_bytes()[0]);
                                seq += threads as u64;
                            }
                            Ok(acc)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("bench thread panicked"))))
                    .collect::<Result<Vec<_>>>()
            })?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"bytes": len, "threads": threads, "segment_size": segment_size, "elapsed_s": secs,
                    "mb_per_s": len as f64 / 1e6 / secs, "checksum": digest.iter().fold(0, |a, b| a ^ b)})
            );
            Ok(())
        }
    }
}

/// Raw Ed25519: one verify (the ticket) and one sign (the certificate) per
/// validation, on every core, for `seconds`, with dalek (the yardstick of
/// every figure since issue 22 was filed) or with AWS-LC (what the origin
/// signs with now: see `origin/src/signer.rs`).
fn raw_sign_verify(seconds: f64, aws_lc: bool) -> f64 {
    use ed25519_dalek::{Signer, SigningKey};
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let until = Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let seed = [t as u8 + 1; 32];
                    let mut msg = [0u8; 128];
                    let mut n = 0u64;
                    if aws_lc {
                        use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
                        let Ok(key) = Ed25519KeyPair::from_seed_unchecked(&seed) else { return 0 };
                        let public = UnparsedPublicKey::new(&ED25519, key.public_key().as_ref().to_vec());
                        let sig = key.sign(&msg);
                        while Instant::now() < until {
                            let ok = public.verify(&msg, sig.as_ref()).is_ok();
                            msg[0] = msg[0].wrapping_add(ok as u8);
                            let _ = key.sign(&msg);
                            n += 1;
                        }
                    } else {
                        let key = SigningKey::from_bytes(&seed);
                        let vk = key.verifying_key();
                        let sig = key.sign(&msg);
                        while Instant::now() < until {
                            let ok = vk.verify_strict(&msg, &sig).is_ok();
                            msg[0] = msg[0].wrapping_add(ok as u8);
                            let _ = key.sign(&msg);
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / seconds
}

/// Turns of plays and raw crypto in `bench tickets`.
const SLICES: usize = 5;

fn tickets(seconds: f64, concurrency: usize, state_url: Option<&str>, origins: usize) -> Result<()> {
    anyhow::ensure!(origins >= 1 && (origins == 1 || state_url.is_some()), "several origins need --state-url (a shared engine)");
    let dir = tempfile::Builder::new().prefix("tranzcast-bench-tickets-").tempdir()?;
    let data = dir.path().join("origin");
    {
        let store = crate::open_store(&data, true)?;
        let input = dir.path().join("t.bin");
        std::fs::write(&input, vec![7u8; 100_000])?;
        tranzcast_ingest::ingest(&store, &input, &tranzcast_ingest::IngestOptions::new(TitleId::new("bench")?))?;
    }
    let token = "bench-storefront-token-0123456789";
    let kek = dir.path().join("kek.hex");
    std::fs::write(&kek, hex::encode(tranzcast_proto::random_bytes::<32>()))?;
    let config = |data: &std::path::Path| -> Result<tranzcast_config::OriginConfig> {
        let mut sets = vec![
            format!("data_dir={}", data.display()),
            format!("storefront_token={token}"),
            "cluster_token=bench-cluster-token-0123456789".into(),
            "member_key=bench-member-key-0123456789-0123456789".into(),
            "listen.https=127.0.0.1:0".into(),
            // The bench's client is one address asking as fast as it can.
            "rate.play_per_s=1000000".into(),
            "rate.play_burst=1000000".into(),
        ];
        if let Some(url) = state_url {
            sets.extend(["state.backend=postgres".into(), format!("state.url={url}"), format!("keys.kek_file={}", kek.display())]);
            // A connection per request in flight: the database groups their commits.
            sets.push(format!("state.pool={}", (concurrency / origins).clamp(4, 128)));
        }
        Ok(tranzcast_config::Layers::new("origin").overrides(&sets)?.build()?)
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The load's client runs on a runtime of its own, its threads named, so
    // the CPU the origins spend per play can be told apart from the
    // client's (the two share the cores, as a server shares them with
    // nothing in production).
    // Its threads kept alive: a thread that ended takes its CPU time with it.
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(CLIENT_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(3600))
        .enable_all()
        .build()?;
    let client_rt = client_rt.handle().clone();
    let (ours, (raw, raw_aws_lc), errors, own_cores, other_cores, floor, cpu) = rt.block_on(async {
        let first = tranzcast_origin::Origin::start(config(&data)?).await?;
        let http = tranzcast_net::client::https(first.ca_pem().as_bytes())?;
        let mut servers = vec![first];
        for i in 1..origins {
            // The others start empty, with the first's CA (one cluster, one CA).
            let d = dir.path().join(format!("origin-{i}"));
            drop(crate::open_store(&d, true)?);
            std::fs::create_dir_all(d.join("tls"))?;
            for f in std::fs::read_dir(servers[0].ca_dir())? {
                let f = f?;
                std::fs::copy(f.path(), d.join("tls").join(f.file_name()))?;
            }
            servers.push(tranzcast_origin::Origin::start(config(&d)?).await?);
        }
        let bases: Vec<String> = servers.iter().map(|o| format!("https://localhost:{}", o.https_addr().port())).collect();
        // A client of its own for the load (its connections' tasks start on
        // the runtime of their first request: the client's, not the origins').
        let load = tranzcast_net::client::https(servers[0].ca_pem().as_bytes())?;
        // One connection to each origin before the clock starts: sixty-four
        // first requests at once would each open one.
        for b in &bases {
            let (load, url) = (load.clone(), format!("{b}/v1/origin-key"));
            client_rt.spawn(async move { load.get(url).send().await?.error_for_status()?.bytes().await }).await??;
        }
        use tranzcast_proto::{answers, api};
        let post = |path: &str| http.post(format!("{}{path}", bases[0])).bearer_auth(token);
        let b = post("/v1/customers").json(&api::CustomerBody { name: "bench".into() }).send().await?.bytes().await?;
        let c: answers::CustomerCreated = answers::parse_small("customer", &b)?;
        // One bought ticket per worker: different viewers' plays, as an
        // origin sees them (plays of one ticket are serialised by design).
        let mut tickets = Vec::new();
        for _ in 0..concurrency {
            let b = post("/v1/orders").json(&api::OrderBody::buy(c.customer, "bench")).send().await?.bytes().await?;
            let o: answers::OrderPlaced = answers::parse_small("order", &b)?;
            tickets.push(o.ticket);
        }
        // Plays and raw crypto take turns, a fifth of the time each turn:
        // a shared machine's speed drifts over seconds (other tenants), and
        // measuring the two far apart made the ratio swing by a fifth.
        let slice = seconds / SLICES as f64;
        let (mut ok, mut bad, mut secs, mut own, mut others) = (0u64, 0u64, 0.0, 0.0, 0.0);
        let (mut raw_ops, mut fast_ops) = (0.0, 0.0);
        // CPU seconds: of the raw crypto (dalek, AWS-LC), of the origins
        // (this process less the client's threads) and of the client.
        let mut cpu = CpuSplit::default();
        for _ in 0..SLICES {
            let c = own_cpu_s();
            raw_ops += tokio::task::block_in_place(|| raw_sign_verify(slice / 2.0, false)) * slice / 2.0;
            let d = own_cpu_s();
            fast_ops += tokio::task::block_in_place(|| raw_sign_verify(slice / 2.0, true)) * slice / 2.0;
            cpu.raw_dalek += d - c;
            cpu.raw_aws_lc += own_cpu_s() - d;
            let until = Instant::now() + std::time::Duration::from_secs_f64(slice);
            let started = Instant::now();
            let cpu_before = (own_cpu_s(), machine_busy_s(), threads_cpu_s(CLIENT_THREADS));
            let mut tasks = Vec::new();
            for (i, ticket) in tickets.iter().enumerate() {
                let (http, url, ticket) = (load.clone(), format!("{}/v1/play", bases[i % bases.len()]), ticket.clone());
                tasks.push(client_rt.spawn(async move {
                    let (mut ok, mut bad) = (0u64, 0u64);
                    while Instant::now() < until {
                        match http.post(&url).json(&tranzcast_proto::api::PlayBody::client(ticket.as_str())).send().await {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                                ok += 1
                            }
                            Ok(r) => {
                                if bad == 0 {
                                    let status = r.status();
                                    let body = r.bytes().await.unwrap_or_default();
                                    tracing::warn!(%status, body = %String::from_utf8_lossy(&body), "a play failed (the first of this worker's)");
                                }
                                bad += 1
                            }
                            Err(e) => {
                                if bad == 0 {
                                    tracing::warn!(error = %e, "a play failed (the first of this worker's)");
                                }
                                bad += 1
                            }
                        }
                    }
                    (ok, bad)
                }));
            }
            for t in tasks {
                let (o, b) = t.await?;
                ok += o;
                bad += b;
            }
            secs += started.elapsed().as_secs_f64();
            let used = own_cpu_s() - cpu_before.0;
            let client = cpu_since(&cpu_before.2, &threads_cpu_s(CLIENT_THREADS));
            own += used;
            others += (machine_busy_s() - cpu_before.1 - used).max(0.0);
            cpu.client += client;
            cpu.origins += (used - client).max(0.0);
        }
        cpu.others = others;
        let raw = (raw_ops / (seconds / 2.0), fast_ops / (seconds / 2.0));
        // The floor: the same client, connections and concurrency asking
        // the first origin for its key (no signature, no state): what HTTP/2,
        // TLS and the two sides' request handling cost without a play.
        let until = Instant::now() + std::time::Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (http, url) = (load.clone(), format!("{}/v1/origin-key", bases[0]));
            tasks.push(client_rt.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    if let Ok(r) = http.get(&url).send().await
                        && r.status() == 200
                        && r.bytes().await.is_ok()
                    {
                        n += 1;
                    }
                }
                n
            }));
        }
        let mut floor = 0u64;
        for t in tasks {
            floor += t.await?;
        }
        let floor = floor as f64 / started.elapsed().as_secs_f64();
        for o in servers {
            o.shutdown().await;
        }
        cpu.plays = ok as f64;
        cpu.raw_ops = (raw_ops, fast_ops);
        anyhow::Ok((ok as f64 / secs, raw, bad, own / secs, others / secs, floor, cpu))
    })?;
    anyhow::ensure!(raw > 0.0 && raw_aws_lc > 0.0, "the raw crypto measured nothing (a key failed to load?)");
    let engine = if state_url.is_some() { "postgres" } else { "rocksdb" };
    // What a play costs: the origins' CPU, and on PostgreSQL the database's
    // too (on the embedded engine, other processes are other tenants).
    let play_cpu_us = cpu.us(cpu.origins + if state_url.is_some() { cpu.others } else { 0.0 }, cpu.plays);
    println!(
        "{}",
        serde_json::json!({"raw_sign_verify_per_s": raw, "validations_per_s": ours, "errors": errors, "concurrency": concurrency,
            "ratio": ours / raw,
            // The same against AWS-LC's own sign + verify, the library the
            // origin signs with: the stricter yardstick.
            "raw_aws_lc_sign_verify_per_s": raw_aws_lc, "ratio_aws_lc": ours / raw_aws_lc, "seconds": seconds, "engine": engine, "origins": origins,
            // Cores busy while measuring: this process (origins and client) and
            // every other process (the database, on a shared engine).
            "cores_this_process": own_cores, "cores_other_processes": other_cores,
            // Requests/s of the floor, and the most plays/s those two costs
            // allow together on these cores (each a share of the same CPU).
            "http_floor_per_s": floor, "ceiling_per_s": 1.0 / (1.0 / floor + 1.0 / raw),
            // CPU per operation, microseconds: what a play costs the origins
            // alone (this process less the client's threads; on PostgreSQL
            // the database's CPU apart), against what a raw sign + verify
            // costs. The ratios say how near the origin's own work comes to
            // the crypto, whoever else shares the cores.
            "origin_cpu_us_per_play": cpu.us(cpu.origins, cpu.plays), "client_cpu_us_per_play": cpu.us(cpu.client, cpu.plays),
            "others_cpu_us_per_play": cpu.us(cpu.others, cpu.plays),
            "raw_cpu_us_per_sign_verify": cpu.us(cpu.raw_dalek, cpu.raw_ops.0), "raw_aws_lc_cpu_us_per_sign_verify": cpu.us(cpu.raw_aws_lc, cpu.raw_ops.1),
            "cpu_ratio": cpu.us(cpu.raw_dalek, cpu.raw_ops.0) / play_cpu_us,
            "cpu_ratio_aws_lc": cpu.us(cpu.raw_aws_lc, cpu.raw_ops.1) / play_cpu_us})
    );
    Ok(())
}

/// The name of the load client's threads in `bench tickets`.
const CLIENT_THREADS: &str = "bench-client";
// Linux keeps 15 bytes of a thread's name: a longer one would match no thread.
const _: () = assert!(CLIENT_THREADS.len() <= 15);

/// Where `bench tickets` spent CPU seconds, and what it counted.
#[derive(Debug, Default)]
struct CpuSplit {
    /// The origins, during the plays: this process less the client's threads.
    origins: f64,
    /// The load client's threads, during the plays.
    client: f64,
    /// Every other process, during the plays (the database, on PostgreSQL).
    others: f64,
    /// Raw crypto, dalek and AWS-LC.
    raw_dalek: f64,
    raw_aws_lc: f64,
    /// Plays answered; raw sign+verify done (dalek, AWS-LC).
    plays: f64,
    raw_ops: (f64, f64),
}

impl CpuSplit {
    fn us(&self, cpu_s: f64, ops: f64) -> f64 {
        if ops > 0.0 { cpu_s / ops * 1e6 } else { f64::NAN }
    }
}

/// CPU seconds (user + system) of each live thread of this process named
/// `name`, by thread id, from /proc.
fn threads_cpu_s(name: &str) -> std::collections::HashMap<u64, f64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Default::default() };
    dir.filter_map(|t| {
        let t = t.ok()?;
        let tid: u64 = t.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        // The thread's name is between the parentheses.
        if stat.rsplit_once(')')?.0.split_once('(')?.1 != name {
            return None;
        }
        Some((tid, stat_cpu_s(&stat)))
    })
    .collect()
}

/// CPU seconds the threads used between two readings, thread by thread (a
/// thread that ended in between is not counted: the client's share can only
/// be under-stated, the origins' over-stated).
fn cpu_since(before: &std::collections::HashMap<u64, f64>, after: &std::collections::HashMap<u64, f64>) -> f64 {
    after.iter().map(|(tid, a)| (a - before.get(tid).copied().unwrap_or(0.0)).max(0.0)).sum()
}

/// CPU seconds this process has used (user + system, from /proc).
fn own_cpu_s() -> f64 {
    stat_cpu_s(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// User + system CPU seconds in a process's or thread's `stat` line.
fn stat_cpu_s(stat: &str) -> f64 {
    // Fields after the command's closing parenthesis, from the state (field 3):
    // utime and stime (fields 14 and 15) are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// CPU seconds the whole machine has been busy (every core, from /proc/stat).
fn machine_busy_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    (f.iter().take(8).sum::<f64>() - f.get(3).copied().unwrap_or(0.0) - f.get(4).copied().unwrap_or(0.0)) / 100.0
}

/// Every policy on the Zipf trace and on the long-tail scenario's, as JSON lines and a table.
fn cache(seed: u64, titles: usize, views: usize, zipf: f64, ratio: f64) -> Result<()> {
    use tranzcast_loadtest::cache::{self, Hits};
    use tranzcast_loadtest::demand::Rng;
    anyhow::ensure!(titles > 0 && views > 0 && ratio >= 1.0, "titles and views above 0, ratio at least 1");
    let mut rng = Rng::new(seed);
    let catalogue = cache::catalogue(titles, &mut rng);
    let zipf_trace = cache::zipf_trace(&catalogue, views, zipf, 2.0, &mut rng);
    let long_tail = tranzcast_loadtest::scenario::Scenario::load("long-tail")?;
    let (lt_titles, lt_trace) = cache::scenario_trace(&long_tail);
    let traces = [
        (format!("zipf {zipf} over {titles} titles, {views} viewings"), cache::catalogue_bytes(&catalogue), zipf_trace),
        ("long-tail scenario".to_string(), cache::catalogue_bytes(&lt_titles), lt_trace),
    ];
    println!(
        "{:<44} {:>10} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "trace (cache = catalogue / ratio)", "policy", "byte hit", "obj hit", "requests", "vs LRU", "vs opt"
    );
    for (name, bytes, trace) in &traces {
        let capacity = (*bytes as f64 / ratio) as u64;
        let runs: [(&str, Hits); 3] = [
            ("ours", cache::replay_residency(trace, capacity)),
            ("LRU", cache::replay_lru(trace, capacity)),
            ("Belady", cache::replay_belady(trace, capacity)),
        ];
        let (lru, opt) = (runs[1].1.byte_ratio(), runs[2].1.byte_ratio());
        for (policy, h) in &runs {
            println!(
                "{:<44} {:>10} {:>9.3} {:>9.3} {:>9} {:>8.2} {:>9.2}",
                name,
                policy,
                h.byte_ratio(),
                h.object_ratio(),
                h.requests,
                h.byte_ratio() / lru.max(1e-9),
                h.byte_ratio() / opt.max(1e-9)
            );
            println!(
                "{}",
                serde_json::json!({"trace": name, "policy": policy, "byte_hit": h.byte_ratio(), "object_hit": h.object_ratio(),
                    "requests": h.requests, "catalogue_bytes": bytes, "cache_bytes": capacity})
            );
        }
    }
    Ok(())
}
