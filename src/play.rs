//! `tranzcast play`: validate a ticket and play the title through the smart
//! client, to a file (`--out`) or to a local range gateway (`--serve`) that a
//! standard player can open.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tranzcast_client::{Event, Gateway, OpenOptions, Session};

#[derive(clap::Args, Debug)]
pub struct PlayArgs {
    /// The origin's URL (a cluster's several origins: comma-separated, tried in turn).
    #[arg(long)]
    origin: String,
    /// The play ticket (base64url), or @FILE to read it from a file.
    #[arg(long)]
    ticket: String,
    /// CA certificate (PEM) to trust for the origin and the sources.
    #[arg(long)]
    ca: PathBuf,
    /// Write the plaintext here.
    #[arg(long, conflicts_with = "serve")]
    out: Option<PathBuf>,
    /// Instead of playing: validate the ticket for a standard player and print
    /// playback URLs on edges (JSON), with the next ticket for rentals.
    #[arg(long, conflicts_with_all = ["out", "serve", "peer"])]
    url: bool,
    /// With --url: bind the URLs to this client address ("self": the address
    /// the origin sees this request from).
    #[arg(long, requires = "url", value_name = "IP|self")]
    bind: Option<String>,
    /// With --url: how many edges' URLs (1..=8).
    #[arg(long, requires = "url", default_value_t = 2)]
    urls: usize,
    /// With --url: seconds the URLs work (default: the title's running time
    /// plus the origin's margin, at most 6 hours).
    #[arg(long, requires = "url")]
    lifetime: Option<u64>,
    /// Serve the title at http://ADDR/<title> with full Range support until Ctrl-C.
    #[arg(long)]
    serve: Option<std::net::SocketAddr>,
    /// Segments fetched at once.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Print one JSON object at the end.
    #[arg(long)]
    json: bool,
    /// Use only this source (repeatable): to compare with a single source.
    #[arg(long = "source", value_name = "NAME")]
    sources: Vec<String>,
    /// Serve the segments this client holds to other viewers at ADDR (HTTP/3 and
    /// HTTPS on one port; Fig. 3), during the playback and after it until Ctrl-C.
    /// Joins the cluster as a peer with this play's certificate.
    #[arg(long, value_name = "ADDR")]
    peer: Option<std::net::SocketAddr>,
    /// The peer service's store: segments the origin pre-casts here (Fig. 4) are
    /// played from it first, and what is played is kept for other viewers.
    #[arg(long, value_name = "DIR", requires = "peer")]
    cache: Option<PathBuf>,
    /// The peer's name in the cluster (default: peer-<random>).
    #[arg(long, requires = "peer")]
    peer_name: Option<String>,
    /// The peer's TLS certificate (PEM), with --peer-key. Without them the
    /// origin issues one for this machine's address (with the play's
    /// certificate), valid while the certificate is.
    #[arg(long, requires_all = ["peer", "peer_key"])]
    peer_cert: Option<PathBuf>,
    /// The peer's TLS key (PEM), with --peer-cert.
    #[arg(long, requires_all = ["peer", "peer_cert"])]
    peer_key: Option<PathBuf>,
}

/// Stops the peer service (leaves the cluster, drains).
async fn stop_peer(peer: Option<Arc<tranzcast_edge::EdgeServer>>) {
    if let Some(p) = peer {
        match Arc::try_unwrap(p) {
            Ok(p) => p.shutdown().await,
            Err(_) => tracing::warn!("peer service still in use at shutdown"),
        }
    }
}

