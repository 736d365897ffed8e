//! `tranzcast demo`: the README's main command.
//!
//! Makes a test clip (ffmpeg when present, otherwise deterministic bytes) or
//! takes `--input`; ingests it into a fresh store and exports it back through
//! full verification (identical bytes, no plaintext at rest); then starts a
//! whole cluster on loopback (origin, 2 nodes, 3 edges, 2 peers; see
//! `tranzcast_loadtest::cluster`), waits for staging and pre-cast, rents a 2-play ticket and
//! plays it through the smart client, checking the bytes are identical.
//! `--serve` keeps the cluster up and writes `cluster.json`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tranzcast_ingest::{IngestOptions, export, ingest};
use tranzcast_loadtest::cluster::{LocalCluster, Shape};
use tranzcast_proto::TitleId;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Working directory (kept afterwards); a temporary one by default.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Media file to use instead of a generated clip.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Keep the cluster up until interrupted and write `cluster.json` in the data directory.
    #[arg(long)]
    serve: bool,
}

fn make_clip(dir: &Path) -> Result<(PathBuf, &'static str)> {
    let mp4 = dir.join("sample.mp4");
    let ffmpeg = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=60:size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60", "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-pix_fmt", "yuv420p", "-b:v", "1500k", "-g", "50", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-shortest"])
        .arg(&mp4)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if matches!(ffmpeg, Ok(s) if s.success()) {
        return Ok((mp4, "ffmpeg test clip (60 s, 640x360, H.264/AAC)"));
    }
    // No ffmpeg: 48 MiB of deterministic bytes (a keyed blake3 stream).
    let bin = dir.join("sample.bin");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&bin)?);
    let mut xof = blake3::Hasher::new_derive_key("tranzcast demo sample").update(b"v1").finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..48 {
        xof.fill(&mut buf);
        std::io::Write::write_all(&mut out, &buf)?;
    }
    std::io::Write::flush(&mut out)?;
    Ok((bin, "48 MiB of deterministic bytes (ffmpeg not found)"))
}

fn same_file(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Whether any file under `dir` contains `needle`.
fn any_file_contains(dir: &Path, needle: &[u8]) -> Result<Option<PathBuf>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if let Some(p) = any_file_contains(&path, needle)? {
                return Ok(Some(p));
            }
        } else if std::fs::read(&path)?.windows(needle.len()).any(|w| w == needle) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

pub fn run(a: DemoArgs) -> Result<()> {
    let (dir, _temp) = crate::data_dir_or_temp(a.data.as_deref(), "tranzcast-demo-")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (input, what) = match &a.input {
        Some(p) => (p.clone(), "your file"),
        None => make_clip(&dir)?,
    };
    let store_dir = dir.join("origin");
    if store_dir.exists() {
        bail!("{} exists: give the demo a fresh --data directory", store_dir.display());
    }
    let store = crate::open_store(&store_dir, true)?;
    let title = TitleId::new("demo")?;
    let mut opts = IngestOptions::new(title.clone());
    opts.progress = crate::progress_bar(a.json, "ingest");
    let r = ingest(&store, &input, &opts)?;
    let out = dir.join("exported");
    let started = Instant::now();
    let e = export(&store, &title, &out, &crate::progress_bar(a.json, "export"))?;
    let export_s = started.elapsed().as_secs_f64();
    let identical = same_file(&input, &out)?;
    drop(store);
    let rt = tokio::runtime::Runtime::new()?;
    let played = rt.block_on(play_on_cluster(&dir, &input, &a))?;
    // A 64-byte window of the original must appear nowhere in any server's
    // data directory (origin, nodes, edges, peers).
    let original = std::fs::read(&input)?;
    let probe_at = original.len() / 2;
    let mut leaked = None;
    if original.len() >= 64 {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() && ["origin", "node-", "edge-", "peer-"].iter().any(|p| name.starts_with(p)) && leaked.is_none() {
                leaked = any_file_contains(&path, &original[probe_at..probe_at + 64])?;
            }
        }
    }
    let verified = identical && leaked.is_none() && played.identical;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "verified": verified, "bytes": r.bytes, "input": input.display().to_string(), "clip": what,
                "title": r.title, "segments": r.segments, "segment_size": r.segment_size, "manifest": r.manifest,
                "ingest_mb_per_s": r.mb_per_s, "export_mb_per_s": e.bytes as f64 / 1e6 / export_s.max(1e-9),
                "plaintext_at_rest": leaked.map(|p| p.display().to_string()),
                "startup_ms": played.startup_ms, "sources": played.report.by_source, "play_mb_per_s": played.mb_per_s,
                "hit_ratios": played.hit_ratios, "plays_left_ticket": played.replacement.is_some(),
            })
        );
    } else {
        println!("input      {} ({what}), {} bytes", input.display(), r.bytes);
        println!("ingest     {} segments of {} bytes, {:.0} MB/s, manifest {}", r.segments, r.segment_size, r.mb_per_s, r.manifest);
        println!("export     {} bytes verified and decrypted, {:.0} MB/s", e.bytes, e.bytes as f64 / 1e6 / export_s.max(1e-9));
        println!("identical  {identical}");
        println!("cluster    origin, 2 nodes, 3 edges, 2 peers on 127.0.0.1; staged and pre-cast in {:.1} s", played.cluster_s);
        println!(
            "play       {} bytes through the smart client, first segment after {:.0} ms, {:.0} MB/s, identical {}",
            played.report.bytes, played.startup_ms, played.mb_per_s, played.identical
        );
        for (source, bytes) in &played.report.by_source {
            println!("  from     {source:<8} {bytes:>12} bytes");
        }
        for (name, ratio) in &played.hit_ratios {
            println!("  hits     {name:<8} {:>11.0}%", ratio * 100.0);
        }
        println!(
            "at rest    {}",
            match &leaked {
                None => "no plaintext in any server's data directory (origin, nodes, edges, peers)".to_string(),
                Some(p) => format!("PLAINTEXT FOUND in {}", p.display()),
            }
        );
        if a.data.is_some() {
            println!("kept       {}", dir.display());
        }
    }
    if !verified {
        bail!("demo failed: exported or played bytes differ, or plaintext found at rest");
    }
    Ok(())
}

