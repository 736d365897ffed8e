//! Content-addressed blob storage for every Tranzcast role.
//!
//! - [`BlobStore`]: blobs keyed by their blake3 in RocksDB (large values in
//!   RocksDB's blob files), with a moka cache weighted by bytes in front, plus
//!   small catalog tables (titles, and on the origin only, title keys).
//! - [`MasterStore`]: the origin's master copies through opendal: a directory
//!   by default, an S3 bucket by config.
//!
//! Invariants: nothing is stored under an address its bytes do not hash to;
//! every read from disk is verified against its address before it is
//! returned or cached (see `docs/store.md` for why whole-blob checks here and
//! group outboards on the network); an acknowledged write survives a crash.

mod blob_store;
mod error;
mod master;

pub use blob_store::{BlobStore, Durability, StoreOptions, StoreStats};
pub use error::StoreError;
pub use master::{MasterOptions, MasterStore};