/// Starts this client's peer service with the session's certificate.
async fn start_peer(a: &PlayArgs, addr: std::net::SocketAddr, certificate: &str) -> Result<tranzcast_edge::EdgeServer> {
    let name = a.peer_name.clone().unwrap_or_else(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        format!("peer-{}", hex::encode(b))
    });
    let cache = match &a.cache {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("tranzcast-{name}")),
    };
    let mut sets = vec![
        "role=peer".to_string(),
        format!("name={name}"),
        format!("data_dir={}", cache.display()),
        format!("origin={}", a.origin),
        format!("listen.https={addr}"),
        format!("certificate={certificate}"),
        format!("ca={}", a.ca.display()),
    ];
    let tls = match (&a.peer_cert, &a.peer_key) {
        (Some(c), Some(k)) => {
            sets.push(format!("tls.cert={}", c.display()));
            sets.push(format!("tls.key={}", k.display()));
            None
        }
        _ => Some(peer_identity(a, certificate).await?),
    };
    let config: tranzcast_config::EdgeConfig = tranzcast_config::Layers::new("edge").overrides(&sets)?.build()?;
    let tls = match tls {
        Some((cert, key)) => tranzcast_edge::EdgeTls::for_peer(&cert, &key, &a.ca)?,
        None => tranzcast_edge::EdgeTls::from_config(&config, std::path::Path::new(""))?,
    };
    tranzcast_edge::EdgeServer::start(config, tls).await.with_context(|| format!("starting the peer service at {addr}"))
}

/// The TLS certificate and key (PEM) the origin issues this peer for the
/// address it asks from, with the play's certificate: a viewer never holds
/// the cluster CA's key.
async fn peer_identity(a: &PlayArgs, certificate: &str) -> Result<(String, String)> {
    let ca = std::fs::read(&a.ca).with_context(|| format!("cannot read {}", a.ca.display()))?;
    let http = tranzcast_net::client::https(&ca)?;
    let req = http.post(format!("{}/v1/cluster/peer-identity", a.origin)).header("authorization", format!("Tranzcast {certificate}"));
    let limits = tranzcast_net::client::CallLimits {
        answer: std::time::Duration::from_secs(10),
        total: std::time::Duration::from_secs(30),
        max_body: 64 << 10,
    };
    let (status, body) = tranzcast_net::client::call(req, limits).await.context("asking the origin for the peer's certificate")?;
    if !status.is_success() {
        bail!("the origin refused the peer a certificate ({status}): {}", String::from_utf8_lossy(&body));
    }
    let id: tranzcast_proto::answers::PeerIdentity =
        tranzcast_proto::answers::parse_small("peer identity", &body).context("the origin's peer certificate answer")?;
    Ok((id.cert, id.key))
}

/// `--url`: the origin validates the ticket (a play is counted) and answers
/// with playback URLs.
async fn playback_urls(a: &PlayArgs, ticket: &str, ca_pem: &str) -> Result<tranzcast_proto::answers::PlaybackUrls> {
    let http = tranzcast_net::client::https(ca_pem.as_bytes())?;
    let mut body = tranzcast_proto::api::PlayBody::urls(ticket.trim(), a.urls);
    body.bind = match a.bind.as_deref() {
        None => None,
        Some("self") => Some(true.into()),
        Some(ip) => {
            Some(ip.parse::<std::net::IpAddr>().with_context(|| format!("--bind {ip}: not an IP address or \"self\""))?.to_string().into())
        }
    };
    body.lifetime_s = a.lifetime;
    let origin = a.origin.trim_end_matches('/');
    let r =
        http.post(format!("{origin}/v1/play")).json(&body).send().await.with_context(|| format!("cannot reach the origin at {origin}"))?;
    let status = r.status();
    let body = r.bytes().await.context("the origin's answer")?;
    if !status.is_success() {
        let (code, reason) = tranzcast_proto::answers::ErrorBody::read(&body);
        bail!("the origin refused: {reason} ({code})");
    }
    tranzcast_proto::answers::PlaybackUrls::parse(&body).context("the origin's answer")
}

