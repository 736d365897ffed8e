//! One typed config per role. Every struct rejects unknown keys and has
//! defaults for everything but what must be chosen (the storefront token).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{ByteSize, Duration, Secret, TimeWindow};

/// A role's config: deserialisable, and checked beyond its types.
pub trait RoleConfig: DeserializeOwned {
    /// The role's name, as used in `TRANZCAST_<ROLE>__...` variables.
    const ROLE: &'static str;
    /// Checks what types cannot; on failure returns the dotted key and the reason.
    fn validate(&self) -> Result<(), (String, String)>;
}

fn fail<T>(key: &str, reason: impl Into<String>) -> Result<T, (String, String)> {
    Err((key.to_string(), reason.into()))
}

/// A URL of one of our own servers (the origin, a parent): HTTPS only, so
/// the cluster token, certificates and the origin's key never travel in clear.
fn check_tier_url(key: &str, url: &str) -> Result<(), (String, String)> {
    if !url.starts_with("https://") || url.len() < 10 {
        return fail(key, format!("{url:?} is not an https:// URL (our servers talk HTTPS only)"));
    }
    Ok(())
}

fn check_url(key: &str, url: &str) -> Result<(), (String, String)> {
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
        return fail(key, format!("{url:?} is not an http(s):// URL"));
    }
    Ok(())
}

/// Where a server listens. HTTP/3 (UDP) and HTTP/1.1 + HTTP/2 over TLS (TCP)
/// share the `https` port number.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// TLS address for TCP (h1, h2) and UDP (h3).
    pub https: SocketAddr,
    /// Optional plain-HTTP address, for local use only.
    pub plain: Option<SocketAddr>,
    /// QUIC endpoints serving HTTP/3, each on a thread of its own, all on
    /// the `https` port (SO_REUSEPORT, packets steered by connection ID);
    /// 0 = one per core.
    pub h3_endpoints: u16,
}

/// Most HTTP/3 endpoints one server runs (`listen.h3_endpoints`).
pub const MAX_H3_ENDPOINTS: u16 = 64;

impl Default for ListenConfig {
    fn default() -> Self {
        Self { https: SocketAddr::from(([127, 0, 0, 1], 0)), plain: None, h3_endpoints: 0 }
    }
}

impl ListenConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.h3_endpoints > MAX_H3_ENDPOINTS {
            return fail("listen.h3_endpoints", "at most 64 (0 = one per core)");
        }
        Ok(())
    }
}

/// TLS certificate and key (PEM). Both absent: a self-signed certificate for local use.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Private key, PEM.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        match (&self.cert, &self.key) {
            (Some(_), None) => fail(&format!("{prefix}.key"), "a certificate needs its key"),
            (None, Some(_)) => fail(&format!("{prefix}.cert"), "a key needs its certificate"),
            _ => Ok(()),
        }
    }

    /// An identity and the roots trusted are set together, or neither (a
    /// loopback cluster's local CA): half a TLS configuration is an error
    /// at start, never a silent fallback. `roots_alone`: roots without an
    /// identity are fine (a peer, whose identity the origin issues).
    fn with_roots(&self, roots: bool, key: &str, roots_alone: bool) -> Result<(), (String, String)> {
        match (self.cert.is_some(), roots) {
            (true, false) => fail(key, "tls.cert and tls.key need the roots this server trusts for the servers it calls"),
            (false, true) if !roots_alone => fail(key, "needs tls.cert and tls.key (or none of the three: the local CA)"),
            _ => Ok(()),
        }
    }
}

/// Local blob storage budgets.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// In-memory hot cache (moka), weighted by bytes.
    pub cache_bytes: ByteSize,
    /// On-disk budget for RocksDB blobs (edges evict above it; nodes and origin refuse).
    pub disk_bytes: ByteSize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { cache_bytes: ByteSize(256 << 20), disk_bytes: ByteSize(20 << 30) }
    }
}

impl StoreConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.cache_bytes.0 < 1 << 20 {
            return fail("store.cache_bytes", "must be at least 1MiB");
        }
        if self.disk_bytes.0 < 16 << 20 {
            return fail("store.disk_bytes", "must be at least 16MiB");
        }
        Ok(())
    }
}

/// Backend of the origin's master copies.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MasterBackend {
    /// None: the store holds the only copy.
    #[default]
    None,
    /// A directory on the local file system.
    Fs,
    /// An S3-compatible bucket.
    S3,
}

