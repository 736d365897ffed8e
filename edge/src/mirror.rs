//! Keeping and mirroring (the I/O side of [`crate::residency`] and
//! [`crate::demand`]): every blob that enters the store is admitted within the
//! disk budget first; every segment request is recorded, and when its title
//! is hot, an edge fetches the next segments from its parents and a node
//! pushes them to the edge that asked. Policy and knobs: `docs/mirroring.md`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tranzcast_config::EdgeRole;
use tranzcast_proto::manifest::{Manifest, SignedManifest};
use tranzcast_proto::outboard::Outboard;
use tranzcast_proto::{BlobAddress, TitleId};

use crate::Inner;
pub(crate) use crate::residency::Offer;
use crate::residency::SegmentRef;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct MirrorStats {
    /// Blobs evicted to stay within the disk budget.
    pub evicted: std::sync::atomic::AtomicU64,
    /// Bytes evicted.
    pub evicted_bytes: std::sync::atomic::AtomicU64,
    /// Blobs not stored because they cannot fit beside the pinned set.
    pub refused: std::sync::atomic::AtomicU64,
    /// Blobs not stored because they are expected later than anything they
    /// would displace (see `residency`).
    pub not_admitted: std::sync::atomic::AtomicU64,
    /// Segments an edge fetched ahead of demand.
    pub prefetched: std::sync::atomic::AtomicU64,
    /// Segments a node pushed to edges.
    pub pushed: std::sync::atomic::AtomicU64,
    /// Per-address order between storing a blob and deleting it as an
    /// eviction victim, so the resident set and the disk never disagree: an
    /// eviction's delete could otherwise land after the same blob was fetched
    /// again and stored, or a store after its blob was evicted. Striped, so
    /// different blobs are written in parallel; hits never take it.
    pub(crate) stripes: Stripes,
}

/// A fixed set of locks, one chosen by address.
#[derive(Debug, Default)]
pub(crate) struct Stripes([std::sync::Mutex<()>; 32]);

impl Stripes {
    fn lock(&self, a: &BlobAddress) -> std::sync::MutexGuard<'_, ()> {
        crate::lock(&self.0[usize::from(a.as_bytes()[0]) % 32])
    }
}

/// Fills the resident set from what the store holds (at start). A node pins
/// every blob of the titles it holds; everyone pins manifests (small, and
/// they are what pulses and prefetches read).
pub(crate) fn load_residency(inner: &Inner) -> Result<(), tranzcast_store::StoreError> {
    let mut pinned = std::collections::HashSet::new();
    for (_, manifest) in inner.store.titles()? {
        pinned.insert(manifest);
        if inner.config.role == EdgeRole::Node
            && let Some(b) = inner.store.get(&manifest)?
            && let Ok(sm) = SignedManifest::decode(&b)
        {
            pinned.extend(sm.manifest.segments);
        }
    }
    let now = inner.policy.now_ms();
    let mut r = crate::lock(&inner.policy.residency);
    for (a, len) in inner.store.list()? {
        // What is on disk was worth keeping when it came: only the budget
        // can turn it away now.
        let offer = if pinned.contains(&a) { Offer::Pinned } else { Offer::Pushed };
        let ad = r.admit(a, len, offer, None, now);
        if !ad.store {
            // Cannot fit beside the pinned set: not left on disk untracked.
            inner.store.delete(&a)?;
        }
        // Over budget at start (the budget was lowered): trim now.
        for victim in ad.evict {
            inner.store.delete(&victim)?;
        }
    }
    Ok(())
}

