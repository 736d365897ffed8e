//! Nodes, edges and peers (the patent's Neuro Nodes, Edge Servers and the
//! smart client's peer service), one server with three roles.
//!
//! A **node** holds the complete sets the origin stages to it (each blob
//! checked against its address, each manifest against the origin's
//! signature). An **edge** mirrors on demand: a miss is fetched once
//! (`fetch`: one flight per blob, from its parents then the origin, verified
//! per 16 KiB group) however many wait for it, hot titles are prefetched
//! (`mirror`, `demand`), and what stays on disk is `residency`'s decision;
//! it serves playback URLs (`playback`: the title key of each open session
//! and decrypted segments in memory, never on disk). A **peer** (Fig. 3)
//! joins with a validation certificate, receives pre-cast segments (Fig. 4)
//! with the push token the origin gave it, and serves what it holds.
//!
//! Every role: HTTP/3 and HTTP/1.1/2 with RFC 9110 ranges, certificate
//! checks before any byte (`access`, `service`, `titles`, `revocation`),
//! join and heartbeat, a pulse, `/healthz`, `/metrics`, graceful drain.
//!
//! Invariant: nothing of a key or plaintext is ever written to disk here: the
//! store holds ciphertext frames and signed manifests (its key table stays
//! empty).

pub mod access;
mod api;
mod blobs;
pub mod demand;
pub mod fetch;
mod mirror;
mod origins;
mod playback;
mod reply;
pub mod residency;
pub mod revocation;
mod service;
mod titles;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use thiserror::Error;
use tranzcast_config::{EdgeConfig, EdgeRole};
use tranzcast_net::{HttpServer, LocalCa, ServerOptions, TlsIdentity};
use tranzcast_store::{BlobStore, StoreOptions};

/// Why a node or edge could not start.
#[derive(Debug, Error)]
pub enum EdgeError {
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] tranzcast_store::StoreError),
    /// Listening or TLS failed.
    #[error(transparent)]
    Net(#[from] tranzcast_net::NetError),
    /// The origin could not be reached or refused us.
    #[error("origin: {0}")]
    Origin(String),
    /// The configuration cannot work.
    #[error("config: {0}")]
    Config(String),
    /// Bytes handed to us do not check (signature, format).
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Numbers the servers of this process.
static NEXT_SERVER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) struct Inner {
    pub store: BlobStore,
    pub config: EdgeConfig,
    /// The cluster's origins, the one that answered last first.
    pub(crate) origins: origins::Origins,
    pub origin_key: VerifyingKey,
    /// What it counts (on /metrics and in the pulse).
    pub counters: Counters,
    /// The server's counters: requests in hand, bytes sent, refusals, connections.
    pub server: Arc<tranzcast_net::ServerStats>,
    /// (when, bytes_out then, bytes/s measured over the last window) for the pulse.
    pub out_rate: std::sync::Mutex<(std::time::Instant, u64, f64)>,
    /// For a peer: the token the origin pushes pre-cast segments with (from the join answer).
    pub push_token: std::sync::Mutex<Option<String>>,
    /// The miss path (parents, then the origin).
    pub fetcher: Arc<fetch::Fetcher>,
    /// Revoked certificate serials, the last list read whole from the origin.
    pub revoked: std::sync::RwLock<revocation::Revocations>,
    /// What it remembers to answer sooner (each bounded).
    pub caches: Caches,
    /// This server among the process's (the per-thread credential memo is keyed by it).
    pub id: u64,
    /// The outgoing rate limit, if configured.
    pub throttle: Option<Arc<service::Throttle>>,
    /// What it decides with: the pure policies, one lock each.
    pub policy: Policy,
    /// Eviction and mirroring counters.
    pub mirror: mirror::MirrorStats,
    /// HTTPS client trusting the cluster's CA (origin, parents, pushes).
    pub http: reqwest::Client,
    /// Playback URLs: key pairs, open sessions, decrypted segments in memory.
    pub playback: playback::Playback,
}

/// What an edge counts.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub staged_blobs: AtomicU64,
    pub staged_bytes: AtomicU64,
    pub requests: AtomicU64,
    pub blob_requests: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

