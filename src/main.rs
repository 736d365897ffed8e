//! `tranzcast`: one binary, one subcommand per role or tool. Thin: parse the
//! command line, load config, call the libraries, print, exit.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tranzcast_ingest::{IngestOptions, export, ingest};
use tranzcast_proto::TitleId;
use tranzcast_store::{BlobStore, StoreOptions};

// Servers allocate per request (headers, frames, futures); mimalloc's
// thread-local free lists cut glibc malloc's share of small-request serving
// (about 12% of the edge's CPU under h3 load in bench/edge.sh profiles).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod cluster;
mod demo;
mod hostile;
mod loadtest;
mod play;
mod upload;

#[derive(Parser, Debug)]
#[command(name = "tranzcast", version, about = "Secure media CDN: origin, nodes, edges and smart clients")]
struct Cli {
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG also works. Default:
    /// warn; error for loadtest (its thousands of simulated clients' fail-overs
    /// are counted in the report, not logged one by one).
    #[arg(long, global = true)]
    log: Option<String>,
    /// Logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Encrypt, segment and store a media file as a new title.
    Ingest(IngestArgs),
    /// Verify, decrypt and reassemble a title from a local store.
    Export(ExportArgs),
    /// Check every blob in a store against its address.
    Verify(VerifyArgs),
    /// List the titles in a store.
    Titles(DataArgs),
    /// Run the origin (catalog, customers, orders, tickets, cluster).
    Origin(ServerArgs),
    /// Rotate the origin's key-encryption key: re-seal every key (its own
    /// store's and, on PostgreSQL, the cluster's) under a new one. Origins stopped.
    Rekey(RekeyArgs),
    /// Run a node or an edge (role set in its config).
    Edge(EdgeArgs),
    /// Play tickets and validation certificates.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Enrol and retire the cluster's nodes and edges.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Validate a ticket and play the title through the smart client.
    Play(play::PlayArgs),
    /// Run the whole pipeline on loopback with embedded defaults.
    Demo(demo::DemoArgs),
    /// Simulated viewers against a cluster: a scenario, then report.json and report.html.
    Loadtest(loadtest::LoadtestArgs),
    /// Side-by-side benchmarks (see bench/).
    #[command(subcommand, hide = true)]
    Bench(bench::BenchCommand),
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// TOML config file (see config/examples/).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key: --set key.path=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct RekeyArgs {
    /// The origin's config as it runs now (its keys.kek_file is the current KEK).
    #[command(flatten)]
    server: ServerArgs,
    /// The new key-encryption key: a file holding 64 hex digits.
    #[arg(long)]
    new_kek_file: PathBuf,
}

