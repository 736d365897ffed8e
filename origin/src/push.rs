//! Pushing blobs from the origin's store to a member (a node being staged,
//! a peer being pre-cast to): ask which it lacks, push those, each call
//! bounded; and the progress of each title on each member.

use std::sync::{Arc, Mutex};

use tranzcast_proto::BlobAddress;

use crate::Inner;

/// Each call of a push (the question, one blob, the manifest): its answer
/// within the first, the whole call within the second.
pub(crate) const PUSH_BOUNDS: (std::time::Duration, std::time::Duration) =
    (std::time::Duration::from_secs(10), std::time::Duration::from_secs(60));

pub use tranzcast_proto::answers::TitleProgress;

/// Node name -> title -> progress.
pub type StagingStatus = Arc<Mutex<tranzcast_proto::answers::ProgressByMember>>;

/// Asks `base` which of `blobs` it lacks and pushes those from the origin's store.
pub(crate) async fn push_missing(
    inner: &Inner,
    http: &reqwest::Client,
    base: &str,
    token: &str,
    blobs: &[BlobAddress],
) -> Result<u64, String> {
    tranzcast_net::push::push_missing(http, base, token, blobs, PUSH_BOUNDS, |a| {
        let b = inner.store.get(a).map_err(|e| e.to_string())?;
        let n = b.as_ref().map_or(0, |b| b.len() as u64);
        inner.metrics.pushed_bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Ok(b)
    })
    .await
}