struct Played {
    identical: bool,
    report: tranzcast_client::PlayReport,
    startup_ms: f64,
    mb_per_s: f64,
    cluster_s: f64,
    hit_ratios: std::collections::BTreeMap<String, f64>,
    replacement: Option<String>,
}

async fn play_on_cluster(dir: &Path, input: &Path, a: &DemoArgs) -> Result<Played> {
    let t = Instant::now();
    let shape = Shape { origins: 1, nodes: 2, edges: 3, peers: 2, precast: true, precast_segments: 2, precast_titles: 5 };
    let cluster = LocalCluster::start(dir, &["demo".to_string()], &shape).await?;
    // The peers bought the title: that makes it popular enough to pre-cast.
    if let Err(e) = cluster.wait_precast(&["demo".to_string()], std::time::Duration::from_secs(30)).await {
        tracing::warn!(error = %e, "playing without the pre-cast");
    }
    let cluster_s = t.elapsed().as_secs_f64();
    let ticket = cluster.order("demo", Some(2)).await?;
    let opts =
        tranzcast_client::OpenOptions { origin: cluster.origin_url(), ticket, ca_pem: cluster.ca_pem.clone(), parallel: 4, local: None };
    let started = Instant::now();
    let session = std::sync::Arc::new(tranzcast_client::Session::open(opts).await?);
    let out_path = dir.join("played");
    let mut out = tokio::fs::File::create(&out_path).await?;
    let report = session.play_to(&mut out).await?;
    drop(out);
    let secs = started.elapsed().as_secs_f64();
    let identical = same_file(input, &out_path)?;
    let mut hit_ratios = std::collections::BTreeMap::new();
    for s in cluster.edges.values().chain(cluster.nodes.values()) {
        let text = cluster.http.get(format!("https://localhost:{}/metrics", s.https_addr().port())).send().await?.text().await?;
        let c = tranzcast_loadtest::probe::Counters::parse("edge", &text);
        let (h, m) = (c.hits, c.misses);
        if h + m > 0.0 {
            hit_ratios.insert(s.name().to_string(), h / (h + m));
        }
    }
    let played = Played {
        identical,
        startup_ms: report.first_segment.as_secs_f64() * 1000.0 + 0.0,
        mb_per_s: report.bytes as f64 / 1e6 / secs.max(1e-9),
        report,
        cluster_s,
        hit_ratios,
        replacement: session.replacement_ticket().map(str::to_string),
    };
    if a.serve {
        let mut v = cluster.describe();
        v.title = Some("demo".into());
        v.input = Some(input.display().to_string());
        v.ticket = Some(cluster.order("demo", Some(2)).await?);
        let ticket = cluster.order("demo", None).await?;
        let play = |body: tranzcast_proto::api::PlayBody| {
            let req = cluster.http.post(format!("{}/v1/play", cluster.origin_url())).json(&body);
            async move { anyhow::Ok(req.send().await?.error_for_status()?.bytes().await?) }
        };
        v.certificate =
            Some(tranzcast_proto::answers::PlayGrant::parse(&play(tranzcast_proto::api::PlayBody::client(ticket)).await?)?.certificate);
        // Playback URLs for standard players (ffplay, VLC, a browser, curl), one per edge.
        let bought = cluster.order("demo", None).await?;
        let u =
            tranzcast_proto::answers::PlaybackUrls::parse(&play(tranzcast_proto::api::PlayBody::urls(bought, cluster.edges.len())).await?)?;
        v.playback_url = u.urls.first().map(|u| u.url.clone());
        v.playback_urls = Some(u.urls);
        v.blob = session.manifest().segments.first().map(|b| b.to_hex());
        let path = dir.join("cluster.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&v)?)?;
        eprintln!("cluster up; described in {} (Ctrl-C to stop)", path.display());
        crate::wait_for_signal().await;
        eprintln!("stopping the cluster");
    }
    cluster.shutdown().await;
    Ok(played)
}
