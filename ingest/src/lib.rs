//! Ingest: a media file in, encrypted framed segments and a signed manifest out.
//!
//! Pipeline (streaming, memory flat whatever the file size): a reader thread
//! cuts the input (the file itself, or ffmpeg's output with `--encode`) into
//! fixed-size segments, the last padded; worker threads seal each into a
//! frame (AES-256-GCM-SIV, per-segment key) and hash it (blake3 with 16 KiB
//! group outboard); the calling thread writes them to the store. The title is
//! published atomically at the end (manifest, catalog entry, key), so a crash
//! leaves either nothing visible or the whole title; a re-run resumes with the
//! same key and skips the blobs already stored.
//!
//! [`export`] does the reverse: verify, decrypt and reassemble.

mod error;
mod export;
mod pipeline;
mod probe;

pub use error::IngestError;
pub use export::{ExportReport, export};
pub use pipeline::{IngestOptions, IngestReport, ingest};
pub use probe::{MediaInfo, probe};
// Pure, and shared with whoever plans titles (the load test): in proto.
pub use tranzcast_proto::sizing::{DEFAULT_BYTES_PER_SECOND, DEFAULT_SEGMENT_SECONDS, segment_size_for};

use ed25519_dalek::SigningKey;
use tranzcast_store::BlobStore;

/// Name of the origin's Ed25519 signing key among the store's secrets.
pub const ORIGIN_SIGNING_KEY: &str = "origin-ed25519";

/// The origin identity held in this store (created on first use).
pub fn origin_signing_key(store: &BlobStore) -> Result<SigningKey, IngestError> {
    let secret = store.secret(ORIGIN_SIGNING_KEY, tranzcast_proto::random_bytes::<32>)?;
    Ok(SigningKey::from_bytes(&secret))
}
