//! The origin over real HTTP/1.1, HTTP/2 and HTTP/3 with TLS on 127.0.0.1:
//! ticket lifecycle, forgery, revocation, concurrency, and the split key.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde_json::{Value, json};
use tranzcast_ingest::{IngestOptions, ingest};
use tranzcast_net::client::{H3Client, https, https_h1};
use tranzcast_origin::Origin;
use tranzcast_proto::TitleId;
use tranzcast_proto::frame::FrameKind;
use tranzcast_proto::keys::{self, Expected, TitleKey};
use tranzcast_proto::manifest::SignedManifest;
use tranzcast_proto::ticket::{SignedToken, TOKEN_LEN, Token, to_text};
use tranzcast_store::{BlobStore, StoreOptions};

const TOKEN: &str = "test-storefront-token-0123456789";

struct Fixture {
    _dir: tempfile::TempDir,
    origin: Origin,
    base: String,
    http: reqwest::Client,
    plain: Vec<u8>,
}

fn ingest_title(dir: &Path, title: &str, len: usize) -> Vec<u8> {
    let store = BlobStore::open(dir, StoreOptions::default()).unwrap();
    let plain: Vec<u8> = (0..len).map(|i| (i * 7 + title.len()) as u8).collect();
    let input = dir.join(format!("../{title}.bin"));
    std::fs::write(&input, &plain).unwrap();
    let mut o = IngestOptions::new(TitleId::new(title).unwrap());
    o.segment_size = Some(64 << 10);
    ingest(&store, &input, &o).unwrap();
    plain
}

async fn start() -> Fixture {
    start_with(&[]).await
}