#[derive(clap::Args, Debug)]
struct EdgeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Local CA directory (ca.pem, ca.key) when no tls.cert/tls.key/ca are
    /// configured: share the origin's `<data_dir>/tls` on a loopback cluster.
    #[arg(long)]
    ca_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum TicketCommand {
    /// Decode a ticket or certificate offline, and verify it if the origin key is given.
    Inspect {
        /// The ticket or certificate (base64url text).
        text: String,
        /// The origin's Ed25519 public key, 64 hex digits.
        #[arg(long)]
        origin_key: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
struct DataArgs {
    /// Data directory of the store.
    #[arg(long)]
    data: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct IngestArgs {
    /// The media file.
    pub(crate) file: PathBuf,
    /// Data directory of the store (created if missing).
    #[arg(long, required_unless_present = "origin", conflicts_with = "origin")]
    pub(crate) data: Option<PathBuf>,
    /// Upload to a running origin instead (needs --token).
    #[arg(long)]
    pub(crate) origin: Option<String>,
    /// The origin's storefront token (or TRANZCAST_STOREFRONT_TOKEN).
    #[arg(long, env = "TRANZCAST_STOREFRONT_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// CA certificate (PEM) to trust for the origin.
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,
    /// Title id: 1-32 of a-z, 0-9, '.', '_', '-'.
    #[arg(long)]
    pub(crate) title: String,
    /// Seconds of media per segment (the size follows the running time).
    #[arg(long, default_value_t = tranzcast_ingest::DEFAULT_SEGMENT_SECONDS)]
    pub(crate) segment_seconds: f64,
    /// Exact segment size in bytes, overriding --segment-seconds.
    #[arg(long)]
    pub(crate) segment_size: Option<u32>,
    /// Transcode with ffmpeg to H.264/AAC fragmented MP4 first.
    #[arg(long)]
    pub(crate) encode: bool,
    /// Sealing threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub(crate) workers: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args, Debug)]
struct ExportArgs {
    /// Data directory of the store.
    #[arg(long)]
    data: PathBuf,
    /// Title id.
    #[arg(long)]
    title: String,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct VerifyArgs {
    /// Data directory of the store.
    #[arg(long)]
    data: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = if matches!(cli.command, Command::Loadtest(_)) { "error" } else { "warn" };
    init_tracing(cli.log.as_deref().unwrap_or(default), cli.log_json);
    quiet_repeated_panics();
    // Servers hold a descriptor per client connection, load tests one per
    // simulated viewer's connection: the usual soft limit (1024) is far too low.
    tranzcast_net::raise_fd_limit();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A server contains a request's panic to that request (its 500 or reset
/// is counted in `<role>_handler_panics_total`), so a client that finds one
/// could set it off on every request: the default report (stderr, and a
/// backtrace when RUST_BACKTRACE asks) is kept for the first few each second.
fn quiet_repeated_panics() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    const PER_SECOND: u64 = 5;
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // The second in the high bits, this second's count in the low 8.
        let seen = WINDOW.load(Ordering::Relaxed);
        let count = if seen >> 8 == second { seen & 0xff } else { 0 };
        WINDOW.store(second << 8 | (count + 1).min(0xff), Ordering::Relaxed);
        if count < PER_SECOND {
            report(info);
        }
    }));
}

fn init_tracing(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// A byte progress bar on stderr when it is a terminal and output is for people.
pub(crate) fn progress_bar(json: bool, what: &str) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg:>8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

pub(crate) fn open_store(data: &Path, create: bool) -> Result<BlobStore> {
    BlobStore::open(data, StoreOptions { create, ..Default::default() })
        .with_context(|| format!("cannot open the store in {}", data.display()))
}

/// The data directory a command was given, or else a new temporary one
/// named `prefix…`, removed when the returned guard is dropped.
pub(crate) fn data_dir_or_temp(given: Option<&Path>, prefix: &str) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match given {
        Some(d) => (d.to_path_buf(), None),
        None => {
            let temp = tempfile::Builder::new().prefix(prefix).tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    })
}

fn parse_title(s: &str) -> Result<TitleId> {
    TitleId::new(s).map_err(|e| anyhow::anyhow!("--title: {e}"))
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Ingest(a) => {
            let title = parse_title(&a.title)?;
            if !a.segment_seconds.is_finite() || a.segment_seconds <= 0.0 || a.segment_seconds > 3600.0 {
                bail!("--segment-seconds must be a number of seconds in (0, 3600]");
            }
            // Fail on a bad input before creating anything.
            let meta = std::fs::metadata(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
            if meta.is_dir() {
                bail!("{} is a directory, not a media file", a.file.display());
            }
            if let Some(origin) = &a.origin {
                return upload::run(&a, origin, title);
            }
            let data = a.data.clone().context("--data or --origin is required")?;
            let store = open_store(&data, true)?;
            let mut opts = IngestOptions::new(title);
            opts.segment_seconds = a.segment_seconds;
            opts.segment_size = a.segment_size;
            opts.encode = a.encode;
            opts.workers = a.workers;
            opts.progress = progress_bar(a.json, "ingest");
            let r = ingest(&store, &a.file, &opts)?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "ingested {} as {}: {} bytes, {} segments of {} bytes, manifest {} ({:.0} MB/s{})",
                    a.file.display(),
                    r.title,
                    r.bytes,
                    r.segments,
                    r.segment_size,
                    r.manifest,
                    r.mb_per_s,
                    if r.resumed_blobs > 0 { format!(", resumed {} blobs", r.resumed_blobs) } else { String::new() }
                );
            }
            Ok(())
        }
        Command::Export(a) => {
            let title = parse_title(&a.title)?;
            let store = open_store(&a.data, false)?;
            let r = export(&store, &title, &a.out, &progress_bar(a.json, "export"))?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("exported {} to {}: {} bytes from {} verified segments", r.title, r.out, r.bytes, r.segments);
            }
            Ok(())
        }
        Command::Verify(a) => {
            let store = open_store(&a.data, false)?;
            let started = Instant::now();
            let list = store.list()?;
            let mut bad = Vec::new();
            let mut bytes = 0u64;
            for (addr, len) in &list {
                match store.get(addr) {
                    Ok(Some(_)) => bytes += len,
                    Ok(None) => bad.push(format!("{addr}: listed but missing")),
                    Err(e) => bad.push(e.to_string()),
                }
                store.clear_cache();
            }
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"blobs": list.len(), "bytes": bytes, "bad": bad, "elapsed_s": started.elapsed().as_secs_f64()})
                );
            } else {
                for b in &bad {
                    eprintln!("corrupt: {b}");
                }
                println!("{} blobs, {} bytes verified, {} bad", list.len() - bad.len(), bytes, bad.len());
            }
            if !bad.is_empty() {
                bail!("{} of {} blobs failed verification", bad.len(), list.len());
            }
            Ok(())
        }
        Command::Titles(a) => {
            let store = open_store(&a.data, false)?;
            let titles = store.titles()?;
            if a.json {
                let mut v = Vec::new();
                for (t, m) in &titles {
                    // The segment addresses too: tools (bench/, load tests) fetch blobs by them.
                    let segments: Vec<String> = match store.get(m)? {
                        Some(b) => {
                            tranzcast_proto::manifest::SignedManifest::decode(&b)?.manifest.segments.iter().map(|a| a.to_hex()).collect()
                        }
                        None => Vec::new(),
                    };
                    v.push(serde_json::json!({"title": t.as_str(), "manifest": m.to_hex(), "segments": segments}));
                }
                println!("{}", serde_json::Value::Array(v));
            } else {
                for (t, m) in titles {
                    println!("{t}\t{m}");
                }
            }
            Ok(())
        }
        Command::Origin(a) => run_origin(a),
        Command::Rekey(a) => rekey(a),
        Command::Edge(a) => run_edge(a),
        Command::Ticket(TicketCommand::Inspect { text, origin_key }) => inspect(&text, origin_key.as_deref()),
        Command::Cluster(c) => cluster::run(c),
        Command::Demo(a) => demo::run(a),
        Command::Loadtest(a) => loadtest::run(a),
        Command::Play(a) => play::run(a),
        Command::Bench(b) => bench::run(b),
    }
}

