use std::path::PathBuf;

use thiserror::Error;
use tranzcast_proto::{BlobAddress, ProtoError};

/// What went wrong in a store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The directory has files but is not a Tranzcast data directory.
    #[error("{dir}: not a Tranzcast data directory (it has other files and no TRANZCAST marker); refusing to touch it")]
    NotOurs {
        /// The directory.
        dir: PathBuf,
    },
    /// Another process has the store open.
    #[error("{dir}: locked by another process (is a tranzcast server or ingest running on it?){detail}")]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// What the lock attempt said, if more than "busy".
        detail: String,
    },
    /// The disk is full; nothing was written.
    #[error("{dir}: disk full; the write was refused and the store is unchanged")]
    DiskFull {
        /// The directory.
        dir: PathBuf,
    },
    /// Not enough free space for a write; refused before anything was written.
    #[error("{dir}: disk full: about {need} bytes needed, {have} free; nothing was written")]
    NoRoom {
        /// The directory.
        dir: PathBuf,
        /// Bytes needed.
        need: u64,
        /// Bytes free.
        have: u64,
    },
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// RocksDB or opendal refused.
    #[error("{context}: {reason}")]
    Backend {
        /// What was being done.
        context: String,
        /// The backend's message.
        reason: String,
    },
    /// Stored bytes no longer match their address.
    #[error("blob {address} is corrupt: {reason}")]
    Corrupt {
        /// The blob.
        address: BlobAddress,
        /// What failed.
        reason: String,
    },
    /// A range outside the blob.
    #[error("range {start}..{end} is outside blob {address} of {len} bytes")]
    RangeOutOfBounds {
        /// The blob.
        address: BlobAddress,
        /// Start of the range.
        start: u64,
        /// End of the range (exclusive).
        end: u64,
        /// The blob's length.
        len: u64,
    },
    /// Malformed stored metadata.
    #[error(transparent)]
    Proto(#[from] ProtoError),
}

impl StoreError {
    pub(crate) fn backend(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::Backend { context: context.into(), reason: e.to_string() }
    }
}
