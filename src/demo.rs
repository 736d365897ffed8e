//! `tranzcast demo`: the README's main command.
//!
//! Today it runs what exists end to end on this machine: make a test clip
//! (ffmpeg when present, otherwise deterministic bytes) or take `--input`,
//! ingest it into a fresh store, export it back through full verification
//! and decryption, check the bytes are identical, and scan the store for
//! plaintext. The cluster (origin, nodes, edges, peers, smart client) joins
//! this command as those issues land.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tranzcast_ingest::{IngestOptions, export, ingest};
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
}

fn make_clip(dir: &Path) -> Result<(PathBuf, &'static str)> {
    let mp4 = dir.join("sample.mp4");
    let ffmpeg = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=20:size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=20", "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-pix_fmt", "yuv420p", "-g", "50", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-shortest"])
        .arg(&mp4)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if matches!(ffmpeg, Ok(s) if s.success()) {
        return Ok((mp4, "ffmpeg test clip (20 s, 640x360, H.264/AAC)"));
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
    let temp;
    let dir = match &a.data {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("tranzcast-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
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
    // A 64-byte window of the original must appear nowhere in the store.
    let original = std::fs::read(&input)?;
    let probe_at = original.len() / 2;
    let leaked = if original.len() >= 64 { any_file_contains(&store_dir, &original[probe_at..probe_at + 64])? } else { None };
    let verified = identical && leaked.is_none();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "verified": verified, "bytes": r.bytes, "input": input.display().to_string(), "clip": what,
                "title": r.title, "segments": r.segments, "segment_size": r.segment_size, "manifest": r.manifest,
                "ingest_mb_per_s": r.mb_per_s, "export_mb_per_s": e.bytes as f64 / 1e6 / export_s.max(1e-9),
                "plaintext_at_rest": leaked.map(|p| p.display().to_string()),
                "startup_ms": null, "sources": {"local-store": e.bytes},
            })
        );
    } else {
        println!("input      {} ({what}), {} bytes", input.display(), r.bytes);
        println!("ingest     {} segments of {} bytes, {:.0} MB/s, manifest {}", r.segments, r.segment_size, r.mb_per_s, r.manifest);
        println!("export     {} bytes verified and decrypted, {:.0} MB/s", e.bytes, e.bytes as f64 / 1e6 / export_s.max(1e-9));
        println!("identical  {identical}");
        println!(
            "at rest    {}",
            match &leaked {
                None => "no plaintext in the store".to_string(),
                Some(p) => format!("PLAINTEXT FOUND in {}", p.display()),
            }
        );
        if a.data.is_some() {
            println!("kept       {}", dir.display());
        }
    }
    if !verified {
        bail!("demo failed: exported bytes differ or plaintext found at rest");
    }
    Ok(())
}