/// Stores a verified blob that arrived from upstream or a push, within the
/// budget. Blocking (RocksDB); call from the blocking pool.
pub(crate) fn keep(inner: &Inner, a: &BlobAddress, bytes: &[u8], outboard: Option<&Outboard>, offer: Offer) {
    let seg = tranzcast_proto::owner::segment_of(bytes).map(|(title, seq)| SegmentRef::new(&title, seq));
    match admit(inner, a, bytes.len() as u64, offer, seg) {
        Kept::Stored => {}
        Kept::TooBig => {
            inner.mirror.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(blob = %a, "not kept: cannot fit beside the pinned set");
            return;
        }
        Kept::NotWorth => {
            inner.mirror.not_admitted.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(blob = %a, "not kept: expected later than anything it would displace");
            return;
        }
    }
    let _order = inner.mirror.stripes.lock(a);
    if !resident(inner, a) {
        // Evicted by a newer admission before it reached the disk.
        return;
    }
    let r = match outboard {
        Some(ob) => inner.store.put_hashed(a, bytes, ob, tranzcast_store::Durability::Sync),
        None => inner.store.put(bytes).map(|_| ()),
    };
    if let Err(e) = r {
        tracing::error!(blob = %a, error = %e, "cannot store a blob");
        {
            let mut res = crate::lock(&inner.policy.residency);
            res.remove(a);
        }
    }
}

fn resident(inner: &Inner, a: &BlobAddress) -> bool {
    crate::lock(&inner.policy.residency).contains(a)
}

/// Records a title's signed manifest, already checked, as held and pinned
/// (evicting what the budget needs). Blocking.
pub(crate) fn keep_manifest(inner: &Inner, title: &TitleId, body: &[u8]) -> Result<BlobAddress, tranzcast_store::StoreError> {
    let a = BlobAddress::of(body);
    admit(inner, &a, body.len() as u64, Offer::Pinned, None);
    let _order = inner.mirror.stripes.lock(&a);
    inner.store.put_title_manifest(title, body)
}

/// What became of a blob offered to the resident set.
enum Kept {
    Stored,
    /// It cannot fit beside the pinned set.
    TooBig,
    /// It is expected later than anything it would displace.
    NotWorth,
}

/// Admits `a` to the resident set and deletes what it displaces.
fn admit(inner: &Inner, a: &BlobAddress, len: u64, offer: Offer, seg: Option<SegmentRef>) -> Kept {
    let now = inner.policy.now_ms();
    let (ad, fits) = {
        let mut r = crate::lock(&inner.policy.residency);
        let ad = r.admit(*a, len, offer, seg, now);
        (ad, r.fits_beside_pinned(len))
    };
    for victim in &ad.evict {
        let _order = inner.mirror.stripes.lock(victim);
        if resident(inner, victim) {
            // Admitted again since: the newer admission owns it now.
            continue;
        }
        match inner.store.len_of(victim) {
            Ok(Some(n)) => {
                inner.mirror.evicted_bytes.fetch_add(n, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(blob = %victim, error = %e, "evict: cannot size"),
        }
        if let Err(e) = inner.store.delete(victim) {
            tracing::error!(blob = %victim, error = %e, "cannot evict");
        }
        inner.mirror.evicted.fetch_add(1, Ordering::Relaxed);
    }
    match (ad.store, fits) {
        (true, _) => Kept::Stored,
        (false, true) => Kept::NotWorth,
        (false, false) => Kept::TooBig,
    }
}

/// A read of `a` (whose first bytes are `prefix`) starts, from the store
/// (`hit`) or not: residency sees it ([`reading`]) and demand counts it
/// ([`record`]); the prefix is parsed once for both. `edge` is the URL of
/// the edge the request came from (nodes push there).
pub(crate) fn read_started(inner: &Arc<Inner>, a: &BlobAddress, prefix: &[u8], hit: bool, edge: Option<&str>) {
    let segment = tranzcast_proto::owner::segment_of(prefix);
    reading(inner, a, segment.as_ref(), hit);
    record(inner, segment, edge);
}

/// A read of `a`, a segment of `segment` (title and position) if it is one,
/// starts, from the store (`hit`) or not: its title's playheads move, and a hit counts.
fn reading(inner: &Inner, a: &BlobAddress, segment: Option<&(TitleId, u64)>, hit: bool) {
    let seg = segment.map(|(title, seq)| SegmentRef::new(title, *seq));
    let now = inner.policy.now_ms();
    let mut r = crate::lock(&inner.policy.residency);
    if let Some(seg) = seg {
        r.observe(seg, now);
    }
    if hit {
        r.touch(a, now);
    }
}

/// Records a request for a blob, a segment of `segment` if it is one; if
/// that is a hot title, mirrors what comes next.
fn record(inner: &Arc<Inner>, segment: Option<(TitleId, u64)>, edge: Option<&str>) {
    let pushes = inner.config.role == EdgeRole::Node && inner.config.mirroring.push_to_edges && edge.is_some();
    if inner.config.role != EdgeRole::Edge && !pushes {
        return;
    }
    let Some((title, seq)) = segment else { return };
    if inner.config.role == EdgeRole::Edge && {
        let mut k = crate::lock(&inner.caches.manifests_known);
        !k.contains(&title) && k.insert(title.clone())
    } {
        // First request for this title here: bring its manifest, so pulses
        // report which segments this edge holds.
        let (i2, t2) = (inner.clone(), title.clone());
        inner.fetcher.runtime.spawn(async move {
            if !matches!(manifest_bytes(&i2, &t2).await, Ok(Some(_))) {
                crate::lock(&i2.caches.manifests_known).remove(&t2);
            }
        });
    }
    let mirroring = &inner.config.mirroring;
    let (pull, push_to) = match inner.config.role {
        EdgeRole::Edge => (true, None),
        EdgeRole::Node if mirroring.push_to_edges => match edge {
            Some(e) => (false, Some(e.to_string())),
            None => return,
        },
        _ => return,
    };
    let due = crate::lock(&inner.policy.demand).record(&title, seq, None, Instant::now());
    if due.is_empty() {
        return;
    }
    let inner = inner.clone();
    let runtime = inner.fetcher.runtime.clone();
    runtime.spawn(async move {
        let manifest = match manifest(&inner, &title).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%title, error = %e, "no manifest to mirror from");
                return;
            }
        };
        let blobs: Vec<BlobAddress> = due.iter().filter_map(|s| manifest.segments.get(usize::try_from(*s).ok()?).copied()).collect();
        if pull {
            prefetch(&inner, &blobs).await;
        } else if let Some(edge) = push_to {
            push(&inner, &edge, &blobs).await;
        }
    });
}

