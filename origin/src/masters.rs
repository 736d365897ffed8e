//! Master copies (`master.*`): every blob of every title this origin holds
//! is copied to the master store (a directory, or an S3 bucket several
//! origins share), and a title this origin lacks blobs of (published by
//! another origin, or its disk was lost) is restored from there before it
//! is staged: each blob verified against its address on the way in, so a
//! tampered or bit-rotted bucket is caught, never served.

use std::collections::HashSet;
use std::sync::Mutex;

use tranzcast_config::{MasterBackend, OriginConfig};
use tranzcast_proto::BlobAddress;
use tranzcast_store::{MasterOptions, MasterStore};

use crate::{Inner, OriginError};

/// The master store and what is known to be in it already.
#[derive(Debug)]
pub(crate) struct Masters {
    store: MasterStore,
    /// Addresses copied (or found there) since this origin started.
    copied: Mutex<HashSet<BlobAddress>>,
}

/// Opens the configured master store, if any.
pub(crate) fn open(config: &OriginConfig) -> Result<Option<Masters>, OriginError> {
    let m = &config.master;
    let opts = match m.backend {
        MasterBackend::None => return Ok(None),
        MasterBackend::Fs => {
            MasterOptions::Fs { root: m.root.clone().unwrap_or_else(|| config.data_dir.join("master").to_string_lossy().into_owned()) }
        }
        MasterBackend::S3 => {
            // opendal talks to S3 through reqwest, which takes rustls's
            // process-wide provider: ours (another one installed first stays).
            let _ = tranzcast_net::tls::provider().as_ref().clone().install_default();
            MasterOptions::S3 {
                bucket: m.bucket.clone().unwrap_or_default(),
                root: m.root.clone().unwrap_or_else(|| "/".into()),
                endpoint: m.endpoint.clone(),
                // S3-compatible servers accept any region; AWS needs the bucket's.
                region: Some(m.region.clone().unwrap_or_else(|| "us-east-1".into())),
                credentials: (!m.access_key_id.is_empty())
                    .then(|| (m.access_key_id.expose().to_string(), m.secret_access_key.expose().to_string())),
            }
        }
    };
    Ok(Some(Masters { store: MasterStore::open(&opts)?, copied: Mutex::new(HashSet::new()) }))
}

impl Masters {
    fn known(&self, a: &BlobAddress) -> bool {
        self.copied.lock().unwrap_or_else(|p| p.into_inner()).contains(a)
    }

    fn mark(&self, a: BlobAddress) {
        self.copied.lock().unwrap_or_else(|p| p.into_inner()).insert(a);
    }

    /// How many blobs are known to be in the master store.
    pub(crate) fn count(&self) -> usize {
        self.copied.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Copies every blob of every local title that the master store lacks.
pub(crate) async fn copy_round(inner: &Inner) -> Result<u64, String> {
    let Some(m) = &inner.masters else { return Ok(0) };
    let mut copied = 0;
    for (_, maddr) in inner.store.titles().map_err(|e| e.to_string())? {
        let Some(mbytes) = inner.store.get(&maddr).map_err(|e| e.to_string())? else { continue };
        let manifest = tranzcast_proto::manifest::SignedManifest::decode(&mbytes).map_err(|e| e.to_string())?.manifest;
        for a in manifest.segments.iter().chain(std::iter::once(&maddr)) {
            if m.known(a) {
                continue;
            }
            if !m.store.has(a).await.map_err(|e| e.to_string())? {
                let Some(bytes) = inner.store.get(a).map_err(|e| e.to_string())? else { continue };
                m.store.put(bytes).await.map_err(|e| e.to_string())?;
                copied += 1;
            }
            m.mark(*a);
        }
    }
    if copied > 0 {
        tracing::info!(blobs = copied, "copied to the master store");
    }
    Ok(copied)
}

/// Brings every blob of `blobs` this origin's store lacks in from the
/// master store (verified against its address by the read); an error when
/// one is in neither.
pub(crate) async fn restore(inner: &std::sync::Arc<Inner>, blobs: &[BlobAddress]) -> Result<u64, String> {
    let mut restored = 0;
    for a in blobs {
        if inner.store.has(a).map_err(|e| e.to_string())? {
            continue;
        }
        let m = inner.masters.as_ref().ok_or_else(|| format!("blob {a} is not here and no master store is configured"))?;
        let bytes = m.store.get(a).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("blob {a} is not in the master store"))?;
        let i = inner.clone();
        tokio::task::spawn_blocking(move || i.store.put(&bytes)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        m.mark(*a);
        restored += 1;
    }
    if restored > 0 {
        tracing::info!(blobs = restored, "restored from the master store");
    }
    Ok(restored)
}
