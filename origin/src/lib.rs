//! The origin (the patent's Neuro Center): catalog, customers, orders, signed
//! play tickets with split keys (Fig. 9), validation certificates (Fig. 10),
//! the validation log, revocation and cluster membership, over HTTP/3 and
//! HTTP/1.1/2 (see `docs/api.md`).
//!
//! - [`validation`]: the pure decision of Fig. 13.
//! - [`state`]: customers, orders, tickets, log, revocations, members in RocksDB.
//! - [`ledger`]: that state on the engine chosen (RocksDB, or PostgreSQL for several origins).
//! - [`staging`]: pushes complete sets to every node, resumably.
//! - [`precast`]: pushes popular titles' first segments to peer clients off-peak.
//! - [`Origin`]: the server.

mod api;
mod error;
pub mod ledger;
mod masters;
pub mod precast;
pub mod push;
mod signer;
pub mod staging;
pub mod state;
mod titles_read;
pub mod validation;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{SigningKey, VerifyingKey};
pub use error::OriginError;
use tranzcast_config::OriginConfig;
use tranzcast_net::{HttpServer, LocalCa, ServerOptions, TlsIdentity};
use tranzcast_store::{BlobStore, StoreOptions};

use crate::ledger::Ledger;
use crate::state::OriginState;
use crate::titles_read::{CatalogEntry, TitlesRead};

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Kinds of play refusal (`validation::Refusal`), for per-kind log sampling.
pub(crate) const REFUSAL_KINDS: usize = 8;

pub(crate) fn random16() -> [u8; 16] {
    tranzcast_proto::random_bytes()
}

pub(crate) struct Inner {
    pub store: BlobStore,
    pub state: Ledger,
    pub signing: SigningKey,
    /// The same key, for signing and checking tickets and certificates
    /// (AWS-LC: half the cost per signature, see `signer`).
    pub(crate) tokens: signer::FastSigner,
    pub config: OriginConfig,
    pub metrics: api::Metrics,
    pub staging: push::StagingStatus,
    pub precast: push::StagingStatus,
    /// The server's counters: requests, refusals, connections.
    pub server: Arc<tranzcast_net::ServerStats>,
    /// Plays per client address.
    pub play_rate: std::sync::Mutex<tranzcast_net::limits::RateLimiter>,
    /// Storefront calls per client address.
    pub storefront_rate: std::sync::Mutex<tranzcast_net::limits::RateLimiter>,
    /// Peers' joins, heartbeats and certificate requests per client address
    /// (at the plays' rate: a viewer makes a few of each).
    pub peer_rate: std::sync::Mutex<tranzcast_net::limits::RateLimiter>,
    /// When a refused play was last logged (Unix seconds), per result: one a
    /// second of each is logged, the rest counted.
    pub refusal_logged: [std::sync::atomic::AtomicU64; REFUSAL_KINDS],
    /// Held from a publish's last "is the title free?" check to its commit:
    /// two publishes of one title cannot both commit (and swap its key).
    pub publishing: std::sync::Mutex<()>,
    /// Held from a join's check of who holds a name to its write.
    pub members_lock: std::sync::Mutex<()>,
    /// Issues peers' TLS certificates (`POST /v1/cluster/peer-identity`).
    pub peer_ca: LocalCa,
    /// Master copies (`master.*`), if configured.
    pub(crate) masters: Option<masters::Masters>,
    /// This process among the cluster's origins (leases are held in its name).
    pub(crate) instance: [u8; 16],
    /// Titles read (keys and manifests) from this origin's store, and from
    /// the cluster's catalog (shared engine): see `titles_read`.
    pub(crate) titles_read: std::sync::Mutex<TitlesRead>,
    pub(crate) shared_titles: std::sync::Mutex<TitlesRead>,
    /// The sources plays name (see `api::play::sources`).
    pub(crate) sources: std::sync::Mutex<SourcesKept>,
    /// The rendered `GET /v1/titles` answer and when it was built (see
    /// `api::catalog::titles`).
    pub(crate) title_list: std::sync::Mutex<api::TitleList>,
}