fn rekey(a: RekeyArgs) -> Result<()> {
    let config: tranzcast_config::OriginConfig = tranzcast_config::load(a.server.config.as_deref(), &a.server.set)?;
    let text = std::fs::read_to_string(&a.new_kek_file).with_context(|| format!("cannot read {}", a.new_kek_file.display()))?;
    let new = tranzcast_proto::envelope::Kek::from_hex(&text)
        .with_context(|| format!("{}: not a key-encryption key", a.new_kek_file.display()))?;
    let done = tranzcast_origin::rekey(&config, new)?;
    println!(
        "re-sealed {} key(s) in {}{}; now set keys.kek_file = {} on every origin",
        done.store,
        config.data_dir.display(),
        done.database.map(|n| format!(" and {n} value(s) in the shared database")).unwrap_or_default(),
        a.new_kek_file.display()
    );
    Ok(())
}

fn run_origin(a: ServerArgs) -> Result<()> {
    let config: tranzcast_config::OriginConfig = tranzcast_config::load(a.config.as_deref(), &a.set)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let origin = tranzcast_origin::Origin::start(config).await?;
        eprintln!(
            "origin listening on https://{} (h1, h2, h3){}; key {}",
            origin.https_addr(),
            origin.plain_addr().map(|p| format!(", plain http://{p}")).unwrap_or_default(),
            hex::encode(origin.public_key().as_bytes())
        );
        wait_for_signal().await;
        eprintln!("origin: draining");
        origin.shutdown().await;
        Ok(())
    })
}

fn run_edge(a: EdgeArgs) -> Result<()> {
    let config: tranzcast_config::EdgeConfig = tranzcast_config::load(a.server.config.as_deref(), &a.server.set)?;
    let ca_dir = a.ca_dir.unwrap_or_else(|| config.data_dir.join("tls"));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let tls = tranzcast_edge::EdgeTls::from_config(&config, &ca_dir)?;
        let server = tranzcast_edge::EdgeServer::start(config, tls).await?;
        eprintln!("{} listening on https://{} (h1, h2, h3)", server.name(), server.https_addr());
        wait_for_signal().await;
        eprintln!("{}: draining", server.name());
        server.shutdown().await;
        Ok(())
    })
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn inspect(text: &str, origin_key: Option<&str>) -> Result<()> {
    use tranzcast_proto::ticket::{SignedToken, Token, UNLIMITED};
    let st = SignedToken::from_text(text).map_err(|e| anyhow::anyhow!("not a ticket or certificate: {e}"))?;
    let when = |t: u64| if t == 0 { "never".to_string() } else { format!("{t} (unix s)") };
    let mut v = match &st.token {
        Token::Ticket(t) => serde_json::json!({
            "type": "play ticket", "serial": hex::encode(t.serial), "customer": t.customer, "created": when(t.created),
            "expires": when(t.expires), "title": t.title.as_str(),
            "plays": if t.plays == UNLIMITED { "unlimited".to_string() } else { t.plays.to_string() },
            "key_part": "K2 (32 bytes, not shown)",
        }),
        Token::Certificate(c) => serde_json::json!({
            "type": "validation certificate", "serial": hex::encode(c.serial), "customer": c.customer, "created": when(c.created),
            "expires": when(c.expires), "title": c.title.as_str(), "key_part": "K1 (32 bytes, not shown)",
        }),
    };
    let mut valid = None;
    if let Some(k) = origin_key {
        let mut b = [0u8; 32];
        hex::decode_to_slice(k.trim(), &mut b).map_err(|_| anyhow::anyhow!("--origin-key must be 64 hex digits"))?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&b).map_err(|_| anyhow::anyhow!("--origin-key is not an Ed25519 public key"))?;
        valid = Some(st.verify(&vk).is_ok());
    }
    v["signature"] = match valid {
        None => "not checked (give --origin-key)".into(),
        Some(true) => "valid".into(),
        Some(false) => "INVALID: not signed by this origin key, or altered".into(),
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    if valid == Some(false) {
        bail!("signature does not verify");
    }
    Ok(())
}
