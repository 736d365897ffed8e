//! Bringing up real clusters on 127.0.0.1 for tests (the edge's, the
//! client's, the origin's, the binary's): typed config builders for an
//! origin and for nodes, edges and peers ([`EdgeSpec`]), titles ingested into
//! an origin's store, an origin client for customers, orders and plays
//! ([`OriginClient`]), metric readers and a protocol-checking client.
//! Test code: it panics on anything unexpected.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod postgres;
mod s3;
pub use postgres::Postgres;
pub use s3::S3Server;

use std::path::Path;

use bytes::Bytes;
use http::HeaderMap;
use std::time::{Duration, Instant};
use tranzcast_net::client::H3Client;

use tranzcast_config::{EdgeConfig, Layers, OriginConfig};
use tranzcast_ingest::{IngestOptions, ingest};
use tranzcast_origin::Origin;
use tranzcast_proto::manifest::SignedManifest;
use tranzcast_proto::{BlobAddress, TitleId, answers, api};
use tranzcast_store::{BlobStore, StoreOptions};

pub const CLUSTER: &str = "test-cluster-token-0123456789";
/// The origin's secret for minting member credentials in these tests.
pub const MEMBER_KEY: &str = "test-member-key-0123456789-0123456789";

/// A member credential for `name` as `role` ("node" or "edge"), minted with [`MEMBER_KEY`].
pub fn member_credential(name: &str, role: &str) -> String {
    let role = tranzcast_proto::member::MemberRole::parse(role).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tranzcast_proto::member::issue(MEMBER_KEY.as_bytes(), name, role, now).unwrap()
}

pub fn origin_config(data: &Path, port: u16) -> OriginConfig {
    origin_config_with(data, port, &[])
}

/// As [`origin_config`], with more `key=value` settings.
pub fn origin_config_with(data: &Path, port: u16, extra: &[String]) -> OriginConfig {
    let mut sets = vec![
        format!("data_dir={}", data.display()),
        format!("storefront_token={STOREFRONT}"),
        format!("cluster_token={CLUSTER}"),
        format!("member_key={MEMBER_KEY}"),
        format!("listen.https=127.0.0.1:{port}"),
        "staging_interval=200ms".into(),
    ];
    sets.extend(extra.iter().cloned());
    Layers::new("origin").overrides(&sets).unwrap().build().unwrap()
}