/// What an edge remembers to answer sooner.
pub(crate) struct Caches {
    /// Credentials whose signature was verified, by blake3 of the header value.
    pub verified: moka::sync::Cache<[u8; 32], Arc<access::Credentials>>,
    /// Which blobs each title's signed manifest names (the title check before a fetch).
    pub title_blobs: moka::future::Cache<tranzcast_proto::TitleId, titles::TitleBlobs>,
    /// Upstream manifest lookups of the last seconds, by title (see
    /// `mirror::manifest_bytes`): concurrent asks share one, and a title no
    /// source has is not asked of every source again at once.
    pub manifest_lookups: moka::future::Cache<tranzcast_proto::TitleId, Option<bytes::Bytes>>,
    /// Titles whose manifest an edge holds or is fetching (so pulses can report bitmaps).
    pub manifests_known: std::sync::Mutex<std::collections::HashSet<tranzcast_proto::TitleId>>,
}

/// What an edge decides with.
pub(crate) struct Policy {
    /// What stays on disk within the budget.
    pub residency: std::sync::Mutex<residency::Residency>,
    /// Demand per title and segment.
    pub demand: std::sync::Mutex<demand::Demand>,
    /// Where the residency's clock starts.
    pub epoch: std::time::Instant,
}

impl Policy {
    /// Milliseconds since `epoch` (the residency's `now_ms`).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The one poisoning rule of the edge's locks: a poisoned lock is used as it
/// is. Every critical section under them is one update that leaves the data
/// valid (an assignment, an insert, a policy step), so a panic elsewhere must
/// not turn into refusing every later request; the revocation list too (its
/// writer replaces it whole in one assignment: readers see the old list or the new).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`lock`]'s rule for readers of a `RwLock`.
pub(crate) fn read<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`lock`]'s rule for writers of a `RwLock`.
pub(crate) fn write<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A running node or edge.
pub struct EdgeServer {
    server: HttpServer,
    inner: Arc<Inner>,
    heartbeat: tokio::task::JoinHandle<()>,
    revocations: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for EdgeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeServer").field("https", &self.server.https_addr).finish_non_exhaustive()
    }
}

/// TLS material: the CA to trust for the origin, and this server's identity.
#[derive(Debug, Clone)]
pub struct EdgeTls {
    /// PEM of the CA that signed the origin's (and peers') certificates.
    pub ca_pem: String,
    /// This server's certificate and key.
    pub identity: TlsIdentity,
}

impl EdgeTls {
    /// From the config: `tls.cert`/`tls.key` and `ca`, or, all three absent,
    /// a leaf from the local CA in `ca_dir` (a loopback cluster shares one
    /// CA directory). Half of them is an error (config validation says
    /// which), never a silent fallback to the local CA.
    pub fn from_config(config: &EdgeConfig, ca_dir: &std::path::Path) -> Result<Self, EdgeError> {
        match (&config.tls.cert, &config.tls.key, &config.ca) {
            (Some(c), Some(k), Some(ca)) => Ok(Self { identity: TlsIdentity::from_pem_files(c, k)?, ca_pem: read_roots(ca)? }),
            (None, None, None) => {
                let ca = LocalCa::load_or_create(ca_dir)?;
                Ok(Self { identity: ca.issue(&["localhost", "127.0.0.1"])?, ca_pem: ca.cert_pem().to_string() })
            }
            _ => Err(EdgeError::Config("tls.cert, tls.key and ca go together (or none: the local CA)".into())),
        }
    }

    /// A peer's: the identity the origin issued it (`POST
    /// /v1/cluster/peer-identity`, PEM) and the roots it trusts (`ca`).
    pub fn for_peer(cert_pem: &str, key_pem: &str, ca: &std::path::Path) -> Result<Self, EdgeError> {
        let identity = TlsIdentity::from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), "the origin's peer certificate", "its key")?;
        Ok(Self { identity, ca_pem: read_roots(ca)? })
    }
}

/// A PEM file of trusted roots, checked to hold at least one certificate.
fn read_roots(path: &std::path::Path) -> Result<String, EdgeError> {
    let pem = std::fs::read_to_string(path).map_err(|e| EdgeError::Config(format!("{}: {e}", path.display())))?;
    tranzcast_net::tls::roots(pem.as_bytes()).map_err(|e| EdgeError::Config(format!("{}: {e}", path.display())))?;
    Ok(pem)
}

