//! One typed config per role. Every struct rejects unknown keys and has
//! defaults for everything but what must be chosen (the storefront token).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::fail;
use crate::limits::LimitsConfig;
use crate::{ByteSize, Duration, Secret, TimeWindow};

/// A role's config: deserialisable, and checked beyond its types.
pub trait RoleConfig: DeserializeOwned {
    /// The role's name, as used in `TRANZCAST_<ROLE>__...` variables.
    const ROLE: &'static str;
    /// Checks what types cannot; on failure returns the dotted key and the reason.
    fn validate(&self) -> Result<(), (String, String)>;
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