/// Settings that make the origin pre-cast `segments` segments now (a window
/// around the current minute, UTC).
pub fn precast_now(segments: u32) -> Vec<String> {
    let now_min = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 86_400 / 60) as u16;
    let (a, b) = ((now_min + 1439) % 1440, (now_min + 60) % 1440);
    vec![format!("precast.window={:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60), format!("precast.segments={segments}")]
}

/// A node, edge or peer's config for a test, built step by step.
#[derive(Debug, Clone)]
pub struct EdgeSpec {
    role: String,
    name: String,
    data: std::path::PathBuf,
    origin_port: u16,
    parents: Vec<String>,
    port: u16,
    corrupt: bool,
    extra: Vec<String>,
}

impl EdgeSpec {
    /// `role` ("node", "edge" or "peer") named `name`, its data under
    /// `data`, joining the origin on `origin_port`; mirroring off (these
    /// tests count upstream requests exactly), a 200 ms heartbeat and a 2 s
    /// upstream timeout.
    pub fn new(role: &str, name: &str, data: &Path, origin_port: u16) -> Self {
        Self {
            role: role.into(),
            name: name.into(),
            data: data.to_path_buf(),
            origin_port,
            parents: Vec::new(),
            port: 0,
            corrupt: false,
            extra: vec!["mirroring.prefetch_segments=0".into(), "mirroring.push_to_edges=false".into()],
        }
    }

    /// Fetches misses from these parents (before the origin).
    pub fn parents(mut self, parents: &[String]) -> Self {
        self.parents = parents.to_vec();
        self
    }

    /// Listens on this port (0: any).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Lies: corrupts every blob it serves (a fault to catch).
    pub fn corrupt(mut self, corrupt: bool) -> Self {
        self.corrupt = corrupt;
        self
    }

    /// Mirroring as configured by default (prefetch and pushes on).
    pub fn mirroring(mut self) -> Self {
        self.extra.retain(|s| !s.starts_with("mirroring."));
        self
    }

    /// One more `key=value` setting (the config's own syntax, checked by it).
    pub fn set(mut self, kv: &str) -> Self {
        self.extra.push(kv.to_string());
        self
    }

    /// More `key=value` settings.
    pub fn sets(mut self, kvs: &[&str]) -> Self {
        self.extra.extend(kvs.iter().map(|s| (*s).to_string()));
        self
    }

    /// The config, checked.
    pub fn config(&self) -> EdgeConfig {
        let mut sets = vec![
            format!("role={}", self.role),
            format!("name={}", self.name),
            format!("data_dir={}", self.data.display()),
            format!("origin=https://localhost:{}", self.origin_port),
            format!("cluster_token={CLUSTER}"),
            format!("listen.https=127.0.0.1:{}", self.port),
            "heartbeat=200ms".into(),
            "upstream_timeout=2s".into(),
            format!("fault_corrupt_blobs={}", self.corrupt),
        ];
        if self.role != "peer" {
            sets.push(format!("member_credential={}", member_credential(&self.name, &self.role)));
        }
        if !self.parents.is_empty() {
            sets.push(format!("parents=[{}]", self.parents.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(",")));
        }
        sets.extend(self.extra.iter().cloned());
        Layers::new("edge").overrides(&sets).unwrap().build().unwrap()
    }
}

/// Ingests a 3-segment title (1 MiB segments) and returns its plaintext-free blob list.
pub fn setup(dir: &Path) -> (Vec<BlobAddress>, Vec<Vec<u8>>) {
    setup_sized(dir, 3)
}

/// Ingests `film` and `other` of `mib` segments of 1 MiB into the origin's
/// store; returns film's segment addresses and their (ciphertext) bytes.
pub fn setup_sized(dir: &Path, mib: u32) -> (Vec<BlobAddress>, Vec<Vec<u8>>) {
    let store = BlobStore::open(&dir.join("origin"), StoreOptions::default()).unwrap();
    let input = dir.join("film.bin");
    std::fs::write(&input, (0..mib << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect::<Vec<_>>()).unwrap();
    let mut o = IngestOptions::new(TitleId::new("film").unwrap());
    o.segment_size = Some(1 << 20);
    ingest(&store, &input, &o).unwrap();
    let mut o = IngestOptions::new(TitleId::new("other").unwrap());
    o.segment_size = Some(1 << 20);
    ingest(&store, &input, &o).unwrap();
    let m = store.title_manifest(&TitleId::new("film").unwrap()).unwrap().unwrap();
    let segs = SignedManifest::decode(&store.get(&m).unwrap().unwrap()).unwrap().manifest.segments;
    let bytes = segs.iter().map(|s| store.get(s).unwrap().unwrap().to_vec()).collect();
    (segs, bytes)
}

/// The storefront token of test origins.
pub const STOREFRONT: &str = "test-storefront-token-0123456789";

/// An origin as a storefront and a player use it: customers, orders, plays.
#[derive(Debug, Clone)]
pub struct OriginClient {
    /// The HTTP client (trusting the cluster's CA).
    pub http: reqwest::Client,
    /// The origin's base URL.
    pub base: String,
    /// The storefront token it orders with.
    pub storefront: String,
}

impl OriginClient {
    /// For the origin at `base`.
    pub fn new(http: &reqwest::Client, base: &str) -> Self {
        Self { http: http.clone(), base: base.trim_end_matches('/').to_string(), storefront: STOREFRONT.into() }
    }

    /// Orders with this storefront token (a cluster that is not the tests' own).
    pub fn with_storefront(mut self, token: &str) -> Self {
        self.storefront = token.to_string();
        self
    }

    /// A new customer buys `title`: its ticket.
    pub async fn buy(&self, title: &str) -> String {
        let c = self.customer().await;
        self.order(&api::OrderBody::buy(c, title)).await.0
    }

    async fn post(&self, path: &str, body: &impl serde::Serialize, storefront: bool) -> (u16, bytes::Bytes) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if storefront {
            req = req.bearer_auth(&self.storefront);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap())
    }

    /// A new customer's number.
    pub async fn customer(&self) -> u64 {
        let (status, b) = self.post("/v1/customers", &api::CustomerBody { name: "v".into() }, true).await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&b));
        answers::parse_small::<answers::CustomerCreated>("customer", &b).unwrap().customer
    }

    /// An order: `(ticket, serial)`.
    pub async fn order(&self, body: &api::OrderBody) -> (String, String) {
        let (status, b) = self.post("/v1/orders", body, true).await;
        assert!(status == 200 || status == 201, "order: {status}: {}", String::from_utf8_lossy(&b));
        let o: answers::OrderPlaced = answers::parse_small("order", &b).unwrap();
        (o.ticket, o.serial)
    }

    /// A new customer rents `title` for `plays` plays (an hour): `(ticket, serial)`.
    pub async fn rent(&self, title: &str, plays: u32) -> (String, String) {
        let c = self.customer().await;
        self.order(&api::OrderBody::rent(c, title, plays, 1)).await
    }

    /// A smart client's play: the grant, or the refusal's status and code.
    pub async fn play(&self, ticket: &str) -> Result<answers::PlayGrant, (u16, String)> {
        let (status, b) = self.post("/v1/play", &api::PlayBody::client(ticket), false).await;
        if status != 200 {
            return Err((status, answers::ErrorBody::read(&b).0));
        }
        Ok(answers::PlayGrant::parse(&b).unwrap())
    }

    /// A play whose answer may be cut (its origin killed): the status, or
    /// the transport's error.
    pub async fn play_or_cut(&self, ticket: &str) -> Result<u16, reqwest::Error> {
        let r = self.http.post(format!("{}/v1/play", self.base)).json(&api::PlayBody::client(ticket)).send().await?;
        let status = r.status().as_u16();
        r.bytes().await?;
        Ok(status)
    }

    /// Revokes a serial (a ticket's: its whole order; a certificate's: that
    /// session) as the storefront: the status.
    pub async fn revoke_serial(&self, serial: &str) -> u16 {
        let body = api::RevokeBody { serial: Some(serial.to_string()), ..Default::default() };
        self.post("/v1/revoke", &body, true).await.0
    }

    /// A customer rents `title` and plays it: `(Authorization header value with
    /// the certificate, ticket serial)`.
    pub async fn certificate(&self, title: &str) -> (String, String) {
        let (ticket, serial) = self.rent(title, 5).await;
        let grant = self.play(&ticket).await.unwrap();
        (format!("Tranzcast {}", grant.certificate), serial)
    }
}

