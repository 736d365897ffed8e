//! The ingest pipeline: read, cut, seal, hash, store, publish.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use serde::Serialize;
use tranzcast_proto::frame::{FIXED_HEADER_LEN, FrameKind};
use tranzcast_proto::keys::{self, TitleKey};
use tranzcast_proto::manifest::{Chapter, Manifest};
use tranzcast_proto::outboard::Outboard;
use tranzcast_proto::{BlobAddress, TitleId};
use tranzcast_store::{BlobStore, Durability};

use crate::{IngestError, MediaInfo, origin_signing_key, probe, segment_size_for};

/// The bit rate ffmpeg is held to with `--encode` (video 2.5 Mbit/s + audio
/// 128 kbit/s), so the segment size can follow the running time before the
/// output exists.
pub const ENCODE_BYTES_PER_SECOND: u64 = (2_500_000 + 128_000) / 8;

/// What to ingest and how.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The new title's id.
    pub title: TitleId,
    /// Seconds of media per segment.
    pub segment_seconds: f64,
    /// Exact segment size, overriding the running-time rule (operators and tests).
    pub segment_size: Option<u32>,
    /// Transcode with ffmpeg first.
    pub encode: bool,
    /// Sealing threads (0: one per core).
    pub workers: usize,
    /// Progress display (hidden unless the caller makes it visible).
    pub progress: ProgressBar,
}

impl IngestOptions {
    /// Defaults for `title`.
    pub fn new(title: TitleId) -> Self {
        Self {
            title,
            segment_seconds: crate::DEFAULT_SEGMENT_SECONDS,
            segment_size: None,
            encode: false,
            workers: 0,
            progress: ProgressBar::hidden(),
        }
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// The title.
    pub title: String,
    /// Number of segments.
    pub segments: u64,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// Plaintext bytes ingested.
    pub bytes: u64,
    /// Running time in seconds, when known.
    pub running_time_s: Option<f64>,
    /// Manifest blob address (hex).
    pub manifest: String,
    /// MIME type.
    pub media_type: String,
    /// Blobs already present from an interrupted earlier run.
    pub resumed_blobs: u64,
    /// Whether ffmpeg transcoded the input.
    pub encoded: bool,
    /// Wall time.
    pub elapsed_s: f64,
    /// Plaintext MB/s (10^6 bytes).
    pub mb_per_s: f64,
}

/// A segment sealed and stored by a worker.
struct Stored {
    sequence: u64,
    /// Its buffer, back to the reader for the next segment.
    frame: Vec<u8>,
    address: BlobAddress,
    /// Already in the store from an interrupted earlier run.
    resumed: bool,
}

/// A source of plaintext: the file, or ffmpeg's output.
enum Source {
    File(std::fs::File),
    Ffmpeg(Child),
}

fn open_source(path: &Path, encode: bool) -> Result<Source, IngestError> {
    let input_err = |source| IngestError::Input { path: path.into(), source };
    let meta = std::fs::metadata(path).map_err(input_err)?;
    if meta.is_dir() {
        return Err(IngestError::Input { path: path.into(), source: std::io::Error::other("is a directory, not a file") });
    }
    if !encode {
        return Ok(Source::File(std::fs::File::open(path).map_err(input_err)?));
    }
    // Uniform output: H.264 (High, yuv420p) + AAC in fragmented MP4. It plays
    // in every browser and player, and fragmented MP4 streams through a pipe,
    // so no plaintext temp file is ever written.
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "2500k",
            "-maxrate",
            "2500k",
            "-bufsize",
            "5000k",
            "-g",
            "48",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
            "pipe:1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                IngestError::Encode("ffmpeg is not installed (apt-get install ffmpeg), or drop --encode to ingest the file as it is".into())
            }
            _ => IngestError::Encode(format!("cannot start ffmpeg: {e}")),
        })?;
    Ok(Source::Ffmpeg(child))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Ingests `input` into `store` as a new title.
