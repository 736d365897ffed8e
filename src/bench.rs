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
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
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
                handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("bench thread panicked")))).collect::<Result<Vec<_>>>()
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
