//! The hostile-load bench (`bench/hostile.sh`): attack clients (`tranzcast
//! bench attack`, one kind per process, run at a lower priority so the
//! attacker's own CPU is not taken from the servers it attacks, as it would
//! not be on the internet) and the measuring side (`tranzcast bench
//! hostile`): for each attack a legitimate smart client plays the title, a
//! probe times small requests, and the attacked server's memory,
//! descriptors, requests in hand and tasks are read before, during and
//! after. Loopback only; every attack is bounded in count and time.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod measure;
mod probe;
mod quic;
pub use measure::{HostileArgs, hostile};
pub use probe::{ProbeArgs, probe};
use quic::{idle_quic, initial_flood, silent_h3};

/// What an attack client does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackKind {
    /// TLS connections that send a request head one header every 2 s, forever.
    Slowloris,
    /// TLS connections and QUIC connections (kept alive by pings) that never ask anything.
    Idle,
    /// HTTP/2 connections sending requests for unknown blobs (answers wait
    /// on upstream) and resetting each at once: the rapid-reset pattern.
    Reset,
    /// One HTTP/3 connection sending small range requests, 100 at a time.
    H3Flood,
    /// Oversized heads, too many headers, and bodies too large or too slow, on every route and protocol.
    Oversized,
    /// 64 overlapping ranges of a 1 MiB blob, as fast as possible (and one
    /// request of 16, within the default cap, a second: merged to one range).
    Ranges,
    /// Unauthenticated `POST /v1/play` with garbage tickets, from many addresses.
    PlayFlood,
    /// QUIC Initials, each a new connection's first packet followed at once
    /// by its CONNECTION_CLOSE, from addresses that never read an answer:
    /// what a spoofer can send blind (Initial keys come from the client's
    /// own connection ID), each costing the server a signature unless it
    /// answers with a Retry.
    InitialFlood,
    /// HTTP/3 connections from a few addresses, each asking for a blob whole
    /// many times at once with credit for all of it, then acknowledging
    /// nothing: quinn holds every answer byte written until acknowledged,
    /// so each connection pins its send window for as long as it stays
    /// (what the per-address share of `limits.h3_send_memory` bounds).
    H3Silent,
}

#[derive(clap::Args, Debug)]
pub struct AttackArgs {
    /// The attack.
    #[arg(long, value_enum)]
    kind: AttackKind,
    /// The attacked server, https://localhost:PORT or https://127.0.0.1:PORT.
    #[arg(long)]
    target: String,
    /// CA certificate (PEM) of the cluster.
    #[arg(long)]
    ca: PathBuf,
    /// A validation certificate (text), for attacks with valid credentials.
    #[arg(long)]
    cert: Option<String>,
    /// A blob the target holds (hex).
    #[arg(long)]
    blob: Option<String>,
    /// How long, at most.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Connections (TLS) to hold or drive.
    #[arg(long)]
    connections: Option<usize>,
    /// QUIC connections to hold (idle).
    #[arg(long, default_value_t = 0)]
    quic: usize,
    /// Client addresses to spread over (127.0.1.1, 127.0.1.2, ...).
    #[arg(long, default_value_t = 64)]
    sources: usize,
    /// Requests at most (h3-flood), Initials at most (initial-flood).
    #[arg(long)]
    requests: Option<u64>,
    /// Requests each connection keeps in hand (h3-silent).
    #[arg(long, default_value_t = 12)]
    streams: usize,
}

/// What an attack did, printed as one JSON line at its end.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    closed_by_server: AtomicU64,
    sent: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    answers: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn answer(&self, what: impl Into<String>) {
        if let Ok(mut a) = self.answers.lock() {
            *a.entry(what.into()).or_default() += 1;
        }
    }

    fn json(&self, kind: AttackKind, secs: f64) -> serde_json::Value {
        let sent = self.sent.load(Ordering::Relaxed);
        serde_json::json!({
            "kind": format!("{kind:?}"),
            "seconds": secs,
            "opened": self.opened.load(Ordering::Relaxed),
            "closed_by_server": self.closed_by_server.load(Ordering::Relaxed),
            "sent": sent,
            "per_s": sent as f64 / secs.max(0.001),
            "errors": self.errors.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "answers": self.answers.lock().map(|a| a.clone()).unwrap_or_default(),
        })
    }
}