impl EdgeServer {
    /// Opens the store, fetches the origin's key if not configured, starts
    /// serving and joins the cluster.
    pub async fn start(config: EdgeConfig, tls: EdgeTls) -> Result<Self, EdgeError> {
        let store = BlobStore::open(&config.data_dir, StoreOptions { cache_bytes: config.store.cache_bytes.0, create: true })?;
        let http = tranzcast_net::client::https(tls.ca_pem.as_bytes())?;
        let origins = origins::Origins::new(config.origins().into_iter().map(String::from).collect());
        let origin_key = match &config.origin_key {
            Some(k) => parse_key(k)?,
            None => origins.call(|o| fetch_origin_key(&http, o, control_limits(&config, SMALL_ANSWER))).await?,
        };
        let fetcher = Arc::new(fetch::Fetcher::new(
            http.clone(),
            config.parents.clone(),
            origins.in_turn(),
            config.cluster_token.expose().to_string(),
            config.upstream_timeout.0,
            config.limits.max_flights as usize,
        ));
        let inner = Arc::new(Inner {
            store,
            config: config.clone(),
            origins,
            origin_key,
            counters: Counters::default(),
            server: Arc::new(tranzcast_net::ServerStats::default()),
            out_rate: std::sync::Mutex::new((std::time::Instant::now(), 0, 0.0)),
            push_token: std::sync::Mutex::new(None),
            fetcher,
            revoked: Default::default(),
            caches: Caches {
                verified: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(600)).build(),
                title_blobs: titles::cache(),
                manifest_lookups: moka::future::Cache::builder()
                    .max_capacity(MANIFEST_LOOKUP_BYTES)
                    .weigher(|_, m: &Option<bytes::Bytes>| m.as_ref().map_or(64, |b| u32::try_from(b.len()).unwrap_or(u32::MAX)))
                    .time_to_live(MANIFEST_LOOKUP_TTL)
                    .build(),
                manifests_known: Default::default(),
            },
            id: NEXT_SERVER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            throttle: config.rate_limit.map(|r| Arc::new(service::Throttle::new(r.0))),
            policy: Policy {
                residency: std::sync::Mutex::new(residency::Residency::new(config.store.disk_bytes.0)),
                demand: std::sync::Mutex::new(demand::Demand::new(
                    config.mirroring.hot_requests_per_min,
                    config.mirroring.prefetch_segments,
                    std::time::Instant::now(),
                )),
                epoch: std::time::Instant::now(),
            },
            mirror: mirror::MirrorStats::default(),
            http: http.clone(),
            playback: playback::Playback::new(),
        });
        mirror::load_residency(&inner)?;
        let opts = ServerOptions {
            https: config.listen.https,
            plain: config.listen.plain,
            identity: tls.identity,
            limits: config.limits,
            drain: Duration::from_secs(10),
            stats: inner.server.clone(),
            h3_endpoints: config.listen.h3_endpoints.into(),
        };
        let server = HttpServer::bind(opts, service::handler(inner.clone())).await?;
        let me = server.https_addr;
        if config.role == EdgeRole::Edge {
            let _ = inner.fetcher.me.set(advertised_url(&config, me));
        }
        if let Err(e) = pull_revocations(&http, &inner).await {
            tracing::warn!(error = %e, "cannot read the origin's revocation list yet: certificates are refused until it is read");
        }
        // Join once now so a failure is an error at start, then heartbeat.
        if let Err(e) = join(&http, &inner, me).await {
            // Stop the listeners first: their tasks hold the store (and its lock).
            server.shutdown().await;
            return Err(e);
        }
        // Revocations on their own loop: a slow heartbeat or parent probe
        // never delays them (every call is bounded anyway).
        let rv_inner = inner.clone();
        let rv_http = http.clone();
        let revocations = tokio::spawn(async move {
            let mut tick = tokio::time::interval(rv_inner.config.heartbeat.0);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = pull_revocations(&rv_http, &rv_inner).await {
                    tracing::warn!(error = %e, "cannot read the origin's revocation list: keeping the last good one");
                }
            }
        });
        let hb_inner = inner.clone();
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(hb_inner.config.heartbeat.0);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = join(&http, &hb_inner, me).await {
                    tracing::warn!(error = %e, "heartbeat to the origin failed");
                }
                if hb_inner.config.role == EdgeRole::Edge {
                    if hb_inner.config.parents.is_empty() {
                        let limits = control_limits(&hb_inner.config, CLUSTER_ANSWER);
                        match hb_inner.origins.call(|o| cluster_nodes(&http, o, limits)).await {
                            Ok(nodes) => hb_inner.fetcher.set_parents(nodes),
                            Err(e) => tracing::warn!(error = %e, "cannot learn the cluster's nodes"),
                        }
                    }
                    hb_inner.fetcher.probe_parents().await;
                }
            }
        });
        tracing::info!(https = %me, role = ?config.role, name = %config.name, "edge server up");
        Ok(Self { server, inner, heartbeat, revocations })
    }

    /// The bound TLS address.
    pub fn https_addr(&self) -> std::net::SocketAddr {
        self.server.https_addr
    }

    /// Keeps a blob in this server's store (within its disk budget), as a
    /// smart client does with the segments it played so it can serve them as
    /// a peer (Fig. 3). The address is computed from the bytes. Blocking.
    pub fn keep_blob(&self, bytes: &[u8]) -> tranzcast_proto::BlobAddress {
        let a = tranzcast_proto::BlobAddress::of(bytes);
        mirror::keep(&self.inner, &a, bytes, None, mirror::Offer::Fetched);
        a
    }

    /// Records a title's signed manifest (checked against the origin's key), as
    /// a smart client does when it starts playing a title it will serve as a
    /// peer: its pulse then reports which segments it holds. Blocking.
    pub fn keep_manifest(&self, signed_manifest: &[u8]) -> Result<(), EdgeError> {
        api::record_title_manifest(&self.inner, signed_manifest).map_err(EdgeError::Invalid)
    }

    /// A blob this server holds (verified against its address on the way
    /// out of the store), e.g. a segment the origin pre-cast to this peer. Blocking.
    pub fn local_blob(&self, a: &tranzcast_proto::BlobAddress) -> Option<bytes::Bytes> {
        self.inner.store.get(a).ok().flatten()
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Stops answering, as a machine that hung or fell off the network:
    /// connections stay open and silent, no heartbeat reaches the origin
    /// (which drops it from the cluster after its timeout). Then
    /// [`EdgeServer::kill`] or [`EdgeServer::shutdown`] ends it.
    pub fn hang(&self) {
        self.heartbeat.abort();
        self.revocations.abort();
        self.server.freeze();
    }

    /// Stops at once, as a crash would: connections are cut mid-response,
    /// nothing is drained, the origin stops hearing heartbeats. Fetches in
    /// progress finish in the background (they hold the store).
    pub async fn kill(self) {
        self.heartbeat.abort();
        self.revocations.abort();
        let _ = self.heartbeat.await;
        self.server.kill().await;
    }

    /// Requests in hand now (answered bodies still being sent included):
    /// what a kill test checks to land mid-transfer.
    pub fn in_flight(&self) -> i64 {
        self.inner.server.in_flight()
    }

    /// Changes the outgoing rate limit of a server started with one
    /// (`rate_limit`), from the next piece of every response on; false if
    /// it has none. What a degraded uplink looks like, on demand.
    pub fn set_rate_limit(&self, bytes_per_sec: u64) -> bool {
        self.inner.throttle.as_ref().map(|t| t.set_rate(bytes_per_sec)).is_some()
    }

    /// Stops heartbeating, stops accepting, drains.
    pub async fn shutdown(self) {
        self.heartbeat.abort();
        self.revocations.abort();
        let _ = self.heartbeat.await;
        let _ = self.revocations.await;
        self.server.shutdown().await;
        // Fetches in progress hold the store: let them finish, so that when
        // this returns the data directory is closed and unlocked (a fetch
        // still running after FLIGHTS_DRAIN is aborted: shutdown is bounded).
        self.inner.fetcher.drain(FLIGHTS_DRAIN).await;
        let _ = self.inner.store.sync();
    }
}