pub fn ingest(store: &BlobStore, input: &Path, opts: &IngestOptions) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let title = &opts.title;
    if store.title_manifest(title)?.is_some() {
        return Err(IngestError::TitleExists(title.clone()));
    }
    let source = open_source(input, opts.encode)?;
    let file_len = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    // With the segment size given, nothing before the manifest needs the
    // probe: it runs beside the sealing instead of before it.
    let probing = (opts.segment_size.is_some() && !opts.encode).then(|| {
        let path = input.to_path_buf();
        std::thread::spawn(move || probe(&path))
    });
    let mut info = match probing {
        Some(_) => MediaInfo { media_type: crate::probe::media_type_for(None, input), ..MediaInfo::default() },
        None => probe(input),
    };
    if opts.encode {
        info.media_type = "video/mp4".into();
    }
    let segment_size = match opts.segment_size {
        Some(s) => s,
        None if opts.encode => {
            let est = ENCODE_BYTES_PER_SECOND * info.running_time_ms / 1000;
            segment_size_for(est, info.running_time_ms, opts.segment_seconds)
        }
        None => segment_size_for(file_len, info.running_time_ms, opts.segment_seconds),
    };
    tranzcast_proto::manifest::Manifest {
        title: title.clone(),
        version: 1,
        media_type: info.media_type.clone(),
        running_time_ms: 0,
        plaintext_len: 0,
        segment_size,
        created: 0,
        chapters: vec![],
        segments: vec![],
    }
    .validate()?;

    // Refuse what cannot fit before writing anything (ffmpeg's output: estimated).
    let expected = if opts.encode { ENCODE_BYTES_PER_SECOND * info.running_time_ms / 1000 } else { file_len };
    store.ensure_room_for(expected)?;

    // Resume with the key of an interrupted run, so its blobs are reused.
    let (key, created) = match store.pending_title_key(title)? {
        Some(k) => (TitleKey::from_bytes(k), false),
        None => {
            let k = TitleKey::generate();
            store.begin_title(title, k.expose())?;
            (k, true)
        }
    };
    let mut written = Vec::new();
    let result = run(store, input, opts, source, (info, probing), segment_size, &key, &mut written, started);
    if let Err(e) = &result {
        // A clean failure leaves the store as it was: drop what this run wrote.
        // (A crash cannot do this; its blobs are reused by the re-run.)
        tracing::warn!(title = %title, error = %e, blobs = written.len(), "ingest failed, rolling back");
        if let Err(e2) = store.abort_title(title, created, &written) {
            tracing::error!(title = %title, error = %e2, "rollback failed; a re-run resumes");
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn run(
    store: &BlobStore,
    input: &Path,
    opts: &IngestOptions,
    mut source: Source,
    (info, probing): (MediaInfo, Option<std::thread::JoinHandle<MediaInfo>>),
    segment_size: u32,
    key: &TitleKey,
    written: &mut Vec<BlobAddress>,
    started: Instant,
) -> Result<IngestReport, IngestError> {
    let title = &opts.title;
    let file_len = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    let signing = origin_signing_key(store)?;

    let progress = &opts.progress;
    if opts.encode {
        progress.set_length(0);
    } else {
        progress.set_length(file_len);
    }
    let workers = if opts.workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { opts.workers };

    let mut addresses: Vec<Option<BlobAddress>> = Vec::new();
    let mut resumed = 0u64;
    let size = segment_size as usize;
    // Set on the first error: the reader stops; what workers already stored
    // still comes back, so a rollback knows every blob written.
    let stop = &AtomicBool::new(false);
    let (total, write_result) = std::thread::scope(|s| {
        let (tx_plain, rx_plain) = sync_channel::<(u64, Vec<u8>)>(workers);
        let (tx_sealed, rx_sealed) = sync_channel::<Result<Stored, IngestError>>(workers);
        // Written frames' buffers go back to the reader: no fresh multi-MiB
        // allocation (page faults, zeroing) per segment, memory stays flat.
        let (tx_free, rx_free) = sync_channel::<Vec<u8>>(2 * workers + 2);
        let reader: &mut (dyn Read + Send) = match &mut source {
            Source::File(f) => f,
            Source::Ffmpeg(c) => match c.stdout.as_mut() {
                Some(o) => o,
                None => return (Err(IngestError::Encode("ffmpeg has no output pipe".into())), Ok(())),
            },
        };
        let path = input.to_path_buf();
        let reader_thread = s.spawn(move || read_segments(reader, size, tx_plain, &rx_free, path, stop));
        let rx_plain = Arc::new(Mutex::new(rx_plain));
        // Each worker seals, hashes and stores its segment: the copies into
        // RocksDB run on every core, not on one writer behind them.
        let sealers: Vec<_> = (0..workers)
            .map(|_| {
                let rx = Arc::clone(&rx_plain);
                let tx = tx_sealed.clone();
                s.spawn(move || seal_worker(key, title, store, &rx, &tx, stop))
            })
            .collect();
        drop(tx_sealed);
        let mut write_result = Ok(());
        for item in rx_sealed {
            let stored = match item {
                Ok(s) => s,
                Err(e) => {
                    if write_result.is_ok() {
                        write_result = Err(e);
                        stop.store(true, Ordering::Relaxed);
                    }
                    continue;
                }
            };
            if stored.resumed {
                resumed += 1;
            } else {
                written.push(stored.address);
            }
            let i = stored.sequence as usize;
            if addresses.len() <= i {
                addresses.resize(i + 1, None);
            }
            addresses[i] = Some(stored.address);
            progress.inc((stored.frame.len() - FIXED_HEADER_LEN - keys_tag()) as u64);
            let _ = tx_free.try_send(stored.frame);
        }
        // Joined here, not by the scope: a worker's panic is then an error
        // like any other, and the caller rolls back what was written (a
        // panic out of the scope would skip the rollback).
        for sealer in sealers {
            if sealer.join().is_err() && write_result.is_ok() {
                write_result = Err(IngestError::Encode("a sealing thread panicked".into()));
                stop.store(true, Ordering::Relaxed);
            }
        }
        let total = reader_thread.join().unwrap_or_else(|_| Err(IngestError::Encode("reader thread panicked".into())));
        (total, write_result)
    });
    // A write error closes the channels and stops the reader; report the write error first.
    write_result?;
    let total = total?;
    if let Source::Ffmpeg(mut child) = source {
        let status = child.wait().map_err(|e| IngestError::Encode(format!("waiting for ffmpeg: {e}")))?;
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
            return Err(IngestError::Encode(format!("ffmpeg failed ({status}): {tail}")));
        }
    }
    let segments: Vec<BlobAddress> = addresses
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            a.ok_or_else(|| IngestError::Verify { title: title.clone(), sequence: i as u64, reason: "segment lost in the pipeline".into() })
        })
        .collect::<Result<_, _>>()?;

    let info = match probing {
        Some(p) => p.join().unwrap_or(info),
        None => info,
    };
    let running_time_ms = info.running_time_ms;
    let chapters = info
        .chapters
        .iter()
        .map(|(start_ms, name)| Chapter {
            start_ms: *start_ms,
            byte_offset: if running_time_ms > 0 {
                ((*start_ms as u128 * total as u128) / running_time_ms as u128).min(total as u128) as u64
            } else {
                0
            },
            name: name.clone(),
        })
        .collect();
    let manifest = Manifest {
        title: title.clone(),
        version: 1,
        media_type: info.media_type.clone(),
        running_time_ms,
        plaintext_len: total,
        segment_size,
        created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        chapters,
        segments,
    };
    let manifest_bytes = manifest.sign(&signing)?;
    // Blobs were written without the WAL: flush them (synced) into blob
    // files, then one synced batch publishes the title.
    store.flush()?;
    let manifest_address = store.commit_title(title, &manifest_bytes, key.expose())?;
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    tracing::info!(title = %title, segments = manifest.segments.len(), bytes = total, elapsed_s = elapsed, "ingested");
    Ok(IngestReport {
        title: title.to_string(),
        segments: manifest.segments.len() as u64,
        segment_size,
        bytes: total,
        running_time_s: (running_time_ms > 0).then(|| running_time_ms as f64 / 1000.0),
        manifest: manifest_address.to_hex(),
        media_type: manifest.media_type,
        resumed_blobs: resumed,
        encoded: opts.encode,
        elapsed_s: elapsed,
        mb_per_s: if elapsed > 0.0 { total as f64 / 1e6 / elapsed } else { 0.0 },
    })
}

