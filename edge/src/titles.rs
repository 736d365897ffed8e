//! Which blobs belong to which title, read from the titles' signed
//! manifests and kept per title: an edge refuses a certificate for one
//! title a blob (or outboard) of another *before* any upstream request, so
//! a viewer of one title cannot make the edge fetch, store or serve the
//! rest of the catalog. A held blob is checked by the title in its own first
//! bytes instead (no manifest needed).

use std::collections::HashSet;
use std::sync::Arc;

use tranzcast_proto::manifest::SignedManifest;
use tranzcast_proto::{BlobAddress, TitleId};

use crate::Inner;

/// A title's manifest address and segment addresses.
pub(crate) type TitleBlobs = Arc<HashSet<BlobAddress>>;

/// Addresses kept at most, over every title (about 80 bytes each).
const MAX_ADDRESSES: u64 = 1 << 20;

/// The per-title cache, weighed by addresses held.
pub(crate) fn cache() -> moka::future::Cache<TitleId, TitleBlobs> {
    moka::future::Cache::builder()
        .max_capacity(MAX_ADDRESSES)
        .weigher(|_, v: &TitleBlobs| u32::try_from(v.len()).unwrap_or(u32::MAX).saturating_add(1))
        .build()
}

/// The set of `manifest` (already verified against the origin's key) and its address.
fn blobs_of(bytes: &[u8], manifest: &tranzcast_proto::manifest::Manifest) -> TitleBlobs {
    let mut s: HashSet<BlobAddress> = manifest.segments.iter().copied().collect();
    s.insert(BlobAddress::of(bytes));
    Arc::new(s)
}

/// Whether `a` is `title`'s manifest or one of its segments. Concurrent
/// first asks for one title share one manifest read; an unreadable or
/// unsigned manifest is an error (the caller refuses: fail closed).
pub(crate) async fn belongs(inner: &Arc<Inner>, title: &TitleId, a: &BlobAddress) -> Result<bool, String> {
    let (i2, t2) = (inner.clone(), title.clone());
    let set = inner
        .caches
        .title_blobs
        .try_get_with(title.clone(), async move {
            let bytes = crate::mirror::manifest_bytes(&i2, &t2).await?.ok_or_else(|| format!("no manifest for {t2} here or upstream"))?;
            let sm = SignedManifest::decode(&bytes).map_err(|e| format!("manifest of {t2}: {e}"))?;
            let m = sm.verify(&i2.origin_key).map_err(|e| format!("manifest of {t2}: {e}"))?;
            if m.title != t2 {
                return Err(format!("the manifest kept for {t2} is {}'s", m.title));
            }
            Ok::<_, String>(blobs_of(&bytes, m))
        })
        .await
        .map_err(|e| (*e).clone())?;
    Ok(set.contains(a))
}