/// The attacked server: its loopback address, and how to reach it with TLS.
struct Target {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    ca: String,
}

fn loopback_target(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("https://").context("the target must be an https:// URL")?;
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = authority.rsplit_once(':').context("the target needs a port")?;
    if !matches!(host, "localhost" | "127.0.0.1") {
        bail!("{url}: attacks go to loopback only");
    }
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port.parse::<u16>().context("bad port")?)))
}

/// The i-th attacker address: 127.0.1.1, 127.0.1.2, ... (all loopback; the
/// servers see them as distinct clients).
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, (i % 250) as u8 + 1))
}

impl Target {
    fn new(url: &str, ca_path: &std::path::Path, alpn: &[&[u8]]) -> Result<Self> {
        let ca = std::fs::read_to_string(ca_path).with_context(|| format!("cannot read {}", ca_path.display()))?;
        let cfg = tranzcast_net::tls::client_config(ca.as_bytes(), alpn)?;
        Ok(Self { addr: loopback_target(url)?, tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)), ca })
    }

    async fn tcp(&self, from: IpAddr) -> std::io::Result<tokio::net::TcpStream> {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(from, 0))?;
        s.connect(self.addr).await
    }

    async fn tls(&self, from: IpAddr) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = self.tcp(from).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        self.tls.connect(name, tcp).await
    }
}