/// The origin's master copies (through opendal): every blob of every title
/// is copied there, and an origin that lacks a blob (another origin
/// ingested it, or its disk was lost) restores it from there, verified.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MasterConfig {
    /// `none` (default), `fs` or `s3`.
    pub backend: MasterBackend,
    /// Directory (fs) or key prefix (s3). Default: `<data_dir>/master` (fs), `/` (s3).
    pub root: Option<String>,
    /// S3 bucket.
    pub bucket: Option<String>,
    /// S3 endpoint URL.
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// S3 access key id (else the AWS environment variables).
    pub access_key_id: Secret,
    /// S3 secret access key (else the AWS environment variables).
    pub secret_access_key: Secret,
}

impl MasterConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.backend == MasterBackend::S3 {
            if self.bucket.as_deref().unwrap_or("").is_empty() {
                return fail("master.bucket", "required when master.backend = \"s3\"");
            }
            if let Some(e) = &self.endpoint {
                check_url("master.endpoint", e)?;
            }
            if self.access_key_id.is_empty() != self.secret_access_key.is_empty() {
                return fail("master.secret_access_key", "set both master.access_key_id and master.secret_access_key, or neither");
            }
        }
        Ok(())
    }
}

/// Pre-casting of popular titles to registered clients (the patent's Fig. 4).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PrecastConfig {
    /// Whether to pre-cast at all.
    pub enabled: bool,
    /// Off-peak window, UTC.
    pub window: TimeWindow,
    /// How many of the most popular titles.
    pub titles: u32,
    /// How many leading segments of each.
    pub segments: u32,
}

impl Default for PrecastConfig {
    fn default() -> Self {
        Self { enabled: true, window: TimeWindow { start_min: 2 * 60, end_min: 5 * 60 }, titles: 5, segments: 2 }
    }
}

/// The origin (the patent's Neuro Center).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    /// Data directory: RocksDB store, keys, identity.
    pub data_dir: PathBuf,
    /// Listening addresses.
    pub listen: ListenConfig,
    /// The identity this origin presents (certificate and key).
    pub tls: TlsConfig,
    /// The roots (PEM) this origin trusts for the nodes and peers it calls
    /// (staging, pre-casts); with `tls.cert` and `tls.key`. All three
    /// absent: the local CA in `<data_dir>/tls` signs and is trusted.
    pub ca: Option<PathBuf>,
    /// Bearer token for the storefront calls (customers, orders, revocation). At least 16 characters.
    pub storefront_token: Secret,
    /// Shared secret of the operator's servers for ciphertext: members read
    /// blobs from the origin and from each other and push blobs (verified
    /// against their address on arrival) with it. It grants no identity: a
    /// member joins with its own credential. At least 16 characters.
    pub cluster_token: Secret,
    /// Secret that member credentials are minted with (`tranzcast cluster
    /// add-member`): whoever holds it can enrol a node or an edge, so it stays
    /// in the origin's config. At least 32 characters.
    pub member_key: Secret,
    /// How often the origin checks every node for missing blobs and stages them.
    pub staging_interval: Duration,
    /// Local store budgets.
    pub store: StoreConfig,
    /// Master copies.
    pub master: MasterConfig,
    /// Validation certificates live the title's running time plus this.
    pub certificate_margin: Duration,
    /// A ticket used up by a play (replaced or spent) and presented again
    /// from the same client address within this gets the same answer (the
    /// same certificate and replacement; no play counted): a lost answer
    /// does not lose the play. At most 10 minutes.
    pub play_retry_window: Duration,
    /// Pre-casting.
    pub precast: PrecastConfig,
    /// A member that misses heartbeats this long is considered gone.
    pub member_timeout: Duration,
    /// TEST SETTING, off on any public origin: issue peers' TLS certificates
    /// to loopback, private and link-local addresses too (with `localhost`
    /// on loopback). A viewer asking from such an address could otherwise be
    /// given a certificate for a name the cluster's own servers use there
    /// (on a loopback cluster every server is `localhost`).
    pub allow_local_peer_certificates: bool,
    /// What clients may take: connections, time, sizes.
    pub limits: LimitsConfig,
    /// Per-address rates of plays and storefront calls.
    pub rate: RateConfig,
    /// The state engine: embedded RocksDB or a shared PostgreSQL.
    pub state: crate::StateConfig,
    /// How keys rest (the key-encryption key).
    pub keys: crate::KeysConfig,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data/origin"),
            listen: ListenConfig::default(),
            tls: TlsConfig::default(),
            ca: None,
            storefront_token: Secret::default(),
            cluster_token: Secret::default(),
            member_key: Secret::default(),
            staging_interval: Duration::secs(2),
            store: StoreConfig::default(),
            master: MasterConfig::default(),
            certificate_margin: Duration::secs(3600),
            play_retry_window: Duration::secs(60),
            precast: PrecastConfig::default(),
            member_timeout: Duration::secs(15),
            allow_local_peer_certificates: false,
            limits: LimitsConfig::default(),
            rate: RateConfig::default(),
            state: crate::StateConfig::default(),
            keys: crate::KeysConfig::default(),
        }
    }
}

