//! Reading a blob, for the blob route and for playback alike: from memory
//! or the store (a hit), else through the coalesced, verified upstream
//! fetch (a miss), which stores it once whole. Hits and misses are counted
//! here and nowhere else.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::StreamExt;
use http::StatusCode;
use tranzcast_proto::BlobAddress;

use crate::Inner;
use crate::fetch::{FetchError, Flight, FlightSource};
use crate::reply::{Fail, error, internal};

/// The blob if this server holds it (memory first, then the store on the
/// blocking pool), counted as a hit.
pub(crate) async fn held(inner: &Arc<Inner>, a: BlobAddress) -> Result<Option<Bytes>, Fail> {
    let held = match inner.store.get_cached(&a) {
        Some(b) => Some(b),
        None => {
            let i2 = inner.clone();
            tokio::task::spawn_blocking(move || i2.store.get(&a)).await.map_err(internal)?.map_err(internal)?
        }
    };
    if held.is_some() {
        inner.counters.hits.fetch_add(1, Ordering::Relaxed);
    }
    Ok(held)
}

/// Joins (or starts, charged to `starter`) the upstream fetch of `a`, which
/// stores it once verified; counted as a miss.
pub(crate) async fn fetch(inner: &Arc<Inner>, a: BlobAddress, starter: Option<std::net::IpAddr>) -> Result<Arc<Flight>, Fail> {
    inner.counters.misses.fetch_add(1, Ordering::Relaxed);
    join(inner, a, starter).await
}

/// As [`fetch`], not counted (an outboard asked with its blob: the blob's
/// request counts the miss).
pub(crate) async fn join(inner: &Arc<Inner>, a: BlobAddress, starter: Option<std::net::IpAddr>) -> Result<Arc<Flight>, Fail> {
    let i3 = inner.clone();
    let i4 = inner.clone();
    let held = move || Some((i4.store.get(&a).ok()??, i4.store.outboard(&a).ok()??));
    let keep = move |bytes: Bytes, ob| crate::mirror::keep(&i3, &a, &bytes, Some(&ob), crate::mirror::Offer::Fetched);
    inner.fetcher.join(a, starter, keep, held).await.map_err(|e| match e {
        FetchError::NotFound => error(StatusCode::NOT_FOUND, "unknown_blob", format!("no blob {a} upstream")),
        FetchError::Busy => {
            inner.server.refuse(tranzcast_net::Refusal::UpstreamBusy);
            error(StatusCode::SERVICE_UNAVAILABLE, "upstream_busy", "too many upstream fetches in the air; try again or another source")
        }
        FetchError::Upstream(e) => error(StatusCode::BAD_GATEWAY, "upstream", e),
    })
}

/// The whole blob: held, or fetched now, charged to `starter` (see [`fetch`]).
pub(crate) async fn read_or_fetch(inner: &Arc<Inner>, a: BlobAddress, starter: Option<std::net::IpAddr>) -> Result<(Bytes, bool), Fail> {
    if let Some(b) = held(inner, a).await? {
        return Ok((b, true));
    }
    let flight = fetch(inner, a, starter).await?;
    let len = flight.len;
    let mut body = tranzcast_net::ranged::Source::stream(&FlightSource(flight), 0, len);
    let mut whole = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    while let Some(part) = body.next().await {
        whole.extend_from_slice(&part.map_err(|e| error(StatusCode::BAD_GATEWAY, "upstream", e.to_string()))?);
    }
    Ok((Bytes::from(whole), false))
}
