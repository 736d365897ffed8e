//! Helpers shared by the edge's integration tests: configs for real servers
//! on 127.0.0.1, a title ingested into the origin's store, certificates from
//! the real origin, metric readers.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;

use bytes::Bytes;
use http::HeaderMap;
use std::time::{Duration, Instant};
use tranzcast_net::client::H3Client;

use tranzcast_config::{EdgeConfig, Layers, OriginConfig};
use tranzcast_ingest::{IngestOptions, ingest};
use tranzcast_origin::Origin;
use tranzcast_proto::manifest::SignedManifest;
use tranzcast_proto::{BlobAddress, TitleId};
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
        "storefront_token=test-storefront-token-0123456789".into(),
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

pub fn edge_config(role: &str, name: &str, data: &Path, origin_port: u16, parents: &[String], port: u16, corrupt: bool) -> EdgeConfig {
    // Mirroring off: these tests count upstream requests exactly.
    edge_config_with(
        role,
        name,
        data,
        origin_port,
        parents,
        port,
        corrupt,
        &["mirroring.prefetch_segments=0", "mirroring.push_to_edges=false"],
    )
}

/// As [`edge_config`], with more `key=value` settings.
#[allow(clippy::too_many_arguments)]
pub fn edge_config_with(
    role: &str,
    name: &str,
    data: &Path,
    origin_port: u16,
    parents: &[String],
    port: u16,
    corrupt: bool,
    extra: &[&str],
) -> EdgeConfig {
    let mut sets = vec![
        format!("role={role}"),
        format!("name={name}"),
        format!("data_dir={}", data.display()),
        format!("origin=https://localhost:{origin_port}"),
        format!("cluster_token={CLUSTER}"),
        format!("listen.https=127.0.0.1:{port}"),
        "heartbeat=200ms".into(),
        "upstream_timeout=2s".into(),
        format!("fault_corrupt_blobs={corrupt}"),
    ];
    if role != "peer" {
        sets.push(format!("member_credential={}", member_credential(name, role)));
    }
    if !parents.is_empty() {
        sets.push(format!("parents=[{}]", parents.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(",")));
    }
    sets.extend(extra.iter().map(|s| s.to_string()));
    Layers::new("edge").overrides(&sets).unwrap().build().unwrap()
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

/// A customer buys `title` and plays it: returns `(certificate, ticket serial)` from the real origin.
pub async fn certificate(http: &reqwest::Client, origin: &str, title: &str) -> (String, String) {
    let (ticket, serial) = rent(http, origin, title, 5).await;
    let p: serde_json::Value =
        http.post(format!("{origin}/v1/play")).json(&serde_json::json!({"ticket": ticket})).send().await.unwrap().json().await.unwrap();
    (format!("Tranzcast {}", p["certificate"].as_str().unwrap()), serial)
}

/// A new customer rents `title` for `plays` plays: returns `(ticket, serial)`.
pub async fn rent(http: &reqwest::Client, origin: &str, title: &str, plays: u32) -> (String, String) {
    let tok = "test-storefront-token-0123456789";
    let c: serde_json::Value = http
        .post(format!("{origin}/v1/customers"))
        .bearer_auth(tok)
        .json(&serde_json::json!({"name": "v"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let o: serde_json::Value = http
        .post(format!("{origin}/v1/orders"))
        .bearer_auth(tok)
        .json(&serde_json::json!({"customer": c["customer"], "title": title, "kind": "rent", "plays": plays, "hours": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (o["ticket"].as_str().unwrap().to_string(), o["serial"].as_str().unwrap().to_string())
}

pub async fn wait_staged(origin: &Origin, nodes: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(|n| origin.staging_status().get(*n).and_then(|t| t.get("film")).is_some_and(|p| p.complete)) {
        assert!(Instant::now() < deadline, "staging incomplete: {:?}", origin.staging_status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
