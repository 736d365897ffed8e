//! The load test's titles: deterministic media-sized bytes per title,
//! ingested (pass-through, encrypted, segmented by running time) into the
//! origin's store before the cluster starts. The plaintext hash of every
//! segment is kept so each viewer checks every byte it plays against the
//! original, on top of the client's own blake3 and AEAD checks.

use std::io::Write;
use std::path::Path;

use tranzcast_ingest::{IngestOptions, ingest};
use tranzcast_proto::TitleId;
use tranzcast_store::{BlobStore, StoreOptions};

use crate::LoadtestError;
use crate::scenario::Scenario;

/// One title as the load test knows it.
#[derive(Debug, Clone)]
pub struct Title {
    /// Its id (`lt-000`, ...; rank order: `lt-000` is the most popular).
    pub id: String,
    /// Segments in its manifest.
    pub segments: u64,
    /// blake3 of each segment's plaintext (empty: unknown, against a running cluster).
    pub plain: Vec<blake3::Hash>,
}

/// The bytes of title number `n` (a keyed blake3 stream: incompressible, like media).
fn content(n: u32, len: u64, out: &mut impl Write) -> std::io::Result<()> {
    let mut xof = blake3::Hasher::new_derive_key("tranzcast loadtest title v1").update(&n.to_le_bytes()).finalize_xof();
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Ingests the scenario's titles into a new store at `store_dir`; `work` holds the inputs meanwhile.
pub fn prepare(s: &Scenario, store_dir: &Path, work: &Path, progress: &indicatif::ProgressBar) -> Result<Vec<Title>, LoadtestError> {
    let store = BlobStore::open(store_dir, StoreOptions::default()).map_err(|e| LoadtestError::Ingest(e.to_string()))?;
    let len = s.titles.bytes();
    let size = s.segment_size();
    progress.set_length(u64::from(s.titles.count));
    let mut titles = Vec::new();
    for n in 0..s.titles.count {
        let id = format!("lt-{n:03}");
        let input = work.join(format!("{id}.bin"));
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(&input).map_err(LoadtestError::io(format!("create {}", input.display())))?);
        content(n, len, &mut f).and_then(|()| f.flush()).map_err(LoadtestError::io(format!("write {}", input.display())))?;
        drop(f);
        let mut o = IngestOptions::new(TitleId::new(&id).map_err(|e| LoadtestError::Ingest(e.to_string()))?);
        o.segment_size = Some(size);
        let r = ingest(&store, &input, &o).map_err(|e| LoadtestError::Ingest(format!("{id}: {e}")))?;
        let bytes = std::fs::read(&input).map_err(LoadtestError::io(format!("read {}", input.display())))?;
        let plain = bytes.chunks(size as usize).map(blake3::hash).collect();
        let _ = std::fs::remove_file(&input);
        titles.push(Title { id, segments: r.segments, plain });
        progress.inc(1);
    }
    store.sync().map_err(|e| LoadtestError::Ingest(e.to_string()))?;
    Ok(titles)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_ingested_with_segment_hashes_of_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let text = "name = \"t\"\nmax_seconds = 30\n[titles]\ncount = 2\nseconds = 10\nbitrate_kbps = 800\nsegment_seconds = 2\n[viewers]\ncount = 1\narrival_seconds = 0\n";
        let s = Scenario::parse(text).unwrap();
        let t = prepare(&s, &dir.path().join("store"), dir.path(), &indicatif::ProgressBar::hidden()).unwrap();
        assert_eq!(t.len(), 2);
        // 1 MB at 200 kB per 2 s segment, 256 KiB aligned: 4 segments.
        assert_eq!((t[0].segments, t[0].plain.len()), (4, 4));
        assert_ne!(t[0].plain[0], t[1].plain[0], "titles differ");
        let store = BlobStore::open(&dir.path().join("store"), StoreOptions::default()).unwrap();
        let mut out = Vec::new();
        content(1, 1_000_000, &mut out).unwrap();
        assert_eq!(t[1].plain[3], blake3::hash(&out[3 * 262_144..]));
        assert_eq!(store.titles().unwrap().len(), 2);
    }
}