const fn keys_tag() -> usize {
    tranzcast_proto::frame::TAG_LEN
}

/// Cuts the input into padded segments; returns the true byte count.
fn read_segments(
    reader: &mut (dyn Read + Send),
    size: usize,
    tx: SyncSender<(u64, Vec<u8>)>,
    free: &Receiver<Vec<u8>>,
    path: PathBuf,
    stop: &AtomicBool,
) -> Result<u64, IngestError> {
    let mut total = 0u64;
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut buf = match free.try_recv() {
            Ok(mut b) => {
                b.truncate(FIXED_HEADER_LEN + size);
                b
            }
            Err(_) => {
                let mut b = keys::frame_buffer(size);
                b.resize(FIXED_HEADER_LEN + size, 0);
                b
            }
        };
        let n = read_full(reader, &mut buf[FIXED_HEADER_LEN..]).map_err(|source| IngestError::Input { path: path.clone(), source })?;
        if n == 0 {
            break;
        }
        // The last segment is padded with zeros (a reused buffer holds old bytes).
        buf[FIXED_HEADER_LEN + n..].fill(0);
        total += n as u64;
        if tx.send((sequence, buf)).is_err() {
            break; // the writer stopped; it reports why
        }
        sequence += 1;
        if n < size {
            break;
        }
    }
    Ok(total)
}