impl RoleConfig for OriginConfig {
    const ROLE: &'static str = "origin";
    fn validate(&self) -> Result<(), (String, String)> {
        if self.storefront_token.len() < 16 {
            return fail("storefront_token", "required, at least 16 characters");
        }
        if self.play_retry_window.0 > std::time::Duration::from_secs(600) {
            return fail("play_retry_window", "at most 10m");
        }
        if self.cluster_token.len() < 16 {
            return fail("cluster_token", "required, at least 16 characters");
        }
        if self.cluster_token == self.storefront_token {
            return fail("cluster_token", "must differ from storefront_token");
        }
        if self.member_key.len() < 32 {
            return fail("member_key", "required, at least 32 characters");
        }
        if self.member_key == self.storefront_token || self.member_key == self.cluster_token {
            return fail("member_key", "must differ from storefront_token and cluster_token");
        }
        if self.staging_interval.0.as_millis() < 100 {
            return fail("staging_interval", "must be at least 100ms");
        }
        self.tls.validate("tls")?;
        self.listen.validate()?;
        self.tls.with_roots(self.ca.is_some(), "ca", false)?;
        self.store.validate()?;
        self.master.validate()?;
        if self.member_timeout.0.as_secs() < 1 {
            return fail("member_timeout", "must be at least 1s");
        }
        self.limits.validate()?;
        self.state.validate(&self.keys)?;
        self.rate.validate()
    }
}

/// What an edge-crate server is (a wire type: it is in joins and pulses too).
pub use tranzcast_proto::pulse::EdgeRole;

/// Demand-driven mirroring knobs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MirroringConfig {
    /// Requests per minute for a title above which it counts as hot.
    pub hot_requests_per_min: u32,
    /// Segments fetched ahead of the furthest viewer of a hot title.
    pub prefetch_segments: u32,
    /// Nodes: push the next segments of a hot title to the edges asking for it.
    pub push_to_edges: bool,
}