/// How long an upstream manifest lookup's answer (a manifest, or none
/// anywhere) is reused, and how many bytes of them are kept.
const MANIFEST_LOOKUP_TTL: Duration = Duration::from_secs(10);
const MANIFEST_LOOKUP_BYTES: u64 = 64 << 20;

/// How long shutdown waits for upstream fetches in progress.
const FLIGHTS_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

fn parse_key(hex_key: &str) -> Result<VerifyingKey, EdgeError> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut b).map_err(|_| EdgeError::Config("origin_key must be 64 hex digits".into()))?;
    VerifyingKey::from_bytes(&b).map_err(|_| EdgeError::Config("origin_key is not an Ed25519 public key".into()))
}

/// Answers of the origin's small control routes (key, heartbeat).
const SMALL_ANSWER: usize = 64 << 10;
/// The cluster view: a few hundred bytes per member.
const CLUSTER_ANSWER: usize = 4 << 20;
/// The revocation list: [`tranzcast_proto::revocations::MAX_SERIALS`] at
/// about 60 bytes each.
const REVOCATION_ANSWER: usize = 64 << 20;

/// Bounds of a call to the origin: the answer within the upstream timeout,
/// the whole call within six of them (30 s by default).
fn control_limits(config: &EdgeConfig, max_body: usize) -> tranzcast_net::client::CallLimits {
    tranzcast_net::client::CallLimits { answer: config.upstream_timeout.0, total: config.upstream_timeout.0 * 6, max_body }
}