fn seal_worker(
    key: &TitleKey,
    title: &TitleId,
    store: &BlobStore,
    rx: &Mutex<Receiver<(u64, Vec<u8>)>>,
    tx: &SyncSender<Result<Stored, IngestError>>,
    stop: &AtomicBool,
) {
    // A panic here stops the reader at once (the run fails, then rolls back).
    struct StopOnPanic<'a>(&'a AtomicBool);
    impl Drop for StopOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::Relaxed);
            }
        }
    }
    let _stop_on_panic = StopOnPanic(stop);
    loop {
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok((sequence, mut frame)) = next else { return };
        #[cfg(test)]
        if title.as_str() == tests::PANICKING_TITLE && sequence == 5 && tests::PANIC_ARMED.swap(false, Ordering::Relaxed) {
            panic!("test: a sealing thread panics at segment {sequence}");
        }
        let stored = (|| {
            keys::seal_in_place(key, title, FrameKind::Media, sequence, &mut frame)?;
            let (address, outboard) = Outboard::compute(&frame);
            let resumed = store.has(&address)?;
            if !resumed {
                store.put_hashed(&address, &frame, &outboard, Durability::Bulk)?;
            }
            Ok(Stored { sequence, frame, address, resumed })
        })();
        if tx.send(stored).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A sealing thread of this title panics at its segment 5, once armed
    /// (tests only; other tests' titles never panic).
    pub(super) const PANICKING_TITLE: &str = "panics";
    pub(super) static PANIC_ARMED: AtomicBool = AtomicBool::new(false);

    /// A sealing thread that panics fails the ingest with an error, and what
    /// the run wrote is rolled back: the store is as it was, and a re-run
    /// starts afresh and succeeds.
    #[test]
    fn a_sealing_thread_that_panics_fails_the_ingest_and_it_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("store"), tranzcast_store::StoreOptions::default()).unwrap();
        let input = dir.path().join("in.bin");
        std::fs::write(&input, (0..(2u32 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
        let title = TitleId::new(PANICKING_TITLE).unwrap();
        let mut opts = IngestOptions::new(title.clone());
        opts.segment_size = Some(64 << 10);
        opts.workers = 2;
        let before = store.list().unwrap();
        PANIC_ARMED.store(true, Ordering::Relaxed);
        let failed = ingest(&store, &input, &opts);
        assert!(!PANIC_ARMED.load(Ordering::Relaxed), "the sealing thread did not panic");
        let err = failed.expect_err("a panicking sealing thread fails the ingest");
        assert!(err.to_string().contains("panicked"), "{err}");
        assert_eq!(store.list().unwrap(), before, "blobs left behind by the failed run");
        assert!(store.pending_title_key(&title).unwrap().is_none(), "the run's pending key was left behind");
        assert!(store.title_manifest(&title).unwrap().is_none());
        let report = ingest(&store, &input, &opts).expect("a re-run succeeds");
        assert_eq!(report.segments, 32);
    }
}