/// What one server (origin, node, edge, peer) takes from its clients, on every
/// listener and protocol (HTTP/1.1 and HTTP/2 over TLS, HTTP/3, plain HTTP).
/// The defaults are what a public edge can run with; `docs/operations.md`
/// says how to size them.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests in hand at once (from arrival to the end of the body); more are
    /// refused at once with 503 and Retry-After (load shedding). Health and
    /// metrics have a small budget of their own.
    pub max_concurrent_requests: u32,
    /// Time allowed to produce a response head (bodies then stream at the client's pace).
    pub request_timeout: Duration,
    /// Requests in hand at once from one client address (IPv6: one /64): its
    /// share of `max_concurrent_requests` (503 above it).
    pub max_requests_per_ip: u32,
    /// Open client connections (TCP and QUIC together); more are closed at
    /// once (QUIC: refused). Lowered at start to what the process may open.
    pub max_connections: u32,
    /// Open connections from one client address (IPv6: one /64).
    pub max_connections_per_ip: u32,
    /// New connections one client address may open per second (bursts of
    /// twice that); more are closed at once, before any TLS work. An address
    /// whose connection was closed for a cancel flood may open none for
    /// `abuse_penalty`.
    pub connection_rate_per_ip: u32,
    /// How long an address caught abusing is refused new connections: a
    /// cancel flood, or more than `abuse_strikes` connections that ended
    /// without a request.
    pub abuse_penalty: Duration,
    /// Connections from one address that may end without a request (a
    /// handshake that failed or stalled, no head within
    /// `header_read_timeout`) in a burst, refilled one a second, before the
    /// address serves `abuse_penalty`.
    pub abuse_strikes: u32,
    /// Time from a new connection to its first complete request head (TLS
    /// handshake included), and for every later head once its first byte arrived.
    pub header_read_timeout: Duration,
    /// A connection with nothing in hand for this long is closed (keep-alive;
    /// also the QUIC idle timeout).
    pub idle_timeout: Duration,
    /// Largest request head: HTTP/1.1 head, HTTP/2 header list, HTTP/3 field section (431 above it).
    pub max_header_bytes: ByteSize,
    /// Most header fields in one request (431 above it).
    pub max_headers: u32,
    /// Largest request body on every route but uploads (413 above it, answered
    /// before any body byte is read when the length is declared).
    pub max_body: ByteSize,
    /// Largest body of an authenticated upload (staging pushes, origin uploads and publishing).
    pub max_upload_body: ByteSize,
    /// Slowest a body may arrive, bytes per second: a body of N bytes must be
    /// in within `header_read_timeout` plus N over this rate (408 after).
    pub body_min_rate: ByteSize,
    /// Request bodies held in memory at once, server-wide (503 above it).
    pub max_body_memory: ByteSize,
    /// Concurrent streams one HTTP/2 connection may open.
    pub h2_max_concurrent_streams: u32,
    /// Concurrent bidirectional streams one HTTP/3 connection may open.
    pub h3_max_concurrent_streams: u32,
    /// Requests one client address may cancel before their answer (HTTP/2
    /// RST_STREAM, HTTP/3 stream resets, heads never completed) in a burst,
    /// refilled at a tenth of this per second; past it the connection is
    /// closed and the address serves `abuse_penalty` (the HTTP/2 rapid-reset
    /// pattern).
    pub max_cancelled_requests: u32,
    /// Byte ranges one request may ask for (overlapping and adjacent ones are merged).
    pub max_ranges: u32,
    /// Nodes and edges: upstream fetches in the air at once (503 above it).
    pub max_flights: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 8192,
            request_timeout: Duration::secs(30),
            max_requests_per_ip: 1024,
            max_connections: 16384,
            max_connections_per_ip: 256,
            connection_rate_per_ip: 20,
            abuse_penalty: Duration::secs(10),
            abuse_strikes: 32,
            header_read_timeout: Duration::secs(10),
            idle_timeout: Duration::secs(60),
            max_header_bytes: ByteSize(16 << 10),
            max_headers: 64,
            max_body: ByteSize(64 << 10),
            max_upload_body: ByteSize(16 << 20),
            body_min_rate: ByteSize(64 << 10),
            max_body_memory: ByteSize(256 << 20),
            h2_max_concurrent_streams: 128,
            h3_max_concurrent_streams: 128,
            max_cancelled_requests: 200,
            max_ranges: 16,
            max_flights: 1024,
        }
    }
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        // Each with its key, named once: `("limits.max_ranges", self.max_ranges)`.
        macro_rules! keyed {
            ($($field:ident),*) => { [$((concat!("limits.", stringify!($field)), self.$field)),*] };
        }
        let positive = keyed!(
            max_concurrent_requests,
            max_requests_per_ip,
            max_connections,
            max_connections_per_ip,
            connection_rate_per_ip,
            abuse_strikes,
            max_headers,
            h2_max_concurrent_streams,
            h3_max_concurrent_streams,
            max_cancelled_requests,
            max_ranges,
            max_flights
        );
        for (key, v) in positive {
            if v == 0 {
                return fail(key, "must be at least 1");
            }
        }
        if self.max_connections_per_ip > self.max_connections {
            return fail("limits.max_connections_per_ip", "must not exceed limits.max_connections");
        }
        for (key, d) in keyed!(request_timeout, header_read_timeout, idle_timeout) {
            if d.0.as_millis() < 10 {
                return fail(key, "must be at least 10ms");
            }
        }
        if self.max_ranges > 64 {
            return fail("limits.max_ranges", "at most 64");
        }
        if self.max_header_bytes.0 < 1024 || self.max_header_bytes.0 > 1 << 20 {
            return fail("limits.max_header_bytes", "must be 1KiB..=1MiB");
        }
        if self.max_body.0 < 1024 {
            return fail("limits.max_body", "must be at least 1KiB");
        }
        if self.max_upload_body < self.max_body {
            return fail("limits.max_upload_body", "must be at least limits.max_body");
        }
        if self.body_min_rate.0 < 1024 {
            return fail("limits.body_min_rate", "must be at least 1KiB (per second)");
        }
        if self.max_body_memory < self.max_upload_body {
            return fail("limits.max_body_memory", "must be at least limits.max_upload_body");
        }
        Ok(())
    }
}