/// As [`start`], with more `key=value` settings after the fixture's own.
async fn start_with(extra: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("origin");
    let plain = ingest_title(&data, "film", 300_000);
    let mut sets: Vec<String> = [
        "certificate_margin=60s",
        // These tests are one address asking thousands of times at once
        // (the per-address limits have their own test).
        "rate.play_per_s=1000000",
        "rate.play_burst=1000000",
        "limits.max_connections_per_ip=4096",
        "limits.connection_rate_per_ip=100000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    let cfg = tranzcast_testkit::origin_config_with(&data, 0, &sets);
    let origin = Origin::start(cfg).await.unwrap();
    let http = https(origin.ca_pem().as_bytes()).unwrap();
    let base = format!("https://localhost:{}", origin.https_addr().port());
    Fixture { _dir: dir, origin, base, http, plain }
}

impl Fixture {
    async fn post(&self, path: &str, body: Value, auth: bool) -> (u16, Value) {
        self.post_as(path, body, auth.then_some(TOKEN)).await
    }

    /// As [`post`](Self::post), with this bearer token (or none).
    async fn post_as(&self, path: &str, body: Value, token: Option<&str>) -> (u16, Value) {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn order(&self, body: Value) -> String {
        let (s, v) = self.post("/v1/orders", body, true).await;
        assert_eq!(s, 201, "{v}");
        v["ticket"].as_str().unwrap().to_string()
    }

    async fn customer(&self) -> u64 {
        let (s, v) = self.post("/v1/customers", json!({"name": "Ada"}), true).await;
        assert_eq!(s, 201, "{v}");
        v["customer"].as_u64().unwrap()
    }

    /// A new customer and their one-hour rental of "film".
    async fn renter(&self, plays: u32) -> (u64, String) {
        let c = self.customer().await;
        (c, self.order(rental(c, plays)).await)
    }

    async fn play(&self, ticket: &str) -> (u16, Value) {
        self.post("/v1/play", json!({"ticket": ticket}), false).await
    }
}

/// The order body of a one-hour rental of "film".
fn rental(customer: u64, plays: u32) -> Value {
    json!({"customer": customer, "title": "film", "kind": "rent", "plays": plays, "hours": 1})
}

fn refused(r: &(u16, Value), code: &str) {
    assert_eq!(r.0, 403, "{}", r.1);
    assert_eq!(r.1["error"]["code"], code, "{}", r.1);
    assert!(r.1["error"]["reason"].as_str().unwrap().len() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_lifecycle_over_h2() {
    let f = start().await;
    let c = f.customer().await;

    // Bought: plays again and again, never replaced.
    let bought = f.order(json!({"customer": c, "title": "film", "kind": "buy"})).await;
    for _ in 0..3 {
        let (s, v) = f.play(&bought).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["ticket"].is_null());
        assert!(v["certificate"].is_string());
    }

    // A 3-play rental: 3 certificates, the first two with replacements, then spent.
    let mut t = f.order(json!({"customer": c, "title": "film", "kind": "rent", "plays": 3, "hours": 48})).await;
    let mut first = None;
    for i in 0..3 {
        let (s, v) = f.play(&t).await;
        assert_eq!(s, 200, "play {i}: {v}");
        if i < 2 {
            let next = v["ticket"].as_str().unwrap().to_string();
            if first.is_none() {
                first = Some(t.clone());
            }
            t = next;
        } else {
            assert!(v["ticket"].is_null(), "last play has no replacement");
        }
    }
    refused(&f.play(&t).await, "spent");
    // The first ticket was replaced: it cannot be replayed.
    refused(&f.play(first.as_ref().unwrap()).await, "replaced");

    // Expired.
    let short = f.order(json!({"customer": c, "title": "film", "kind": "rent", "plays": 2, "seconds": 1})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    refused(&f.play(&short).await, "expired");

    // Revoked.
    let rev = f.order(rental(c, 2)).await;
    let (s, v) = f.post("/v1/revoke", json!({"ticket": rev}), true).await;
    assert_eq!(s, 200, "{v}");
    refused(&f.play(&rev).await, "revoked");
    let (s, v) = f.http.get(format!("{}/v1/revocations", f.base)).send().await.map(|r| (r.status().as_u16(), r)).unwrap();
    assert_eq!(s, 200);
    let list: Value = v.json().await.unwrap();
    assert!(!list["revoked"].as_array().unwrap().is_empty());

    // Unknown title and unknown customer are refused at order time.
    let (s, v) = f.post("/v1/orders", json!({"customer": c, "title": "nope", "kind": "buy"}), true).await;
    assert_eq!((s, v["error"]["code"].as_str().unwrap()), (404, "unknown_title"));
    let (s, v) = f.post("/v1/orders", json!({"customer": 999_999, "title": "film", "kind": "buy"}), true).await;
    assert_eq!((s, v["error"]["code"].as_str().unwrap()), (404, "unknown_customer"));

    // Metrics count validations by result and requests by protocol; health answers.
    let metrics = f.http.get(format!("{}/metrics", f.base)).send().await.unwrap().text().await.unwrap();
    for want in [
        "origin_validations_total{result=\"granted\"} 6",
        "origin_validations_total{result=\"spent\"} 1",
        "route=\"play\",protocol=\"h2\",status=\"403\"",
    ] {
        assert!(metrics.contains(want), "{want} not in {metrics}");
    }
    let health: Value = f.http.get(format!("{}/healthz", f.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    f.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_altered_byte_is_forged_and_storefront_needs_its_token() {
    let f = start().await;
    let (c, t) = f.renter(5).await;
    let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
    assert_eq!(raw.len(), TOKEN_LEN);
    for at in 0..TOKEN_LEN {
        let mut b: [u8; TOKEN_LEN] = raw.clone().try_into().unwrap();
        b[at] ^= 0x20;
        refused(&f.play(&to_text(&b)).await, "forged");
    }
    // The untouched ticket still plays: refusals did not spend it.
    assert_eq!(f.play(&t).await.0, 200);
    for bad in ["", "garbage", &"A".repeat(256)] {
        refused(&f.play(bad).await, "forged");
    }
    let (s, v) = f.post("/v1/customers", json!({"name": "x"}), false).await;
    assert_eq!((s, v["error"]["code"].as_str().unwrap()), (401, "unauthorized"));
    let (s, _) = f.post_as("/v1/customers", json!({"name": "x"}), Some("wrong-token-wrong-token")).await;
    assert_eq!(s, 403);
    let (s, v) = f.post("/v1/orders", rental(c, 0), true).await;
    assert_eq!(s, 400, "{v}");
    let r = f.http.post(format!("{}/v1/play", f.base)).body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["reason"].as_str().unwrap().contains("invalid JSON"));
    f.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_single_play_ticket_a_thousand_times_at_once() {
    let f = start().await;
    let (_, t) = f.renter(1).await;
    let serial = match SignedToken::from_text(&t).unwrap().verify(&f.origin.public_key()).unwrap() {
        Token::Ticket(t) => hex::encode(t.serial),
        _ => unreachable!(),
    };
    let mut tasks = Vec::new();
    for i in 0..1000 {
        // Half over HTTP/2, half over HTTP/1.1 connections.
        let client = if i % 2 == 0 { f.http.clone() } else { https_h1(f.origin.ca_pem().as_bytes()).unwrap() };
        let (url, t) = (format!("{}/v1/play", f.base), t.clone());
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).json(&json!({"ticket": t})).send().await.unwrap();
            let s = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (s, v)
        }));
    }
    let mut granted = 0;
    let mut spent = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            200 => granted += 1,
            403 if v["error"]["code"] == "spent" => spent += 1,
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((granted, spent), (1, 999));
    // The ticket store agrees afterwards.
    refused(&f.play(&t).await, "spent");
    let _ = serial;
    f.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k1_xor_k2_is_the_title_key_and_decrypts_over_h3() {
    let f = start().await;
    let (_, t) = f.renter(2).await;
    // Over HTTP/3 this time.
    let h3 = H3Client::connect(SocketAddr::from(([127, 0, 0, 1], f.origin.https_addr().port())), "localhost", f.origin.ca_pem().as_bytes())
        .await
        .unwrap();
    let req = http::Request::post(format!("https://localhost:{}/v1/play", f.origin.https_addr().port()))
        .header("content-type", "application/json")
        .body(Bytes::from(json!({"ticket": t}).to_string()))
        .unwrap();
    let resp = h3.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = serde_json::from_slice(resp.body()).unwrap();
    let key = f.origin.public_key();
    let k2 = match SignedToken::from_text(&t).unwrap().verify(&key).unwrap() {
        Token::Ticket(t) => t.key_part,
        _ => unreachable!(),
    };
    let k1 = match SignedToken::from_text(v["certificate"].as_str().unwrap()).unwrap().verify(&key).unwrap() {
        Token::Certificate(c) => c.key_part,
        _ => unreachable!(),
    };
    let km = TitleKey::from_bytes(TitleKey::from_bytes(k2).xor(&k1));
    let manifest = SignedManifest::decode(&URL_SAFE_NO_PAD.decode(v["manifest"].as_str().unwrap()).unwrap()).unwrap();
    let m = manifest.verify(&key).unwrap().clone();
    let title = TitleId::new("film").unwrap();
    let mut out = Vec::new();
    // No anonymous ciphertext: blob and outboard reads need the cluster's
    // credentials or a certificate for the blob's title.
    let cert = format!("Tranzcast {}", v["certificate"].as_str().unwrap());
    let blob0 = format!("{}/v1/blobs/{}", f.base, m.segments[0]);
    let outboard0 = format!("{}/v1/outboards/{}", f.base, m.segments[0]);
    for (url, auth, want) in [
        (&blob0, None, 401),
        (&outboard0, None, 401),
        (&blob0, Some("Bearer not-the-cluster-token-000".to_string()), 403),
        (&blob0, Some(tampered(&cert)), 403),
        (&blob0, Some("Bearer test-cluster-token-0123456789".to_string()), 200),
        (&outboard0, Some(cert.clone()), 200),
    ] {
        let mut r = f.http.get(url.as_str());
        if let Some(a) = &auth {
            r = r.header("authorization", a);
        }
        assert_eq!(r.send().await.unwrap().status().as_u16(), want, "{url} with {auth:?}");
    }
    for (i, a) in m.segments.iter().enumerate() {
        let r = f.http.get(format!("{}/v1/blobs/{a}", f.base)).header("authorization", &cert).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let frame = r.bytes().await.unwrap();
        a.verify(&frame).unwrap();
        let p = keys::open(&km, &frame, &Expected { title: &title, kind: FrameKind::Media, sequence: i as u64 }).unwrap();
        out.extend_from_slice(&p[..m.segment_plain_len(i as u64) as usize]);
    }
    assert_eq!(out, f.plain);
    // The replacement ticket's K2 with its own certificate also gives KM, by a different split.
    let t2 = v["ticket"].as_str().unwrap();
    let (s, v2) = f.play(t2).await;
    assert_eq!(s, 200);
    let k2b = match SignedToken::from_text(t2).unwrap().verify(&key).unwrap() {
        Token::Ticket(t) => t.key_part,
        _ => unreachable!(),
    };
    let k1b = match SignedToken::from_text(v2["certificate"].as_str().unwrap()).unwrap().verify(&key).unwrap() {
        Token::Certificate(c) => c.key_part,
        _ => unreachable!(),
    };
    assert_ne!(k2, k2b);
    assert_eq!(TitleKey::from_bytes(k2b).xor(&k1b), *km.expose());
    f.origin.shutdown().await;
}

/// Abuse of the routes anyone may call: refused plays cost no write to the
/// log, plays and storefront calls are limited per address (429 with
/// Retry-After), and credentials are checked before a body byte is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_cost_no_write_and_addresses_are_rate_limited_before_bodies_are_read() {
    let f = start_with(&["rate.play_per_s=5", "rate.play_burst=10", "rate.storefront_per_s=5", "rate.storefront_burst=5"]).await;
    let c = f.customer().await;
    let t = f.order(json!({"customer": c, "title": "film", "kind": "buy"})).await;
    assert_eq!(f.play(&t).await.0, 200);
    let log = f.origin.validation_log().unwrap().len();
    assert_eq!(log, 1, "a granted play is logged");
    // Garbage tickets from one address: its burst is refused as forged (no
    // write), the rest get 429 with Retry-After before their body is looked at.
    let mut codes = std::collections::BTreeMap::<u16, u32>::new();
    let mut retry = None;
    for i in 0..40 {
        let r = f.http.post(format!("{}/v1/play", f.base)).json(&json!({"ticket": format!("garbage-{i}")})).send().await.unwrap();
        if r.status() == 429 {
            retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        }
        *codes.entry(r.status().as_u16()).or_default() += 1;
    }
    assert_eq!(codes.get(&403).copied().unwrap_or(0) + codes.get(&429).copied().unwrap_or(0), 40, "{codes:?}");
    assert!((8..=12).contains(&codes.get(&403).copied().unwrap_or(0)), "about the burst refused as forged: {codes:?}");
    assert!(retry.is_some_and(|s| s >= 1), "429 carries Retry-After");
    assert_eq!(f.origin.validation_log().unwrap().len(), log, "refused plays wrote nothing to the log");
    // Another address has its own bucket.
    let other = reqwest::Client::builder()
        .tls_backend_preconfigured(tranzcast_net::tls::client_config(f.origin.ca_pem().as_bytes(), &[b"h2"]).unwrap())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other.post(format!("{}/v1/play", f.base)).json(&json!({"ticket": "garbage"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let text = f.http.get(format!("{}/metrics", f.base)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("origin_validations_total{result=\"forged\"} "), "refusals are counted in memory");
    assert!(text.lines().any(|l| l.starts_with("origin_refused_total{reason=\"rate_limited\"}") && !l.ends_with(" 0")));
    // Storefront calls: the storefront's own (with its token) are never
    // limited; calls without the token are, per address, past their burst.
    for _ in 0..10 {
        assert_eq!(f.post("/v1/customers", json!({"name": "Bo"}), true).await.0, 201);
    }
    let mut codes = std::collections::BTreeMap::<u16, u32>::new();
    for _ in 0..10 {
        let (s, _) = f.post_as("/v1/customers", json!({"name": "x"}), Some("a-guess-at-the-token")).await;
        *codes.entry(s).or_default() += 1;
    }
    assert!(codes.get(&403).is_some_and(|n| (4..=6).contains(n)) && codes.contains_key(&429), "{codes:?}");
    assert_eq!(f.post("/v1/customers", json!({"name": "Cy"}), true).await.0, 201, "the storefront is still served");
    // A genuine ticket played out and replayed: one record, counted, no log line each.
    let r1 = f.order(rental(c, 1)).await;
    // (From the other address: this one spent its plays' burst above.)
    assert_eq!(other.post(format!("{}/v1/play", f.base)).json(&json!({"ticket": r1})).send().await.unwrap().status(), 200);
    for _ in 0..5 {
        assert_eq!(other.post(format!("{}/v1/play", f.base)).json(&json!({"ticket": r1})).send().await.unwrap().status(), 403);
    }
    let refused = f.origin.refused_plays().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].1.as_str(), refused[0].2), ("spent", 5));
    assert_eq!(f.origin.validation_log().unwrap().len(), log + 1, "only the grant was logged");
    // Credentials before the body: an upload of 100 MiB declared, no byte sent.
    for (auth, want) in [("", 401), ("authorization: Bearer wrong-token-0123456789\r\n", 403)] {
        let cfg = tranzcast_net::tls::client_config(f.origin.ca_pem().as_bytes(), &[b"http/1.1"]).unwrap();
        // From another address than the storefront calls above (its own bucket).
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let tcp = sock.connect(f.origin.https_addr()).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let head = format!("PUT /v1/blobs/{} HTTP/1.1\r\nhost: localhost\r\n{auth}content-length: {}\r\n\r\n", "ab".repeat(32), 100 << 20);
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 256];
        let n =
            tokio::time::timeout(std::time::Duration::from_secs(2), tls.read(&mut buf)).await.expect("no answer without the body").unwrap();
        let line = String::from_utf8_lossy(&buf[..n]);
        assert!(line.starts_with(&format!("HTTP/1.1 {want}")), "{line}");
    }
}

fn serial_of(f: &Fixture, text: &str) -> String {
    match SignedToken::from_text(text).unwrap().verify(&f.origin.public_key()).unwrap() {
        Token::Ticket(t) => hex::encode(t.serial),
        Token::Certificate(c) => hex::encode(c.serial),
    }
}

async fn revoked_list(f: &Fixture) -> std::collections::HashSet<String> {
    let list: Value = f.http.get(format!("{}/v1/revocations", f.base)).send().await.unwrap().json().await.unwrap();
    list["revoked"].as_array().unwrap().iter().map(|e| e["serial"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_replacements_orders_and_customers() {
    let f = start().await;
    let c = f.customer().await;
    // A 3-play rental revoked after its first play: the storefront knows
    // only the first ticket; the live one is its replacement.
    let t0 = f.order(rental(c, 3)).await;
    let (s, p1) = f.play(&t0).await;
    assert_eq!(s, 200, "{p1}");
    let t1 = p1["ticket"].as_str().unwrap().to_string();
    let cert1 = serial_of(&f, p1["certificate"].as_str().unwrap());
    let (s, v) = f.post("/v1/revoke", json!({"ticket": t0}), true).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["orders"].as_u64(), v["tickets"].as_u64(), v["certificates"].as_u64()), (Some(1), Some(2), Some(1)), "{v}");
    refused(&f.play(&t1).await, "revoked");
    let list = revoked_list(&f).await;
    assert!(list.contains(&cert1) && list.contains(&serial_of(&f, &t1)) && list.contains(&serial_of(&f, &t0)), "{list:?}");

    // By order number.
    let (s, o) = f.post("/v1/orders", rental(c, 3), true).await;
    assert_eq!(s, 201, "{o}");
    let (s, p) = f.play(o["ticket"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{p}");
    let (s, v) = f.post("/v1/revoke", json!({"order": o["order"]}), true).await;
    assert_eq!((s, v["certificates"].as_u64()), (200, Some(1)), "{v}");
    refused(&f.play(p["ticket"].as_str().unwrap()).await, "revoked");
    assert!(revoked_list(&f).await.contains(&serial_of(&f, p["certificate"].as_str().unwrap())));

    // By customer: every order, and no new ones.
    let c2 = f.customer().await;
    let buy = f.order(json!({"customer": c2, "title": "film", "kind": "buy"})).await;
    let rent = f.order(rental(c2, 2)).await;
    let (s, pb) = f.play(&buy).await;
    assert_eq!(s, 200, "{pb}");
    let (s, v) = f.post("/v1/revoke", json!({"customer": c2}), true).await;
    assert_eq!((s, v["orders"].as_u64(), v["certificates"].as_u64()), (200, Some(2), Some(1)), "{v}");
    refused(&f.play(&buy).await, "revoked");
    refused(&f.play(&rent).await, "revoked");
    assert!(revoked_list(&f).await.contains(&serial_of(&f, pb["certificate"].as_str().unwrap())));
    let (s, v) = f.post("/v1/orders", json!({"customer": c2, "title": "film", "kind": "buy"}), true).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("customer_revoked")), "{v}");
    // The other customer is untouched.
    let other = f.order(json!({"customer": c, "title": "film", "kind": "buy"})).await;
    assert_eq!(f.play(&other).await.0, 200);

    // Unknown targets and ambiguous requests are clear errors.
    let (s, v) = f.post("/v1/revoke", json!({"order": 999_999}), true).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = f.post("/v1/revoke", json!({"customer": 999_999}), true).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = f.post("/v1/revoke", json!({"order": 1, "customer": 1}), true).await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = f.post("/v1/revoke", json!({"order": 1}), false).await;
    assert_eq!(s, 401);
    f.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_racing_plays_leaves_no_certificate_out() {
    let f = start().await;
    let c = f.customer().await;
    let (s, o) = f.post("/v1/orders", json!({"customer": c, "title": "film", "kind": "buy"}), true).await;
    assert_eq!(s, 201, "{o}");
    let ticket = o["ticket"].as_str().unwrap().to_string();
    let granted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut players = Vec::new();
    for i in 0..8 {
        let client = if i % 2 == 0 { f.http.clone() } else { https_h1(f.origin.ca_pem().as_bytes()).unwrap() };
        let (url, t, granted) = (format!("{}/v1/play", f.base), ticket.clone(), granted.clone());
        players.push(tokio::spawn(async move {
            // Plays until refused: the last answer of each player is a refusal.
            for _ in 0..10_000 {
                let r = client.post(&url).json(&json!({"ticket": t})).send().await.unwrap();
                let (s, v): (u16, Value) = (r.status().as_u16(), r.json().await.unwrap());
                match s {
                    200 => granted.lock().unwrap().push(v["certificate"].as_str().unwrap().to_string()),
                    403 if v["error"]["code"] == "revoked" => return true,
                    other => panic!("unexpected {other}: {v}"),
                }
            }
            false
        }));
    }
    // Revoke while the players are granted plays.
    while granted.lock().unwrap().len() < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (s, v) = f.post("/v1/revoke", json!({"order": o["order"]}), true).await;
    assert_eq!(s, 200, "{v}");
    for p in players {
        assert!(p.await.unwrap(), "a player was never refused");
    }
    let list = revoked_list(&f).await;
    let granted = granted.lock().unwrap().clone();
    let missing: Vec<_> = granted.iter().map(|c| serial_of(&f, c)).filter(|s| !list.contains(s)).collect();
    assert!(missing.is_empty(), "{} of {} certificates granted are not revoked", missing.len(), granted.len());
    assert_eq!(v["certificates"].as_u64().unwrap() as usize, granted.len(), "a grant slipped past the sweep: {v}");
    f.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_checks_every_segment_length_one_publish_of_a_title_wins_and_the_list_is_built_once() {
    use tranzcast_proto::BlobAddress;
    use tranzcast_proto::manifest::Manifest;
    let f = start().await;
    let title = TitleId::new("uploaded").unwrap();
    let key = TitleKey::generate();
    let seg = 64 << 10;
    let upload = |bytes: Vec<u8>| {
        let (http, base) = (f.http.clone(), f.base.clone());
        async move {
            let a = BlobAddress::of(&bytes);
            let r = http.put(format!("{base}/v1/blobs/{}", a.to_hex())).bearer_auth(TOKEN).body(bytes).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 201);
            a
        }
    };
    let full0 = upload(keys::seal(&key, &title, FrameKind::Media, 0, &vec![1u8; seg]).unwrap()).await;
    // Segment 1 holds 1,000 bytes where the manifest says 64 KiB (padded):
    // an edge would slice past its end.
    let short1 = upload(keys::seal(&key, &title, FrameKind::Media, 1, &[2u8; 1000]).unwrap()).await;
    let full1 = upload(keys::seal(&key, &title, FrameKind::Media, 1, &vec![2u8; seg]).unwrap()).await;
    let manifest = |segments: Vec<BlobAddress>| {
        let m = Manifest {
            title: title.clone(),
            version: 1,
            media_type: "video/mp4".into(),
            running_time_ms: 0,
            plaintext_len: seg as u64 + 1000,
            segment_size: seg as u32,
            created: 0,
            chapters: Vec::new(),
            segments,
        };
        let signed = m.sign(&ed25519_dalek::SigningKey::from_bytes(&[3; 32])).unwrap();
        json!({"title": "uploaded", "key": hex::encode(key.expose()), "manifest": URL_SAFE_NO_PAD.encode(signed)})
    };
    let (s, v) = f.post("/v1/titles", manifest(vec![full0, short1]), true).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("bad_segment")), "{v}");
    assert!(v["error"]["reason"].as_str().unwrap().contains("segment 1 holds 1000 bytes"), "{v}");

    // The public title list: built once for any number of readers within
    // its TTL (it decodes every manifest), again right after a publish here.
    let list = || {
        let (http, base) = (f.http.clone(), f.base.clone());
        async move { http.get(format!("{base}/v1/titles")).send().await.unwrap().text().await.unwrap() }
    };
    let builds_before = title_list_builds(&f).await;
    let built_at = std::time::Instant::now();
    let first = list().await;
    assert!(first.contains("\"titles\"") && !first.contains("uploaded"), "{first}");
    let lists = futures::future::join_all((0..20).map(|_| list())).await;
    assert!(lists.iter().all(|l| l == &first), "{lists:?}");
    // (Only while the first list is fresh: a machine slow enough to take
    // the TTL over these twenty would rightly build again.)
    if built_at.elapsed() < std::time::Duration::from_millis(1500) {
        assert_eq!(title_list_builds(&f).await - builds_before, 1, "twenty-one readers, one build");
    }

    // Eight publishes of one title at once: one commits, the others are told it exists.
    let body = manifest(vec![full0, full1]);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = if i % 2 == 0 { f.http.clone() } else { https_h1(f.origin.ca_pem().as_bytes()).unwrap() };
        let (url, body) = (format!("{}/v1/titles", f.base), body.clone());
        tasks.push(tokio::spawn(async move { client.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap().status().as_u16() }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    let fresh = built_at.elapsed() < std::time::Duration::from_millis(1500);
    let after: Value = serde_json::from_str(&list().await).unwrap();
    assert!(after["titles"].as_array().unwrap().iter().any(|t| t["title"] == "uploaded"), "listed at once after its publish: {after}");
    if fresh {
        // Listed although the list built before the publish was still fresh:
        // the publish cleared it.
        assert_eq!(title_list_builds(&f).await - builds_before, 2);
    }
    f.origin.shutdown().await;
}

async fn title_list_builds(f: &Fixture) -> u64 {
    let text = f.http.get(format!("{}/metrics", f.base)).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix("origin_title_list_builds_total ")).map_or(0, |v| v.trim().parse().unwrap())
}

async fn validations(f: &Fixture, result: &str) -> u64 {
    let text = f.http.get(format!("{}/metrics", f.base)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("origin_validations_total{{result=\"{result}\"}} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A play with an idempotency key (the smart client sends one per attempt).
async fn play_keyed(f: &Fixture, ticket: &str, key: &str) -> (u16, Value) {
    let r =
        f.http.post(format!("{}/v1/play", f.base)).header("idempotency-key", key).json(&json!({"ticket": ticket})).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// An order with an idempotency key: its status, whether the answer is a
/// replay of an earlier one, and its body.
async fn order_keyed(client: &reqwest::Client, base: &str, body: &Value, key: &str) -> (u16, bool, Value) {
    let r = client.post(format!("{base}/v1/orders")).bearer_auth(TOKEN).header("idempotency-key", key).json(body).send().await.unwrap();
    let replayed = r.headers().contains_key("idempotent-replayed");
    (r.status().as_u16(), replayed, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_loses_no_play_and_an_order_is_made_once_per_key() {
    let f = start().await;
    let c = f.customer().await;
    // A 3-play rental: the first play's answer is "lost"; the retry (same
    // key) gets it again, byte for byte, and no play is counted.
    let t0 = f.order(rental(c, 3)).await;
    let (s, first) = play_keyed(&f, &t0, "attempt-1").await;
    assert_eq!(s, 200, "{first}");
    let granted = validations(&f, "granted").await;
    let (s, again) = play_keyed(&f, &t0, "attempt-1").await;
    assert_eq!(s, 200, "{again}");
    assert_eq!((&again["certificate"], &again["ticket"]), (&first["certificate"], &first["ticket"]));
    assert_eq!(validations(&f, "granted").await, granted, "a retry counted a play");
    assert_eq!(validations(&f, "granted_again").await, 1);
    // Another attempt (another key, or none) is a second play of a used ticket.
    refused(&play_keyed(&f, &t0, "attempt-2").await, "replaced");
    refused(&f.play(&t0).await, "replaced");
    // Once the replacement is played, the old ticket is just replaced.
    let t1 = first["ticket"].as_str().unwrap().to_string();
    let (s, second) = play_keyed(&f, &t1, "attempt-3").await;
    assert_eq!(s, 200, "{second}");
    assert_ne!(second["certificate"], first["certificate"]);
    refused(&play_keyed(&f, &t0, "attempt-1").await, "replaced");
    // The last play of a rental: its certificate given again, then nothing more.
    let t2 = second["ticket"].as_str().unwrap().to_string();
    let (s, last) = play_keyed(&f, &t2, "attempt-4").await;
    assert_eq!((s, last["ticket"].is_null()), (200, true), "{last}");
    let (s, last_again) = play_keyed(&f, &t2, "attempt-4").await;
    assert_eq!((s, &last_again["certificate"]), (200, &last["certificate"]), "{last_again}");
    refused(&f.play(&t2).await, "spent");

    // Orders with an idempotency key: eight at once make one order.
    let body = rental(c, 2);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = if i % 2 == 0 { f.http.clone() } else { https_h1(f.origin.ca_pem().as_bytes()).unwrap() };
        let (base, body) = (f.base.clone(), body.clone());
        tasks.push(tokio::spawn(async move { order_keyed(&client, &base, &body, "order-7f3a").await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(answers.iter().all(|(s, _, v)| *s == 201 && v == &answers[0].2), "{answers:?}");
    assert_eq!(answers.iter().filter(|(_, replayed, _)| !replayed).count(), 1, "{answers:?}");
    // The same key for another request is refused; no key, a new order each time.
    let (s, _, v) = order_keyed(&f.http, &f.base, &json!({"customer": c, "title": "film", "kind": "buy"}), "order-7f3a").await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("idempotency_key_reused")), "{v}");
    let (s, _, v) = order_keyed(&f.http, &f.base, &body, "bad key!").await;
    assert_eq!(s, 400, "{v}");
    let (_, a) = f.post("/v1/orders", body.clone(), true).await;
    let (_, b) = f.post("/v1/orders", body, true).await;
    assert_ne!(a["order"], b["order"]);
    f.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_window_is_refused() {
    let f = start_with(&["play_retry_window=1s"]).await;
    let (_, t) = f.renter(2).await;
    assert_eq!(play_keyed(&f, &t, "k").await.0, 200);
    assert_eq!(play_keyed(&f, &t, "k").await.0, 200, "within the window");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    refused(&play_keyed(&f, &t, "k").await, "replaced");
    f.origin.shutdown().await;
}

/// `cert` with one character in its middle changed (the last one may carry
/// only padding bits, and may already be the one chosen).
fn tampered(cert: &str) -> String {
    let mid = cert.len() / 2;
    let c = if &cert[mid..=mid] == "A" { "B" } else { "A" };
    format!("{}{c}{}", &cert[..mid], &cert[mid + 1..])
}