/// A customer buys `title` and plays it: returns `(certificate header, ticket serial)` from the real origin.
pub async fn certificate(http: &reqwest::Client, origin: &str, title: &str) -> (String, String) {
    OriginClient::new(http, origin).certificate(title).await
}

/// A new customer rents `title` for `plays` plays: returns `(ticket, serial)`.
pub async fn rent(http: &reqwest::Client, origin: &str, title: &str, plays: u32) -> (String, String) {
    OriginClient::new(http, origin).rent(title, plays).await
}

pub async fn wait_staged(origin: &Origin, nodes: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(|n| origin.staging_status().get(*n).and_then(|t| t.get("film")).is_some_and(|p| p.complete)) {
        assert!(Instant::now() < deadline, "staging incomplete: {:?}", origin.staging_status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the node (or peer) of `spec` and waits until `origin` has staged
/// `film` on it.
pub async fn start_staged(origin: &Origin, tls: &tranzcast_edge::EdgeTls, spec: &EdgeSpec) -> tranzcast_edge::EdgeServer {
    let server = tranzcast_edge::EdgeServer::start(spec.config(), tls.clone()).await.unwrap();
    wait_staged(origin, &[&spec.name]).await;
    server
}

pub async fn metric(http: &reqwest::Client, base: &str, name: &str) -> u64 {
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

/// A labelled or float metric's value (first line starting with `name_and_labels `).
pub async fn metric_f64(http: &reqwest::Client, base: &str, name_and_labels: &str) -> Option<f64> {
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name_and_labels} "))).and_then(|v| v.trim().parse().ok())
}

/// Polls `f` every 50 ms until it is true, for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One client per protocol, over real TLS: HTTP/1.1 and HTTP/2 (reqwest), HTTP/3 (quinn + h3).
#[allow(missing_debug_implementations)]
pub enum Client {
    H1(reqwest::Client),
    H2(reqwest::Client),
    H3(H3Client),
}

impl Client {
    /// A request; asserts the protocol version used; returns status, headers, body.
    pub async fn get(&self, method: &str, url: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Bytes) {
        match self {
            Client::H1(c) | Client::H2(c) => {
                let mut r = c.request(method.parse().unwrap(), url);
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                let resp = r.send().await.unwrap();
                let want = if matches!(self, Client::H1(_)) { reqwest::Version::HTTP_11 } else { reqwest::Version::HTTP_2 };
                assert_eq!(resp.version(), want);
                let (s, h) = (resp.status().as_u16(), resp.headers().clone());
                (s, h, resp.bytes().await.unwrap())
            }
            Client::H3(c) => {
                let mut b = http::Request::builder().method(method).uri(url);
                for (k, v) in headers {
                    b = b.header(*k, *v);
                }
                let resp = c.request(b.body(Bytes::new()).unwrap()).await.unwrap();
                (resp.status().as_u16(), resp.headers().clone(), resp.body().clone())
            }
        }
    }
}

/// What RFC 9110 asks of ranges and conditionals, checked on `url` through
/// `c` (`name` in messages), whose whole body is `whole` and validator `etag`:
/// each of `singles` (a Range header, the bytes it covers) is one 206 part;
/// `multi` (a Range header, its three parts) is answered as
/// multipart/byteranges; If-Range with the validator honours the range and
/// with another gives the whole; If-None-Match is 304 with no body; a range
/// past the end is 416 with the length; a range that ends before it starts
/// is 400; HEAD with a range is the GET's head with no body.
pub async fn check_ranges(
    c: &Client,
    name: &str,
    url: &str,
    whole: &[u8],
    etag: &str,
    singles: &[(&str, usize, usize)],
    multi: (&str, [(usize, usize); 3]),
) {
    let len = whole.len();
    for &(range, lo, hi) in singles {
        let (s, hd, b) = c.get("GET", url, &[("range", range)]).await;
        assert_eq!(s, 206, "{name} {range}");
        assert_eq!(h(&hd, "content-range"), format!("bytes {lo}-{}/{len}", hi - 1), "{name} {range}");
        assert!(b[..] == whole[lo..hi], "{name} {range}");
        // RFC 9110 15.3.7: a 206 carries the validator and caching a 200 would.
        assert_eq!(h(&hd, "etag"), etag, "{name} {range}");
        assert!(h(&hd, "cache-control").contains("max-age="), "{name} {range}");
    }
    let (s, hd, b) = c.get("GET", url, &[("range", multi.0)]).await;
    assert_eq!(s, 206, "{name}");
    let ct = h(&hd, "content-type").to_string();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
    for (lo, hi) in multi.1 {
        let marker = format!("Content-Range: bytes {lo}-{}/{len}\r\n\r\n", hi - 1);
        let at = b.windows(marker.len()).position(|w| w == marker.as_bytes()).unwrap_or_else(|| panic!("{name}: part {lo}-{hi} missing"));
        assert!(b[at + marker.len()..at + marker.len() + (hi - lo)] == whole[lo..hi], "{name}: part {lo}-{hi}");
    }
    assert!(b.ends_with(format!("--{boundary}--\r\n").as_bytes()), "{name}: closing boundary");
    let (s, _, b) = c.get("GET", url, &[("range", "bytes=0-9"), ("if-range", etag)]).await;
    assert_eq!((s, b.len()), (206, 10), "{name}");
    let (s, _, b) = c.get("GET", url, &[("range", "bytes=0-9"), ("if-range", "\"stale\"")]).await;
    assert_eq!((s, b.len()), (200, len), "{name}");
    let (s, hd, b) = c.get("GET", url, &[("if-none-match", etag)]).await;
    assert_eq!((s, b.len()), (304, 0), "{name}");
    assert_eq!(h(&hd, "etag"), etag, "{name}");
    let (s, hd, _) = c.get("GET", url, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!((s, h(&hd, "content-range")), (416, format!("bytes */{len}").as_str()), "{name}");
    let (s, _, b) = c.get("GET", url, &[("range", "bytes=9-1")]).await;
    assert_eq!(s, 400, "{name}");
    assert!(String::from_utf8_lossy(&b).contains("ends before it starts"), "{name}");
    let (s, hd, b) = c.get("HEAD", url, &[("range", "bytes=0-99")]).await;
    assert_eq!((s, b.len(), h(&hd, "content-length")), (206, 0, "100"), "{name}");
}

/// A header's value as text ("" when absent).
pub fn h<'a>(m: &'a HeaderMap, k: &str) -> &'a str {
    m.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Every regular file under `dir`, recursively.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A title ingested and an origin serving it on 127.0.0.1, with the
/// cluster's TLS material and a client trusting it: how most tests start.
#[allow(missing_debug_implementations)]
pub struct TestCluster {
    /// Everything on disk (the origin's store under `origin/`, servers' beside it).
    pub dir: tempfile::TempDir,
    /// `film`'s segment addresses and their (ciphertext) bytes.
    pub segments: Vec<BlobAddress>,
    /// The segments' bytes.
    pub blobs: Vec<Vec<u8>>,
    /// `film`'s plaintext (what a playback must reproduce).
    pub input: Vec<u8>,
    /// The origin.
    pub origin: Origin,
    /// Its port.
    pub oport: u16,
    /// Its base URL.
    pub origin_url: String,
    /// TLS for nodes, edges and clients (the origin's CA).
    pub tls: tranzcast_edge::EdgeTls,
    /// An HTTP client trusting the CA.
    pub http: reqwest::Client,
}

impl TestCluster {
    /// `film` and `other` of `mib` 1 MiB segments, and the origin.
    pub async fn start(mib: u32) -> Self {
        Self::start_with(mib, &[]).await
    }

    /// As [`TestCluster::start`], with more origin settings.
    pub async fn start_with(mib: u32, origin_extra: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (segments, blobs) = setup_sized(dir.path(), mib);
        let input = std::fs::read(dir.path().join("film.bin")).unwrap();
        let origin = Origin::start(origin_config_with(&dir.path().join("origin"), 0, origin_extra)).await.unwrap();
        let oport = origin.https_addr().port();
        let origin_url = format!("https://localhost:{oport}");
        let tls = tranzcast_edge::EdgeTls::from_config(&EdgeSpec::new("node", "x", dir.path(), oport).config(), &origin.ca_dir()).unwrap();
        let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
        Self { dir, segments, blobs, input, origin, oport, origin_url, tls, http }
    }

    /// A server's spec with its data under this cluster's directory.
    pub fn spec(&self, role: &str, name: &str) -> EdgeSpec {
        EdgeSpec::new(role, name, &self.dir.path().join(name), self.oport)
    }

    /// Starts a node, edge or peer.
    pub async fn server(&self, spec: &EdgeSpec) -> tranzcast_edge::EdgeServer {
        tranzcast_edge::EdgeServer::start(spec.config(), self.tls.clone()).await.unwrap()
    }

    /// `node-1`, mirroring as by default with these settings, started and
    /// staged; its base URL.
    pub async fn mirroring_node(&self, sets: &[&str]) -> (tranzcast_edge::EdgeServer, String) {
        let node = start_staged(&self.origin, &self.tls, &self.spec("node", "node-1").mirroring().sets(sets)).await;
        let url = url_of(&node);
        (node, url)
    }

    /// Another origin of this cluster (on a shared state: `sets`), started
    /// on an empty store in `<dir>/<name>` with this cluster's CA (one
    /// cluster, one CA); its base URL.
    pub async fn another_origin(&self, name: &str, sets: &[String]) -> (Origin, String) {
        let dir = self.dir.path().join(name);
        drop(BlobStore::open(&dir, StoreOptions { create: true, ..Default::default() }).unwrap());
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        for f in std::fs::read_dir(self.origin.ca_dir()).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join("tls").join(f.file_name())).unwrap();
        }
        let o = Origin::start(origin_config_with(&dir, 0, sets)).await.unwrap();
        let url = format!("https://localhost:{}", o.https_addr().port());
        (o, url)
    }

    /// The origin as a storefront and a player use it.
    pub fn client(&self) -> OriginClient {
        OriginClient::new(&self.http, &self.origin_url)
    }
}

/// A server's HTTPS base URL on loopback.
pub fn url_of(server: &tranzcast_edge::EdgeServer) -> String {
    format!("https://localhost:{}", server.https_addr().port())
}