impl Inner {
    /// Heartbeats older than this (ms since the epoch) are gone members'.
    fn member_cutoff_ms(&self) -> u64 {
        now_ms().saturating_sub(u64::try_from(self.config.member_timeout.0.as_millis()).unwrap_or(u64::MAX))
    }

    /// A title's key and signed manifest: from this origin's store, else
    /// (on a shared engine) from the cluster's catalog, kept in memory once
    /// read (see `titles_read`: on the store, checked against the title's
    /// manifest address each time; a title published on a shared engine
    /// never changes, and its key is not written to this origin's disk).
    pub(crate) fn catalog_entry(&self, title: &tranzcast_proto::TitleId) -> Result<Option<CatalogEntry>, OriginError> {
        let read = || self.titles_read.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(address) = self.store.title_manifest(title)? {
            if let Some(e) = read().get(title.as_str(), Some(&address)) {
                return Ok(Some(e.clone()));
            }
            if let Some(key) = self.store.title_secret(title)?
                && let Some(manifest) = self.store.get(&address)?
            {
                let e = CatalogEntry::new(key, manifest, address);
                read().insert(title.as_str(), e.clone());
                return Ok(Some(e));
            }
        }
        let Some(pg) = self.state.shared() else { return Ok(None) };
        let shared = || self.shared_titles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = shared().get(title.as_str(), None) {
            return Ok(Some(e.clone()));
        }
        let Some(t) = pg.title(title.as_str())? else { return Ok(None) };
        let manifest = bytes::Bytes::from(t.manifest);
        let e = CatalogEntry::new(t.key, manifest.clone(), tranzcast_proto::BlobAddress::of(&manifest));
        shared().insert(title.as_str(), e.clone());
        Ok(Some(e))
    }

    /// Whether this origin may push to member `name` now (`what`: staging
    /// or pre-cast): always on its own, on a shared engine when it holds the
    /// lease (three rounds long, renewed each round), so two origins never
    /// push the same blobs to one member at once. An unreadable lease is
    /// not held (this round is skipped; the next one asks again).
    pub(crate) fn may_push(&self, what: &str, name: &str) -> bool {
        let Some(pg) = self.state.shared() else { return true };
        let ttl = u64::try_from(self.config.staging_interval.0.as_millis()).unwrap_or(u64::MAX).saturating_mul(3).max(3000);
        pg.lease(&format!("{what}/{name}"), &self.instance, now_ms(), ttl).unwrap_or_else(|e| {
            tracing::warn!(error = %e, member = name, "cannot read the push lease; skipping this round");
            false
        })
    }

    /// Members seen within the member timeout.
    pub(crate) fn live_members(&self) -> Result<Vec<state::Member>, OriginError> {
        self.state.live_members(self.member_cutoff_ms())
    }

    /// Drops the plays' list of sources: the next play reads it again, and
    /// a list being read now is not kept.
    pub(crate) fn forget_sources(&self) {
        let mut kept = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        kept.list = None;
        kept.generation += 1;
    }

    /// Whether a peer's record still belongs to its certificate (see [`Ledger::peer_live`]).
    pub(crate) fn peer_live(&self, m: &state::Member) -> bool {
        self.state.peer_live(m, self.member_cutoff_ms(), now_secs())
    }
}

/// The list of sources plays name, when it was read, and how many times it
/// was dropped (a list read across a drop is not kept).
#[derive(Debug, Default)]
pub(crate) struct SourcesKept {
    pub list: Option<(std::time::Instant, Vec<tranzcast_proto::answers::SourceEntry>)>,
    pub generation: u64,
}

/// A running origin.
pub struct Origin {
    server: HttpServer,
    inner: Arc<Inner>,
    ca_pem: String,
    staging: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin").field("https", &self.server.https_addr).finish_non_exhaustive()
    }
}