async fn prefetch(inner: &Arc<Inner>, blobs: &[BlobAddress]) {
    for a in blobs {
        let i2 = inner.clone();
        let a2 = *a;
        let held = tokio::task::spawn_blocking(move || i2.store.has(&a2)).await.ok().and_then(Result::ok).unwrap_or(false);
        if held {
            continue;
        }
        let i3 = inner.clone();
        let (i4, a3) = (inner.clone(), *a);
        let held = move || Some((i4.store.get(&a3).ok()??, i4.store.outboard(&a3).ok()??));
        match inner.fetcher.join(*a, None, move |bytes, ob| keep(&i3, &a2, &bytes, Some(&ob), Offer::Fetched), held).await {
            Ok(_) => {
                inner.mirror.prefetched.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(blob = %a, "prefetching");
            }
            Err(e) => tracing::debug!(blob = %a, error = %e, "prefetch failed"),
        }
    }
}

async fn push(inner: &Arc<Inner>, edge: &str, blobs: &[BlobAddress]) {
    let get = |a: &BlobAddress| inner.store.get(a).map_err(|e| e.to_string());
    let bounds = (inner.config.upstream_timeout.0, inner.config.upstream_timeout.0 * 6);
    match tranzcast_net::push::push_missing(&inner.http, edge, &inner.config.cluster_token, blobs, bounds, get).await {
        Ok(_) => {
            inner.mirror.pushed.fetch_add(blobs.len() as u64, Ordering::Relaxed);
            tracing::debug!(%edge, blobs = blobs.len(), "pushed hot segments");
        }
        Err(e) => tracing::warn!(%edge, error = %e, "cannot push hot segments"),
    }
}

