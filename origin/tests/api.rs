//! The origin over real HTTP/1.1, HTTP/2 and HTTP/3 with TLS on 127.0.0.1:
//! ticket lifecycle, forgery, revocation, concurrency, and the split key.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde_json::{Value, json};
use tranzcast_config::{Layers, OriginConfig};
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
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("origin");
    let plain = ingest_title(&data, "film", 300_000);
    let cfg: OriginConfig = Layers::new("origin")
        .overrides(&[
            format!("data_dir={}", data.display()),
            format!("storefront_token={TOKEN}"),
            "cluster_token=test-cluster-token-0123456789".into(),
            "listen.https=127.0.0.1:0".into(),
            "certificate_margin=60s".into(),
        ])
        .unwrap()
        .build()
        .unwrap();
    let origin = Origin::start(cfg).await.unwrap();
    let http = https(origin.ca_pem().as_bytes()).unwrap();
    let base = format!("https://localhost:{}", origin.https_addr().port());
    Fixture { _dir: dir, origin, base, http, plain }
}

impl Fixture {
    async fn post(&self, path: &str, body: Value, auth: bool) -> (u16, Value) {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(&body);
        if auth {
            r = r.bearer_auth(TOKEN);
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

    async fn play(&self, ticket: &str) -> (u16, Value) {
        self.post("/v1/play", json!({"ticket": ticket}), false).await
    }
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
    let rev = f.order(json!({"customer": c, "title": "film", "kind": "rent", "plays": 2, "hours": 1})).await;
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
    let c = f.customer().await;
    let t = f.order(json!({"customer": c, "title": "film", "kind": "rent", "plays": 5, "hours": 1})).await;
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
    let r = f
        .http
        .post(format!("{}/v1/customers", f.base))
        .bearer_auth("wrong-token-wrong-token")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (s, v) = f.post("/v1/orders", json!({"customer": c, "title": "film", "kind": "rent", "plays": 0, "hours": 1}), true).await;
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
    let c = f.customer().await;
    let t = f.order(json!({"customer": c, "title": "film", "kind": "rent", "plays": 1, "hours": 1})).await;
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
    let c = f.customer().await;
    let t = f.order(json!({"customer": c, "title": "film", "kind": "rent", "plays": 2, "hours": 1})).await;
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
    for (i, a) in m.segments.iter().enumerate() {
        let r = f.http.get(format!("{}/v1/blobs/{a}", f.base)).send().await.unwrap();
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
