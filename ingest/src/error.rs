use std::path::PathBuf;

use thiserror::Error;
use tranzcast_proto::{ProtoError, TitleId};
use tranzcast_store::StoreError;

/// Why an ingest or export failed.
#[derive(Debug, Error)]
pub enum IngestError {
    /// The input could not be opened or read.
    #[error("{path}: {source}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The title is already published.
    #[error("title {0} already exists in this store (pick another id, or delete it first)")]
    TitleExists(TitleId),
    /// The title is not in the store.
    #[error("title {0} is not in this store")]
    NoSuchTitle(TitleId),
    /// ffmpeg was asked for and is missing or failed.
    #[error("--encode: {0}")]
    Encode(String),
    /// The output could not be written.
    #[error("{path}: {source}")]
    Output {
        /// The output file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Stored data failed verification or decryption.
    #[error("title {title}, segment {sequence}: {reason}")]
    Verify {
        /// The title.
        title: TitleId,
        /// The segment (or u64::MAX for the manifest).
        sequence: u64,
        /// What failed.
        reason: String,
    },
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A format error.
    #[error(transparent)]
    Proto(#[from] ProtoError),
}
