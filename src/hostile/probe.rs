//! The probe of `bench/hostile.sh` (`tranzcast bench probe`), its own
//! process: small requests, or whole blobs on one kept HTTP/3 connection,
//! timed one at a time while an attack runs; and how the measuring side
//! starts it and reads its samples.

#![allow(clippy::wildcard_imports)]

use super::*;
use clap::ValueEnum;

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// What to ask, over and over (HTTP/2).
    #[arg(long)]
    url: String,
    /// The Authorization header, if any.
    #[arg(long)]
    auth: Option<String>,
    /// Ask for the first 4 KiB only.
    #[arg(long)]
    range: bool,
    /// CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// How long, at most.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// How the requests travel.
    #[arg(long, value_enum, default_value_t = ProbeOver::H2)]
    over: ProbeOver,
}

/// How the probe reaches the server.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOver {
    /// HTTP/2, one pooled connection.
    H2,
    /// HTTP/3, each request on a new connection (a handshake each, every
    /// 100 ms: what an Initial flood would take from honest clients).
    H3Fresh,
    /// HTTP/3, one connection kept (opened again if it fails): a download
    /// paced by its send window, what silent clients could take from.
    H3Kept,
}

/// The probe, its own process (so the viewer's decryption and the attack
/// clients' work in other processes do not delay its own clock; the bench
/// runs it at a real-time priority when it may): one small request at a
/// time, every 20 ms, each printed as `seconds-since-start milliseconds`.
pub fn probe(a: ProbeArgs) -> Result<()> {
    use std::io::Write;
    loopback_target(&a.url)?;
    let ca = std::fs::read_to_string(&a.ca).with_context(|| format!("cannot read {}", a.ca.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let http = tranzcast_net::client::https(ca.as_bytes())?;
        let start = Instant::now();
        let stop = start + Duration::from_secs_f64(a.seconds.clamp(1.0, 600.0));
        let mut out = std::io::stdout().lock();
        let mut kept: Option<tranzcast_net::client::H3Client> = None;
        // When it started on the wall clock, to line it up with other traces (perf -k CLOCK_REALTIME).
        let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        writeln!(out, "# started {:.6}", epoch.as_secs_f64())?;
        while Instant::now() < stop {
            let t = Instant::now();
            let ok = if a.over == ProbeOver::H3Fresh {
                matches!(tokio::time::timeout(Duration::from_secs(10), probe_h3_fresh(&a, ca.as_bytes())).await, Ok(Ok(())))
            } else if a.over == ProbeOver::H3Kept {
                let ok =
                    matches!(tokio::time::timeout(Duration::from_secs(10), probe_h3_kept(&a, ca.as_bytes(), &mut kept)).await, Ok(Ok(())));
                if !ok {
                    kept = None;
                }
                ok
            } else {
                let mut r = http.get(&a.url);
                if let Some(auth) = &a.auth {
                    r = r.header("authorization", auth);
                }
                if a.range {
                    r = r.header("range", "bytes=0-4095");
                }
                matches!(
                    tokio::time::timeout(Duration::from_secs(10), async { r.send().await?.error_for_status()?.bytes().await }).await,
                    Ok(Ok(_))
                )
            };
            let ms = if ok { t.elapsed().as_secs_f64() * 1000.0 } else { -1.0 };
            if writeln!(out, "{:.3} {ms:.3}", t.duration_since(start).as_secs_f64()).and_then(|()| out.flush()).is_err() {
                break;
            }
            // A new connection every 100 ms stays within an address's connection rate.
            tokio::time::sleep(Duration::from_millis(if a.over == ProbeOver::H3Fresh { 100 } else { 20 })).await;
        }
        Ok(())
    })
}

/// One probe over a new HTTP/3 connection: handshake (and Retry, if the
/// server asks for one), the request, the close.
async fn probe_h3_fresh(a: &ProbeArgs, ca: &[u8]) -> Result<()> {
    let c = tranzcast_net::client::H3Client::connect(loopback_target(&a.url)?, "localhost", ca).await?;
    let answer = probe_h3_request(a, &c).await;
    c.close();
    answer
}

/// One probe on the kept HTTP/3 connection, opened first if there is none.
async fn probe_h3_kept(a: &ProbeArgs, ca: &[u8], kept: &mut Option<tranzcast_net::client::H3Client>) -> Result<()> {
    if kept.is_none() {
        *kept = Some(tranzcast_net::client::H3Client::connect(loopback_target(&a.url)?, "localhost", ca).await?);
    }
    probe_h3_request(a, kept.as_ref().context("no connection")?).await
}

async fn probe_h3_request(a: &ProbeArgs, c: &tranzcast_net::client::H3Client) -> Result<()> {
    let mut r = http::Request::get(&a.url);
    if let Some(auth) = &a.auth {
        r = r.header("authorization", auth);
    }
    if a.range {
        r = r.header("range", "bytes=0-4095");
    }
    let status = c.request(r.body(Bytes::new())?).await?.status();
    anyhow::ensure!(status.is_success(), "probe: {status}");
    Ok(())
}

/// Runs the probe process until it ends or `stop` is set; returns its samples (seconds, ms; -1 ms: failed).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_probe(
    url: &str,
    auth: &str,
    range: bool,
    ca: &std::path::Path,
    secs: f64,
    cpus: Option<&str>,
    over: ProbeOver,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<Vec<(f64, f64)>> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe()?;
    // As root, a real-time priority: the probe stands for a client on another machine.
    let rt = own_uid() == Some(0) && std::path::Path::new("/usr/bin/chrt").exists();
    let pin = cpus.filter(|_| std::path::Path::new("/usr/bin/taskset").exists());
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(c) = pin {
        argv.extend(["taskset".into(), "-c".into(), c.into()]);
    }
    if rt {
        argv.extend(["chrt".into(), "-f".into(), "10".into()]);
    }
    argv.push(exe.into());
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd.args(["bench", "probe", "--url", url, "--ca"]).arg(ca).args(["--seconds", &secs.to_string()]);
    if !auth.is_empty() {
        cmd.args(["--auth", auth]);
    }
    if range {
        cmd.arg("--range");
    }
    if let Some(v) = over.to_possible_value() {
        cmd.args(["--over", v.get_name()]);
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).kill_on_drop(true).spawn().context("starting the probe")?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("probe stdout")?).lines();
    let mut out = Vec::new();
    let mut stop = stop;
    loop {
        let line = match &mut stop {
            Some(s) => tokio::select! {
                l = lines.next_line() => l,
                _ = s.wait_for(|v| *v) => break,
            },
            None => lines.next_line().await,
        };
        let Ok(Some(line)) = line else { break };
        if let Some(epoch) = line.strip_prefix("# started ") {
            eprintln!("== probe started at {epoch} (seconds since the epoch)");
            continue;
        }
        if let Some((t, ms)) = line.split_once(' ')
            && let (Ok(t), Ok(ms)) = (t.parse::<f64>(), ms.parse::<f64>())
        {
            out.push((t, ms));
        }
    }
    let _ = child.kill().await;
    Ok(out)
}

fn own_uid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().nth(1)?.parse().ok())
}