/// Per-address request rates the origin accepts on its unauthenticated and
/// storefront routes (token buckets; 429 with Retry-After above them).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    /// `POST /v1/play` per client address (IPv6: per /64), per second.
    pub play_per_s: u32,
    /// Plays one address may send at once above its rate.
    pub play_burst: u32,
    /// Storefront calls (customers, orders, revocations, uploads) without
    /// the storefront's token, per address, per second (calls with it are
    /// never limited: nobody sharing the shop's address can spend its rate).
    pub storefront_per_s: u32,
    /// Storefront calls one address may send at once above its rate.
    pub storefront_burst: u32,
    /// Addresses tracked at once; when full, the idlest are forgotten.
    pub max_addresses: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self { play_per_s: 20, play_burst: 100, storefront_per_s: 1000, storefront_burst: 2000, max_addresses: 100_000 }
    }
}

impl RateConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        for (key, v) in [
            ("rate.play_per_s", self.play_per_s),
            ("rate.play_burst", self.play_burst),
            ("rate.storefront_per_s", self.storefront_per_s),
            ("rate.storefront_burst", self.storefront_burst),
            ("rate.max_addresses", self.max_addresses),
        ] {
            if v == 0 {
                return fail(key, "must be at least 1");
            }
        }
        Ok(())
    }
}

impl Default for MirroringConfig {
    fn default() -> Self {
        Self { hot_requests_per_min: 60, prefetch_segments: 4, push_to_edges: true }
    }
}

/// An edge or a node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// `edge` or `node`.
    pub role: EdgeRole,
    /// Name in the cluster; unique.
    pub name: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The origin's URL; the origins of a cluster that runs several (on one
    /// shared state), separated by commas, are tried in turn when one fails.
    pub origin: String,
    /// The origin's Ed25519 public key (hex); fetched from the origin when absent.
    pub origin_key: Option<String>,
    /// The cluster's shared secret for ciphertext reads and pushes (the
    /// origin's `cluster_token`); nodes and edges only.
    pub cluster_token: Secret,
    /// This server's own credential (`tranzcast cluster add-member NAME
    /// --role node|edge`), bound to `name` and `role`: nodes and edges join
    /// and heartbeat with it.
    pub member_credential: Option<Secret>,
    /// A peer joins with a validation certificate (base64url) instead of the cluster token.
    pub certificate: Option<Secret>,
    /// The roots (PEM) this server trusts for the origin, its parents and
    /// other members; with `tls.cert` and `tls.key` (a peer: alone, its
    /// identity is issued by the origin). All three absent: the local CA
    /// directory given at start (`--ca-dir`) signs and is trusted.
    pub ca: Option<PathBuf>,
    /// Listening addresses.
    pub listen: ListenConfig,
    /// The HTTPS URL others reach this server at (advertised to the origin);
    /// `https://localhost:<port>` when absent (loopback clusters).
    pub public_url: Option<String>,
    /// TLS.
    pub tls: TlsConfig,
    /// Store budgets.
    pub store: StoreConfig,
    /// Parent nodes to try before the origin, as URLs; learned from the origin when empty.
    pub parents: Vec<String>,
    /// Time before an upstream is abandoned for the next.
    pub upstream_timeout: Duration,
    /// Heartbeat interval to the origin (and of revocation list pulls).
    pub heartbeat: Duration,
    /// A revocation list older than this (pulls failing since) makes the
    /// server report itself unhealthy in its pulse and heartbeat; it keeps
    /// applying its last good list, and refuses certificates until its
    /// first list is read.
    pub revocation_max_age: Duration,
    /// Outgoing rate limit in bytes per second over all responses (tests and benchmarks), none by default.
    pub rate_limit: Option<ByteSize>,
    /// What clients may take: connections, time, sizes, fetches.
    pub limits: LimitsConfig,
    /// Mirroring policy.
    pub mirroring: MirroringConfig,
    /// Serve a title's blobs only to requests with a valid certificate for it
    /// (or the cluster token). On by default; off only for open test setups.
    pub require_certificate: bool,
    /// Fault injection for tests only: flip one byte in the middle of every
    /// whole blob served, to play a lying parent. Never set in production.
    pub fault_corrupt_blobs: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            role: EdgeRole::Edge,
            name: "edge".into(),
            data_dir: PathBuf::from("data/edge"),
            origin: "https://127.0.0.1:4433".into(),
            origin_key: None,
            cluster_token: Secret::default(),
            member_credential: None,
            certificate: None,
            ca: None,
            listen: ListenConfig::default(),
            public_url: None,
            tls: TlsConfig::default(),
            store: StoreConfig::default(),
            parents: Vec::new(),
            upstream_timeout: Duration::secs(5),
            heartbeat: Duration::secs(5),
            revocation_max_age: Duration::secs(60),
            rate_limit: None,
            limits: LimitsConfig::default(),
            mirroring: MirroringConfig::default(),
            require_certificate: true,
            fault_corrupt_blobs: false,
        }
    }
}