impl Origin {
    /// Opens the data directory and starts serving. Without a configured
    /// certificate, a local CA in `<data_dir>/tls/` issues one for
    /// `localhost` and `127.0.0.1` (clients trust `ca.pem`).
    pub async fn start(config: OriginConfig) -> Result<Self, OriginError> {
        let dir = config.data_dir.clone();
        let store = BlobStore::open(&dir, StoreOptions { cache_bytes: config.store.cache_bytes.0, create: true })?;
        let (state, signing) = open_state(&config, &store)?;
        tracing::info!(engine = state.engine(), "origin state open");
        let (identity, ca_pem) = identity(&config, &dir)?;
        // Peers' certificates come from the local CA in <data_dir>/tls (its
        // key stays here), whatever identity the origin itself presents.
        let peer_ca = LocalCa::load_or_create(&dir.join("tls"))?;
        let tokens = signer::FastSigner::new(&signing)?;
        let inner = Arc::new(Inner {
            store,
            state,
            signing,
            tokens,
            config: config.clone(),
            metrics: api::Metrics::default(),
            staging: Default::default(),
            precast: Default::default(),
            server: Arc::new(tranzcast_net::ServerStats::default()),
            play_rate: std::sync::Mutex::new(tranzcast_net::limits::RateLimiter::new(
                config.rate.play_per_s,
                config.rate.play_burst,
                config.rate.max_addresses,
            )),
            storefront_rate: std::sync::Mutex::new(tranzcast_net::limits::RateLimiter::new(
                config.rate.storefront_per_s,
                config.rate.storefront_burst,
                config.rate.max_addresses,
            )),
            peer_rate: std::sync::Mutex::new(tranzcast_net::limits::RateLimiter::new(
                config.rate.play_per_s,
                config.rate.play_burst,
                config.rate.max_addresses,
            )),
            refusal_logged: Default::default(),
            publishing: std::sync::Mutex::new(()),
            members_lock: std::sync::Mutex::new(()),
            peer_ca,
            titles_read: Default::default(),
            shared_titles: Default::default(),
            sources: Default::default(),
            title_list: Default::default(),
            masters: masters::open(&config)?,
            instance: random16(),
        });
        let opts = ServerOptions {
            https: config.listen.https,
            plain: config.listen.plain,
            identity,
            limits: config.limits,
            drain: Duration::from_secs(10),
            stats: inner.server.clone(),
            h3_endpoints: config.listen.h3_endpoints.into(),
        };
        let (h, a) = (inner.clone(), inner.clone());
        let handler =
            tranzcast_net::handler(move |req, cx| api::handle(h.clone(), req, cx)).admit_with(move |parts, cx| api::admit(&a, parts, cx));
        let server = HttpServer::bind(opts, handler).await?;
        tracing::info!(https = %server.https_addr, key = %hex::encode(inner.signing.verifying_key().as_bytes()), "origin up");
        // The roots the origin trusts for nodes and peers: `ca` with the
        // operator's own certificates, else the local CA that signed them.
        let http = tranzcast_net::client::https(ca_pem.as_bytes())?;
        let staging = tokio::spawn(staging::run(inner.clone(), http));
        Ok(Self { server, inner, ca_pem, staging })
    }

    /// The bound TLS address (TCP for h1/h2, UDP for h3).
    pub fn https_addr(&self) -> std::net::SocketAddr {
        self.server.https_addr
    }