pub fn run(a: PlayArgs) -> Result<()> {
    if a.out.is_none() && a.serve.is_none() && !a.url {
        bail!("give --out FILE, --serve 127.0.0.1:PORT or --url");
    }
    if let Some(addr) = a.serve
        && !addr.ip().is_loopback()
    {
        bail!("--serve {addr}: the gateway serves plaintext, so it listens on loopback only");
    }
    let ticket = match a.ticket.strip_prefix('@') {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("cannot read {f}"))?,
        None => a.ticket.clone(),
    };
    let ca_pem = std::fs::read_to_string(&a.ca).with_context(|| format!("cannot read {}", a.ca.display()))?;
    let rt = tokio::runtime::Runtime::new()?;
    if a.url {
        let v = rt.block_on(playback_urls(&a, &ticket, &ca_pem))?;
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    rt.block_on(async {
        let opts = OpenOptions { origin: a.origin.clone(), ticket, ca_pem, parallel: a.parallel, local: None };
        let mut session = Session::open(opts).await?;
        if !a.sources.is_empty() {
            session.restrict_sources(&a.sources)?;
        }
        let peer = match a.peer {
            Some(addr) => {
                let p = Arc::new(start_peer(&a, addr, session.certificate()).await?);
                eprintln!("serving peers as {} at https://localhost:{} (HTTP/3 on the same port)", p.name(), p.https_addr().port());
                session.attach_local(p.clone())?;
                Some(p)
            }
            None => None,
        };
        let session = Arc::new(session);
        let started = std::time::Instant::now();
        if let Some(t) = session.replacement_ticket() {
            eprintln!("next ticket (keep it for the next play): {t}");
        }
        let m = session.manifest();
        if let Some(addr) = a.serve {
            let scratch = tempfile::tempdir()?;
            let g = Gateway::start(session.clone(), addr, scratch.path()).await?;
            eprintln!("playing {} at http://{}/{}  (ffplay, VLC, mpv or a browser; Ctrl-C to stop)", m.title, g.addr, m.title);
            crate::wait_for_signal().await;
            g.shutdown().await;
            drop(session);
            stop_peer(peer).await;
            return Ok(());
        }
        let out_path = a.out.clone().context("no --out")?;
        let pb = crate::progress_bar(a.json, "play");
        pb.set_length(m.plaintext_len);
        let mut events = session.events();
        let pb2 = pb.clone();
        let watcher = tokio::spawn(async move {
            let mut by_source: std::collections::BTreeMap<String, u64> = Default::default();
            while let Ok(e) = events.recv().await {
                tracing::debug!(event = ?e, "playback");
                if let Event::Segment { source, bytes, .. } = e {
                    *by_source.entry(source).or_default() += bytes;
                    pb2.inc(bytes);
                    let parts: Vec<String> = by_source.iter().map(|(s, b)| format!("{s} {:.1}M", *b as f64 / 1e6)).collect();
                    pb2.set_message(parts.join(" "));
                }
            }
        });
        let mut out = tokio::fs::File::create(&out_path).await.with_context(|| format!("cannot create {}", out_path.display()))?;
        let report = session.play_to(&mut out).await?;
        pb.finish_and_clear();
        watcher.abort();
        let peer_json = peer.as_ref().map(|p| serde_json::json!({"name": p.name(), "https": format!("https://localhost:{}", p.https_addr().port())}));
        if a.json {
            println!(
                "{}",
                serde_json::json!({"title": m.title.as_str(), "bytes": report.bytes, "startup_ms": report.first_segment.as_secs_f64() * 1000.0,
                    "seconds": started.elapsed().as_secs_f64(),
                    "sources": report.by_source, "demoted": report.demoted, "ticket": session.replacement_ticket(), "peer": peer_json})
            );
        } else {
            println!("played {} bytes of {} into {}", report.bytes, m.title, out_path.display());
            for (s, b) in &report.by_source {
                println!("  from {s:<12} {b:>12} bytes");
            }
        }
        if peer.is_some() {
            use std::io::Write;
            let _ = std::io::stdout().flush();
            eprintln!("still serving peers; Ctrl-C to stop");
            crate::wait_for_signal().await;
            drop(session);
            stop_peer(peer).await;
        }
        Ok(())
    })
}