async fn fetch_origin_key(
    http: &reqwest::Client,
    origin: String,
    limits: tranzcast_net::client::CallLimits,
) -> Result<VerifyingKey, EdgeError> {
    let (status, body) = tranzcast_net::client::call(http.get(format!("{origin}/v1/origin-key")), limits)
        .await
        .map_err(|e| EdgeError::Origin(format!("{origin}: {e}")))?;
    let key = status.is_success().then(|| tranzcast_proto::answers::OriginKey::parse(&body)).flatten();
    let key = key.ok_or_else(|| EdgeError::Origin(format!("{origin}: {status}, not the origin's key")))?;
    VerifyingKey::from_bytes(&key).map_err(|_| EdgeError::Config("origin_key is not an Ed25519 public key".into()))
}

/// Joins (or heartbeats to) the cluster through the first origin that answers.
async fn join(http: &reqwest::Client, inner: &Inner, me: std::net::SocketAddr) -> Result<(), EdgeError> {
    inner.origins.call(|o| join_at(http, inner, me, o)).await
}

async fn join_at(http: &reqwest::Client, inner: &Inner, me: std::net::SocketAddr, origin: String) -> Result<(), EdgeError> {
    let mut body = tranzcast_proto::api::JoinBody {
        name: inner.config.name.clone(),
        role: inner.config.role.as_str().to_string(),
        https: advertised_url(&inner.config, me),
        h3: me.to_string(),
        load: load(inner),
        playback_key: None,
        health: Some(health(inner).health().to_string()),
        push_token: None,
    };
    // A peer proves its record is its own with the push token its first join got.
    if inner.config.role == EdgeRole::Peer {
        body.push_token = lock(&inner.push_token).clone();
    }
    // Edges serve playback URLs: the origin seals title keys to this public key.
    if inner.config.role == EdgeRole::Edge {
        inner.playback.keys.rotate_if_due();
        body.playback_key = inner.playback.keys.current_public_hex();
    }
    let req = http.post(format!("{origin}/v1/cluster/heartbeat")).json(&body);
    let req = match (&inner.config.role, &inner.config.certificate) {
        (EdgeRole::Peer, Some(cert)) => req.header("authorization", format!("Tranzcast {}", cert.expose())),
        // Config validation made sure nodes and edges have theirs.
        _ => req.bearer_auth(inner.config.member_credential.as_deref().unwrap_or("").trim()),
    };
    let (status, body) = tranzcast_net::client::call(req, control_limits(&inner.config, SMALL_ANSWER))
        .await
        .map_err(|e| EdgeError::Origin(format!("join refused: {e}")))?;
    if !status.is_success() {
        let (code, reason) = tranzcast_proto::answers::ErrorBody::read(&body);
        return Err(EdgeError::Origin(format!("join refused: {status}: {reason} ({code})")));
    }
    let answer: tranzcast_proto::answers::JoinAnswer =
        tranzcast_proto::answers::parse_small("join answer", &body).map_err(|e| EdgeError::Origin(format!("join answer: {e}")))?;
    if let Some(t) = answer.push_token {
        *lock(&inner.push_token) = Some(t);
    }
    Ok(())
}