    /// The bound plain-HTTP address, if any.
    pub fn plain_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.plain_addr
    }

    /// The origin's Ed25519 public key: verifies tickets, certificates and manifests.
    pub fn public_key(&self) -> VerifyingKey {
        self.inner.signing.verifying_key()
    }

    /// The CA certificate (PEM) clients should trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The validation log (granted plays), oldest first: for audits and tests.
    pub fn validation_log(&self) -> Result<Vec<state::ValidationEntry>, OriginError> {
        self.inner.state.validations()
    }

    /// Refused plays of genuine tickets: (serial hex, result, how many times).
    pub fn refused_plays(&self) -> Result<Vec<(String, String, u64)>, OriginError> {
        self.inner.state.refusals()
    }

    /// Node name -> title -> staging progress.
    pub fn staging_status(&self) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, push::TitleProgress>> {
        self.inner.staging.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Peer name -> title -> pre-cast progress.
    pub fn precast_status(&self) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, push::TitleProgress>> {
        self.inner.precast.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many blobs are known to be in the master store (copied or found
    /// there since this origin started).
    pub fn master_blobs(&self) -> usize {
        self.inner.masters.as_ref().map_or(0, |m| m.count())
    }

    /// The CA directory of the local CA (when no certificate is configured):
    /// servers of a loopback cluster share it.
    pub fn ca_dir(&self) -> std::path::PathBuf {
        self.inner.config.data_dir.join("tls")
    }

    /// Stops at once, as a crash would: connections are cut mid-answer,
    /// nothing is drained, staging stops. What is committed stays committed
    /// (every answer followed its durable write); the other origins of a
    /// cluster on a shared state carry on.
    pub async fn kill(self) {
        self.staging.abort();
        let _ = self.staging.await;
        self.server.kill().await;
    }

    /// Stops accepting and drains requests in flight.
    pub async fn shutdown(self) {
        self.staging.abort();
        let _ = self.staging.await;
        self.server.shutdown().await;
        let _ = self.inner.store.sync();
    }
}

/// The key-encryption key: `keys.kek_file`, else `TRANZCAST_KEK`, else none.
fn kek(config: &OriginConfig) -> Result<Option<tranzcast_proto::envelope::Kek>, OriginError> {
    let text = match &config.keys.kek_file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| OriginError::Storage(format!("keys.kek_file {}: {e}", f.display())))?,
        None => match std::env::var("TRANZCAST_KEK") {
            Ok(t) => t,
            Err(_) => return Ok(None),
        },
    };
    tranzcast_proto::envelope::Kek::from_hex(&text).map(Some).map_err(|e| OriginError::Storage(format!("key-encryption key: {e}")))
}

/// What `rekey` re-sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rekeyed {
    /// Keys in this origin's own store.
    pub store: u64,
    /// Sealed values in the shared database (None on the embedded engine).
    pub database: Option<u64>,
}

/// Rotates the key-encryption key: every key sealed under the configured
/// one (`keys.kek_file` or `TRANZCAST_KEK`) is re-sealed under `new`, in the
/// shared database (one transaction) and in this origin's own store (one
/// synced batch). Run it with the origins stopped (the store refuses to
/// open while this data directory's origin runs), then point `keys.kek_file`
/// at the new key on every origin. Safe to run again after it stopped
/// half-way: what is already under `new` is left as it is.
pub fn rekey(config: &OriginConfig, new: tranzcast_proto::envelope::Kek) -> Result<Rekeyed, OriginError> {
    let old = kek(config)?
        .ok_or_else(|| OriginError::Storage("rekey needs the current key-encryption key: keys.kek_file or TRANZCAST_KEK".into()))?;
    if old.id() == new.id() {
        return Err(OriginError::Storage("the new key-encryption key is the current one".into()));
    }
    let store = BlobStore::open(&config.data_dir, StoreOptions { cache_bytes: 1 << 20, create: false })?;
    // Before the database changes: every key of the store must open under
    // one of the two, or the store would be left under neither.
    store.keys_open_under(&[&old, &new])?;
    let database = match config.state.backend {
        tranzcast_config::StateBackend::Rocksdb => None,
        tranzcast_config::StateBackend::Postgres => {
            let ca = match &config.state.ca {
                Some(f) => Some(std::fs::read(f).map_err(|e| OriginError::Storage(format!("state.ca {}: {e}", f.display())))?),
                None => None,
            };
            let url = config.state.url.expose();
            // Opened with whichever KEK its check value opens under (the new
            // one after a run that stopped past the database's transaction);
            // the re-sealing itself looks at every row either way.
            let pg = match ledger::postgres::PgState::open_with(url, 2, old.clone(), ca.as_deref()) {
                Ok(pg) => pg,
                Err(e) => ledger::postgres::PgState::open_with(url, 2, new.clone(), ca.as_deref()).map_err(|_| e)?,
            };
            Some(pg.rekey(&old, &new)?)
        }
    };
    let store = store.reseal_keys(&old, new)?;
    Ok(Rekeyed { store, database })
}