impl EdgeConfig {
    /// The origins' URLs (`origin`, split at commas), in the order given.
    pub fn origins(&self) -> Vec<&str> {
        self.origin.split(',').map(str::trim).filter(|o| !o.is_empty()).collect()
    }
}

impl RoleConfig for EdgeConfig {
    const ROLE: &'static str = "edge";
    fn validate(&self) -> Result<(), (String, String)> {
        if self.name.is_empty() || self.name.len() > 64 || !self.name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
            return fail("name", format!("{:?}: 1..=64 of a-z, A-Z, 0-9, '-', '_'", self.name));
        }
        if self.origins().is_empty() {
            return fail("origin", "required: the origin's https:// URL (several separated by commas)");
        }
        for o in self.origins() {
            check_tier_url("origin", o)?;
        }
        if self.role == EdgeRole::Peer {
            if self.certificate.as_deref().unwrap_or("").is_empty() {
                return fail("certificate", "a peer joins with a validation certificate");
            }
            if self.member_credential.as_deref().is_some_and(|c| !c.is_empty()) {
                return fail("member_credential", "a peer joins with its certificate, not a member credential");
            }
        } else {
            if self.cluster_token.len() < 16 {
                return fail("cluster_token", "required, at least 16 characters");
            }
            let text = self.member_credential.as_deref().unwrap_or("");
            if text.is_empty() {
                return fail("member_credential", "required for nodes and edges (tranzcast cluster add-member NAME --role node|edge)");
            }
            let c = tranzcast_proto::member::MemberCredential::parse(text.trim())
                .map_err(|e| ("member_credential".to_string(), e.to_string()))?;
            let role = if self.role == EdgeRole::Node { "node" } else { "edge" };
            if c.name != self.name || c.role.as_str() != role {
                return fail(
                    "member_credential",
                    format!("issued to {} as {}, but this server is {} as {role}", c.name, c.role.as_str(), self.name),
                );
            }
        }
        if let Some(k) = &self.origin_key
            && (k.len() != 64 || !k.bytes().all(|c| c.is_ascii_hexdigit()))
        {
            return fail("origin_key", "must be 64 hex digits (an Ed25519 public key)");
        }
        if let Some(u) = &self.public_url
            && !u.starts_with("https://")
        {
            return fail("public_url", format!("{u:?} is not an https:// URL"));
        }
        for (i, p) in self.parents.iter().enumerate() {
            check_tier_url(&format!("parents[{i}]"), p)?;
        }
        self.tls.validate("tls")?;
        self.listen.validate()?;
        // A peer's identity is issued by the origin at start: roots alone.
        self.tls.with_roots(self.ca.is_some(), "ca", self.role == EdgeRole::Peer)?;
        self.store.validate()?;
        if self.upstream_timeout.0.as_millis() < 10 {
            return fail("upstream_timeout", "must be at least 10ms");
        }
        if self.heartbeat.0.as_millis() < 100 {
            return fail("heartbeat", "must be at least 100ms");
        }
        if self.revocation_max_age.0 < self.heartbeat.0 {
            return fail("revocation_max_age", "must be at least the heartbeat");
        }
        if let Some(r) = self.rate_limit
            && r.0 < 1024
        {
            return fail("rate_limit", "must be at least 1KiB (per second)");
        }
        self.limits.validate()?;
        if self.mirroring.prefetch_segments > 256 {
            return fail("mirroring.prefetch_segments", "at most 256");
        }
        Ok(())
    }
}