/// A title's manifest: from the store, else from the parents and the origin,
/// checked against the origin's signature and kept (pinned).
pub(crate) async fn manifest(inner: &Arc<Inner>, title: &TitleId) -> Result<Manifest, String> {
    if let Some(b) = manifest_bytes(inner, title).await? {
        return SignedManifest::decode(&b).map(|sm| sm.manifest).map_err(|e| e.to_string());
    }
    Err(format!("no manifest for {title}"))
}

/// The signed manifest's bytes, fetched and kept if not held yet; None if no source has it.
pub(crate) async fn manifest_bytes(inner: &Arc<Inner>, title: &TitleId) -> Result<Option<Bytes>, String> {
    let i2 = inner.clone();
    let t2 = title.clone();
    let held = tokio::task::spawn_blocking(move || -> Result<Option<Bytes>, String> {
        match i2.store.title_manifest(&t2).map_err(|e| e.to_string())? {
            Some(a) => i2.store.get(&a).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    })
    .await
    .map_err(|e| e.to_string())??;
    if held.is_some() || inner.config.role == EdgeRole::Peer {
        return Ok(held);
    }
    // The route needs no credential (manifests are signed and public), so
    // one lookup serves every concurrent ask of a title, and its answer,
    // "no source has it" included, is reused for a few seconds: a client
    // asking for titles that do not exist does not make every source be
    // asked each time. Errors are not kept.
    let (i2, t2) = (inner.clone(), title.clone());
    inner
        .caches
        .manifest_lookups
        .try_get_with(title.clone(), async move {
            // Upstream calls run on the main runtime (see `Fetcher::runtime`): its
            // pooled connections then live there, not on an HTTP/3 endpoint's thread.
            let runtime = i2.fetcher.runtime.clone();
            runtime.spawn(manifest_upstream(i2, t2)).await.map_err(|e| e.to_string())?
        })
        .await
        .map_err(|e| (*e).clone())
}

/// The title's manifest from the first source that has one the origin
/// signed, kept in the store.
async fn manifest_upstream(inner: Arc<Inner>, title: TitleId) -> Result<Option<Bytes>, String> {
    let (inner, title) = (&inner, &title);
    // The largest manifest the format allows; the whole call bounded in time.
    let limits = tranzcast_net::client::CallLimits {
        answer: inner.config.upstream_timeout.0,
        total: inner.config.upstream_timeout.0 * 6,
        max_body: (tranzcast_proto::manifest::MAX_SEGMENTS as usize) * 32 + (1 << 20),
    };
    // "None" is the answer only when no source failed to answer, or an
    // origin (which holds the whole catalog) said it has no such title: a
    // node without it, beside an origin that could not be reached, is an
    // error, not kept (see `manifest_bytes`), so a title is not refused for
    // seconds after an outage.
    let (mut origin_has_none, mut fault) = (false, None);
    for source in inner.fetcher.sources() {
        let b = match tranzcast_net::client::call(inner.http.get(format!("{source}/v1/titles/{title}/manifest")), limits).await {
            Ok((status, b)) if status.is_success() => b,
            Ok((status, _)) if status == http::StatusCode::NOT_FOUND => {
                origin_has_none |= inner.fetcher.is_origin(&source);
                continue;
            }
            Ok((status, _)) => {
                fault = Some(format!("{source}: status {status}"));
                continue;
            }
            Err(e) => {
                fault = Some(format!("{source}: {e}"));
                continue;
            }
        };
        // Only a manifest the origin signed, for this title, is kept.
        let ok = SignedManifest::decode(&b).ok().and_then(|sm| sm.verify(&inner.origin_key).ok().map(|m| &m.title == title));
        if ok != Some(true) {
            tracing::warn!(%source, %title, "a source sent a manifest that is not the origin's");
            continue;
        }
        let (i2, t2, b2) = (inner.clone(), title.clone(), b.clone());
        tokio::task::spawn_blocking(move || keep_manifest(&i2, &t2, &b2)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        return Ok(Some(b));
    }
    match fault {
        Some(last) if !origin_has_none => Err(format!("no source could say whether {title} exists; last: {last}")),
        _ => Ok(None),
    }
}