/// Opens the configured state engine and settles the signing key: the
/// embedded engine's is this data directory's; on a shared engine every
/// origin signs with the cluster's (sealed in the database), and a data
/// directory that already signed with another key is refused.
fn open_state(config: &OriginConfig, store: &BlobStore) -> Result<(Ledger, SigningKey), OriginError> {
    let storage = |e: tranzcast_ingest::IngestError| OriginError::Storage(e.to_string());
    // With a key-encryption key, the keys in this origin's own store rest
    // sealed too (those stored in clear before are sealed now).
    if let Some(kek) = kek(config)? {
        let resealed = store.seal_keys_with(kek)?;
        if resealed > 0 {
            tracing::info!(keys = resealed, "sealed the store's keys under the key-encryption key");
        }
    }
    match config.state.backend {
        tranzcast_config::StateBackend::Rocksdb => {
            let state = OriginState::open(&config.data_dir.join("state"))?;
            Ok((Ledger::Embedded(state), tranzcast_ingest::origin_signing_key(store).map_err(storage)?))
        }
        tranzcast_config::StateBackend::Postgres => {
            let kek = kek(config)?
                .ok_or_else(|| OriginError::Storage("state.backend = \"postgres\" needs keys.kek_file or TRANZCAST_KEK".into()))?;
            let ca = match &config.state.ca {
                Some(f) => Some(std::fs::read(f).map_err(|e| OriginError::Storage(format!("state.ca {}: {e}", f.display())))?),
                None => None,
            };
            let pg = ledger::postgres::PgState::open_with(config.state.url.expose(), config.state.pool, kek, ca.as_deref())?;
            // A data directory that never signed adopts the cluster's key
            // (kept with its store, as on a single origin); one that did
            // offers its own, which stands only if the cluster has none.
            let name = tranzcast_ingest::ORIGIN_SIGNING_KEY;
            let stored = pg.secret(name)?;
            let local = store.secret(name, || stored.unwrap_or_else(tranzcast_proto::random_bytes))?;
            let cluster = pg.share_secret(name, &local)?;
            if cluster != local {
                return Err(OriginError::Storage(format!(
                    "{}: this data directory signs with another key than the cluster at state.url: it belongs to another cluster",
                    config.data_dir.display()
                )));
            }
            let signing = SigningKey::from_bytes(&cluster);
            // Titles published here before are published to every origin.
            for (title, addr) in store.titles()? {
                let (Some(manifest), Some(key)) = (store.get(&addr)?, store.title_secret(&title)?) else { continue };
                if !pg.publish_title(title.as_str(), &manifest, &key)? {
                    tracing::error!(%title, "the cluster holds another title under this name: this origin's copy is not served by the others");
                }
            }
            Ok((Ledger::Postgres(pg), signing))
        }
    }
}

fn identity(config: &OriginConfig, dir: &Path) -> Result<(TlsIdentity, String), OriginError> {
    match (&config.tls.cert, &config.tls.key, &config.ca) {
        (Some(c), Some(k), Some(ca)) => {
            let id = TlsIdentity::from_pem_files(c, k)?;
            let pem = std::fs::read_to_string(ca).map_err(|e| OriginError::Storage(format!("{}: {e}", ca.display())))?;
            tranzcast_net::tls::roots(pem.as_bytes()).map_err(|e| OriginError::Storage(format!("{}: {e}", ca.display())))?;
            Ok((id, pem))
        }
        _ => {
            let ca = LocalCa::load_or_create(&dir.join("tls"))?;
            Ok((ca.issue(&["localhost", "127.0.0.1"])?, ca.cert_pem().to_string()))
        }
    }
}
