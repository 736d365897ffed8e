//! Export: verify, decrypt and reassemble a title from a local store.

use std::io::Write;
use std::path::Path;

use indicatif::ProgressBar;
use serde::Serialize;
use tranzcast_proto::TitleId;
use tranzcast_proto::frame::FrameKind;
use tranzcast_proto::keys::{self, Expected, TitleKey};
use tranzcast_proto::manifest::SignedManifest;
use tranzcast_store::BlobStore;

use crate::{IngestError, origin_signing_key};

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The title.
    pub title: String,
    /// Plaintext bytes written.
    pub bytes: u64,
    /// Segments verified and decrypted.
    pub segments: u64,
    /// The output file.
    pub out: String,
}

/// Writes title `title` from `store` to `out`, verifying every blob's address,
/// the manifest's signature and every frame's tag. The output appears only
/// once it is complete (written beside it, then renamed).
pub fn export(store: &BlobStore, title: &TitleId, out: &Path, progress: &ProgressBar) -> Result<ExportReport, IngestError> {
    let verr = |sequence: u64, reason: String| IngestError::Verify { title: title.clone(), sequence, reason };
    let maddr = store.title_manifest(title)?.ok_or_else(|| IngestError::NoSuchTitle(title.clone()))?;
    let mbytes = store.get(&maddr)?.ok_or_else(|| verr(u64::MAX, "manifest blob missing".into()))?;
    let trusted = origin_signing_key(store)?.verifying_key();
    let signed = SignedManifest::decode(&mbytes)?;
    let manifest = signed.verify(&trusted).map_err(|e| verr(u64::MAX, e.to_string()))?.clone();
    if &manifest.title != title {
        return Err(verr(u64::MAX, format!("manifest is for title {}", manifest.title)));
    }
    let key = TitleKey::from_bytes(store.title_secret(title)?.ok_or_else(|| verr(u64::MAX, "no key for this title in this store".into()))?);

    let out_err = |source| IngestError::Output { path: out.into(), source };
    let file_name = out.file_name().ok_or_else(|| out_err(std::io::Error::other("not a file path")))?;
    let tmp = out.with_file_name(format!(".{}.partial-{}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).map_err(out_err)?);
        progress.set_length(manifest.plaintext_len);
        let mut written = 0u64;
        for (i, addr) in manifest.segments.iter().enumerate() {
            let seq = i as u64;
            let frame = store.get(addr)?.ok_or_else(|| verr(seq, format!("blob {addr} missing")))?;
            let plain = keys::open(&key, &frame, &Expected { title, kind: FrameKind::Media, sequence: seq })
                .map_err(|e| verr(seq, e.to_string()))?;
            let keep = manifest.segment_plain_len(seq) as usize;
            if plain.len() != manifest.segment_size as usize {
                return Err(verr(seq, format!("{} plaintext bytes, manifest says {}", plain.len(), manifest.segment_size)));
            }
            w.write_all(&plain[..keep]).map_err(out_err)?;
            written += keep as u64;
            progress.inc(keep as u64);
        }
        let f = w.into_inner().map_err(|e| out_err(e.into_error()))?;
        f.sync_all().map_err(out_err)?;
        Ok(written)
    })();
    match result {
        Ok(written) => {
            std::fs::rename(&tmp, out).map_err(out_err)?;
            progress.finish_and_clear();
            Ok(ExportReport {
                title: title.to_string(),
                bytes: written,
                segments: manifest.segments.len() as u64,
                out: out.display().to_string(),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