/// Waits until the peer closes (or fails) the stream, or the deadline; true if the peer did.
async fn until_closed(io: &mut (impl AsyncReadExt + Unpin), deadline: Instant) -> bool {
    let mut buf = [0u8; 2048];
    loop {
        match tokio::time::timeout_at(deadline.into(), io.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// The status code of an HTTP/1.1 answer's head read from `io` (0: none).
async fn read_status(io: &mut (impl AsyncReadExt + Unpin), deadline: Instant) -> u16 {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match tokio::time::timeout_at(deadline.into(), io.read(&mut b)).await {
            Ok(Ok(1)) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

pub fn attack(a: AttackArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let secs = a.seconds.clamp(1.0, 600.0);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    rt.block_on(async {
        let work = run_attack(&a, deadline, tally.clone());
        // Bounded whatever happens: the attack stops itself a little after its time.
        match tokio::time::timeout(Duration::from_secs_f64(secs + 15.0), work).await {
            Ok(r) => r,
            Err(_) => Ok(()),
        }
    })?;
    println!("{}", tally.json(a.kind, started.elapsed().as_secs_f64()));
    // Open connections and tasks are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn run_attack(a: &AttackArgs, deadline: Instant, tally: Arc<Tally>) -> Result<()> {
    let sources = a.sources.clamp(1, 2000);
    let blob = a.blob.clone().unwrap_or_default();
    let cert = a.cert.clone().map(|c| format!("Tranzcast {c}")).unwrap_or_default();
    match a.kind {
        AttackKind::Slowloris => {
            let t = Arc::new(Target::new(&a.target, &a.ca, &[b"http/1.1"])?);
            let n = a.connections.unwrap_or(5000);
            hold_connections(t, n, sources, deadline, tally, Some(format!("GET /v1/blobs/{blob} HTTP/1.1\r\nHost: localhost\r\n"))).await;
        }
        AttackKind::Idle => {
            let t = Arc::new(Target::new(&a.target, &a.ca, &[b"h2", b"http/1.1"])?);
            let quic = idle_quic(t.clone(), a.quic, sources, deadline, tally.clone());
            let tcp = hold_connections(t, a.connections.unwrap_or(10_000), sources, deadline, tally, None);
            let (r, ()) = tokio::join!(quic, tcp);
            r?;
        }
        AttackKind::Reset => {
            let t = Arc::new(Target::new(&a.target, &a.ca, &[b"h2"])?);
            let n = a.connections.unwrap_or(64);
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let (t, tally, cert) = (t.clone(), tally.clone(), cert.clone());
                    tokio::spawn(async move { reset_flood(&t, source(i % sources), &cert, deadline, &tally).await })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        }
        AttackKind::H3Flood => {
            let t = Target::new(&a.target, &a.ca, &[b"h2"])?;
            let h3 = tranzcast_net::client::H3Client::connect(t.addr, "localhost", t.ca.as_bytes()).await?;
            let url = format!("https://localhost:{}/v1/blobs/{blob}", t.addr.port());
            let n = a.requests.unwrap_or(1_000_000);
            let one = |_| {
                let req = http::Request::get(&url).header("authorization", &cert).header("range", "bytes=0-4095").body(Bytes::new());
                let h3 = h3.clone();
                async move {
                    match req {
                        Ok(r) => h3.request(r).await.map(|r| (r.status().as_u16(), r.body().len())).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            let mut answers = futures_util::stream::iter(0..n).map(one).buffer_unordered(100);
            while Instant::now() < deadline {
                match answers.next().await {
                    Some(Ok((s, len))) => {
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        tally.bytes.fetch_add(len as u64, Ordering::Relaxed);
                        tally.answer(s.to_string());
                    }
                    Some(Err(e)) => {
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        tally.answer(format!("error: {}", e.chars().take(60).collect::<String>()));
                    }
                    None => break,
                }
            }
        }
        AttackKind::InitialFlood => {
            let t = Target::new(&a.target, &a.ca, &[b"h3"])?;
            let n = a.connections.unwrap_or(8);
            let max = a.requests.unwrap_or(2_000_000);
            initial_flood(&t, n, sources, max, deadline, tally).await?;
        }
        AttackKind::H3Silent => {
            let t = Target::new(&a.target, &a.ca, &[b"h3"])?;
            let n = a.connections.unwrap_or(256).min(4096);
            silent_h3(&t, n, a.streams.clamp(1, 100), sources, &blob, &cert, deadline, tally).await?;
        }
        AttackKind::Oversized => {
            let t = Arc::new(Target::new(&a.target, &a.ca, &[b"http/1.1"])?);
            let n = a.connections.unwrap_or(32);
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let (t, tally, blob, cert) = (t.clone(), tally.clone(), blob.clone(), cert.clone());
                    tokio::spawn(async move { oversized(&t, i, source(i % sources), &blob, &cert, deadline, &tally).await })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        }
        AttackKind::Ranges => {
            let t = Target::new(&a.target, &a.ca, &[b"h2"])?;
            let http = tranzcast_net::client::https(t.ca.as_bytes())?;
            let url = format!("https://localhost:{}/v1/blobs/{blob}", t.addr.port());
            let n = a.connections.unwrap_or(32);
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let (http, url, cert, tally) = (http.clone(), url.clone(), cert.clone(), tally.clone());
                    tokio::spawn(async move {
                        let mut next_merged = Instant::now();
                        while Instant::now() < deadline {
                            // The blob's 1 MiB asked 64 times; worker 0 asks 16 times once a second.
                            let parts = if i == 0 && Instant::now() >= next_merged {
                                next_merged += Duration::from_secs(1);
                                16
                            } else {
                                64
                            };
                            let range = format!("bytes={}", (0..parts).map(|j| format!("{j}-")).collect::<Vec<_>>().join(","));
                            tally.sent.fetch_add(1, Ordering::Relaxed);
                            match http.get(&url).header("authorization", &cert).header("range", range).send().await {
                                Ok(r) => {
                                    let s = r.status().as_u16();
                                    let n = r.bytes().await.map(|b| b.len()).unwrap_or(0);
                                    tally.bytes.fetch_add(n as u64, Ordering::Relaxed);
                                    tally.answer(format!("{parts} ranges: {s}"));
                                }
                                Err(_) => {
                                    tally.errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        }
        AttackKind::PlayFlood => {
            let t = Target::new(&a.target, &a.ca, &[b"h2"])?;
            let url = format!("https://localhost:{}/v1/play", t.addr.port());
            let n = a.connections.unwrap_or(64);
            let mut clients = Vec::new();
            for i in 0..sources.min(n) {
                let cfg = tranzcast_net::tls::client_config(t.ca.as_bytes(), &[b"h2"])?;
                clients.push(reqwest::Client::builder().tls_backend_preconfigured(cfg).local_address(source(i)).build()?);
            }
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let (http, url, tally) = (clients[i % clients.len()].clone(), url.clone(), tally.clone());
                    tokio::spawn(async move {
                        let mut k = 0u64;
                        while Instant::now() < deadline {
                            k += 1;
                            let garbage = hex::encode(blake3::hash(&(i as u64 * 1_000_000 + k).to_le_bytes()).as_bytes());
                            tally.sent.fetch_add(1, Ordering::Relaxed);
                            match http.post(&url).json(&tranzcast_proto::api::PlayBody::client(garbage)).send().await {
                                Ok(r) => {
                                    tally.answer(r.status().as_u16().to_string());
                                    let _ = r.bytes().await;
                                }
                                Err(_) => {
                                    tally.errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
        }
    }
    Ok(())
}

/// The next connection of one held open until the deadline: opened by
/// `open` through `gate` (a ramp of handshakes, not a burst), a failure
/// counted and tried again 200 ms later; `None` once the deadline passes.
async fn reopen<C, F: Future<Output = Option<C>>>(
    gate: &tokio::sync::Semaphore,
    deadline: Instant,
    tally: &Tally,
    open: impl Fn() -> F,
) -> Option<C> {
    while Instant::now() < deadline {
        let permit = gate.acquire().await;
        let conn = tokio::time::timeout_at(deadline.into(), open()).await;
        drop(permit);
        match conn {
            Ok(Some(c)) => {
                tally.opened.fetch_add(1, Ordering::Relaxed);
                return Some(c);
            }
            Ok(None) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => return None,
        }
    }
    None
}

/// Holds `n` TLS connections open until the deadline, reopening those the
/// server closes; with `head`, each sends that much of a request and then
/// one header every 2 s (a slowloris), else nothing at all.
async fn hold_connections(t: Arc<Target>, n: usize, sources: usize, deadline: Instant, tally: Arc<Tally>, head: Option<String>) {
    // Handshakes a few hundred at a time: a ramp, not a single burst.
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (t, tally, head, gate) = (t.clone(), tally.clone(), head.clone(), gate.clone());
            tokio::spawn(async move {
                let from = source(i % sources);
                let t = &*t;
                while let Some(mut c) = reopen(&gate, deadline, &tally, move || async move { t.tls(from).await.ok() }).await {
                    let closed = match &head {
                        None => until_closed(&mut c, deadline).await,
                        Some(h) => {
                            let mut closed = c.write_all(h.as_bytes()).await.is_err();
                            tally.sent.fetch_add(1, Ordering::Relaxed);
                            while !closed && Instant::now() < deadline {
                                let tick = (Instant::now() + Duration::from_secs(2)).min(deadline);
                                if until_closed(&mut c, tick).await {
                                    closed = true;
                                } else if Instant::now() < deadline {
                                    closed = c.write_all(b"X-Slow: 1\r\n").await.is_err();
                                }
                            }
                            closed
                        }
                    };
                    if closed {
                        tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// One HTTP/2 connection after another: requests for blobs no one has
/// (their answers wait on upstream), each reset as soon as it is sent.
async fn reset_flood(t: &Target, from: IpAddr, cert: &str, deadline: Instant, tally: &Tally) {
    let mut k = 0u64;
    while Instant::now() < deadline {
        let Ok(Ok(tls)) = tokio::time::timeout_at(deadline.into(), t.tls(from)).await else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok((send, conn)) = h2::client::handshake(tls).await else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        tally.opened.fetch_add(1, Ordering::Relaxed);
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        loop {
            if Instant::now() >= deadline {
                driver.abort();
                return;
            }
            let ready = tokio::time::timeout_at(deadline.into(), send.clone().ready()).await;
            let Ok(Ok(mut ready)) = ready else { break };
            k += 1;
            let unknown = hex::encode(blake3::hash(&k.to_le_bytes()).as_bytes());
            let req = http::Request::get(format!("https://localhost:{}/v1/blobs/{unknown}", t.addr.port()))
                .header("authorization", cert)
                .body(());
            let Ok(req) = req else { break };
            match ready.send_request(req, true) {
                Ok((resp, mut stream)) => {
                    tally.sent.fetch_add(1, Ordering::Relaxed);
                    stream.send_reset(h2::Reason::CANCEL);
                    drop(resp);
                }
                Err(_) => break,
            }
            tokio::task::yield_now().await;
        }
        tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
        driver.abort();
    }
}

/// Worker `i` cycles through oversized heads and bodies on every route of
/// an edge (and the origin's), over HTTP/1.1 raw (no client library would
/// send these), and counts the answers.
async fn oversized(t: &Target, i: usize, from: IpAddr, blob: &str, cert: &str, deadline: Instant, tally: &Tally) {
    let big = "a".repeat(64 << 10);
    let many: String = (0..200).map(|j| format!("x-h{j}: 1\r\n")).collect();
    let routes = [
        format!("GET /v1/blobs/{blob}"),
        format!("GET /v1/outboards/{blob}"),
        "GET /v1/pulse".to_string(),
        format!("PUT /v1/blobs/{blob}"),
        "POST /v1/staging/missing".to_string(),
        "PUT /v1/titles/film/manifest".to_string(),
        "POST /v1/play".to_string(),
        "POST /v1/customers".to_string(),
        "GET /metrics".to_string(),
    ];
    let mut k = i;
    while Instant::now() < deadline {
        let route = &routes[k % routes.len()];
        let case = (k / routes.len()) % 4;
        k += 1;
        let Ok(Ok(mut c)) = tokio::time::timeout_at(deadline.into(), t.tls(from)).await else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let auth = if cert.is_empty() { String::new() } else { format!("authorization: {cert}\r\n") };
        let (label, head, drip) = match case {
            0 => ("64 KiB header", format!("{route} HTTP/1.1\r\nhost: localhost\r\n{auth}x-big: {big}\r\n\r\n"), false),
            1 => ("200 headers", format!("{route} HTTP/1.1\r\nhost: localhost\r\n{auth}{many}\r\n"), false),
            2 => (
                "100 MiB body declared",
                format!("{route} HTTP/1.1\r\nhost: localhost\r\n{auth}content-length: {}\r\n\r\n", 100 << 20),
                false,
            ),
            _ => ("60 KB body at 1 B/s", format!("{route} HTTP/1.1\r\nhost: localhost\r\n{auth}content-length: 60000\r\n\r\n"), true),
        };
        tally.sent.fetch_add(1, Ordering::Relaxed);
        if c.write_all(head.as_bytes()).await.is_err() {
            tally.answer(format!("{label}: closed"));
            continue;
        }
        let status = if drip {
            let (mut r, mut w) = tokio::io::split(c);
            let dripper = async {
                while w.write_all(b"z").await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            };
            tokio::select! {
                s = read_status(&mut r, deadline + Duration::from_secs(15)) => s,
                () = dripper => 0,
            }
        } else {
            read_status(&mut c, deadline + Duration::from_secs(5)).await
        };
        let answer = if status == 0 { "closed".to_string() } else { status.to_string() };
        tally.answer(format!("{label}: {answer}"));
    }
}