/// Requests in hand against the most this server takes at once (0..=1), for
/// the origin's choice of edges.
fn load(inner: &Inner) -> f64 {
    let max = f64::from(inner.config.limits.max_concurrent_requests.max(1));
    (inner.server.in_flight().max(0) as f64 / max).clamp(0.0, 1.0)
}

/// The URL others reach this server at.
fn advertised_url(config: &EdgeConfig, me: std::net::SocketAddr) -> String {
    config.public_url.clone().unwrap_or_else(|| format!("https://localhost:{}", me.port()))
}

/// The live nodes in the origin's cluster view (an edge's parents when none are configured).
async fn cluster_nodes(
    http: &reqwest::Client,
    origin: String,
    limits: tranzcast_net::client::CallLimits,
) -> Result<Vec<String>, EdgeError> {
    let (status, body) = tranzcast_net::client::call(http.get(format!("{origin}/v1/cluster")), limits)
        .await
        .map_err(|e| EdgeError::Origin(e.to_string()))?;
    if !status.is_success() {
        return Err(EdgeError::Origin(format!("{status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]))));
    }
    let view = tranzcast_proto::answers::ClusterView::parse(&body).map_err(|e| EdgeError::Origin(e.to_string()))?;
    Ok(view.members.into_iter().filter(|m| m.entry.role == EdgeRole::Node).map(|m| m.entry.https).collect())
}

/// How fresh this server's revocation list is now.
pub(crate) fn health(inner: &Inner) -> revocation::Freshness {
    read(&inner.revoked).freshness(std::time::Instant::now(), inner.config.revocation_max_age.0)
}

/// Reads the origin's revocation list whole and replaces the set with it;
/// on any failure (an error status, a stall, a body over its cap or not
/// entirely a list) keeps the last good set and counts the failure.
async fn pull_revocations(http: &reqwest::Client, inner: &Inner) -> Result<(), EdgeError> {
    // From the first origin that gives a whole list: all of them share one state.
    let read = inner
        .origins
        .call(|origin| async move {
            let url = format!("{origin}/v1/revocations");
            let (status, body) = tranzcast_net::client::call(http.get(&url), control_limits(&inner.config, REVOCATION_ANSWER))
                .await
                .map_err(|e| EdgeError::Origin(format!("{origin}: {e}")))?;
            if !status.is_success() {
                return Err(EdgeError::Origin(format!("{origin} answered {status}")));
            }
            tranzcast_proto::revocations::parse(&body).map_err(|e| EdgeError::Origin(format!("{origin}: {e}")))
        })
        .await;
    let mut r = write(&inner.revoked);
    match read {
        Ok(set) => {
            r.replace(set, std::time::Instant::now());
            Ok(())
        }
        Err(e) => {
            let why = match &e {
                EdgeError::Origin(m) => m.clone(),
                other => other.to_string(),
            };
            r.failed(why);
            Err(e)
        }
    }
}

/// A smart client's own peer service (role `peer`): its session reads this
/// store first and keeps what it plays here for other viewers.
impl tranzcast_client::PeerService for EdgeServer {
    fn name(&self) -> &str {
        EdgeServer::name(self)
    }

    fn keep_manifest(&self, signed_manifest: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        EdgeServer::keep_manifest(self, signed_manifest).map_err(Into::into)
    }

    fn local_blob(&self, address: &tranzcast_proto::BlobAddress) -> Option<bytes::Bytes> {
        EdgeServer::local_blob(self, address)
    }

    fn keep_blob(&self, bytes: &[u8]) {
        EdgeServer::keep_blob(self, bytes);
    }
}
