//! Playback URLs for standard players: the origin validates a ticket in
//! "url" mode and hands out URLs on edges; an edge answers them with the
//! title's plaintext and full RFC 9110 ranges over real HTTP/1.1, HTTP/2 and
//! HTTP/3, fetching ciphertext through its tiers and decrypting in memory.
//! Forged, expired, revoked, wrongly bound and other-edge tokens get 403 with
//! a reason; the edges' data directories hold no plaintext and no key.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_ingest::{IngestOptions, ingest};
use tranzcast_net::client::{H3Client, https, https_h1};
use tranzcast_origin::Origin;
use tranzcast_proto::TitleId;
use tranzcast_store::{BlobStore, StoreOptions};
use tranzcast_testkit::*;

const SEG: usize = 256 << 10;

async fn play_urls(http: &reqwest::Client, origin: &str, ticket: &str, extra: serde_json::Value) -> (u16, serde_json::Value) {
    let mut body = serde_json::json!({"ticket": ticket, "mode": "url"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = http.post(format!("{origin}/v1/play")).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn url_on(v: &serde_json::Value, edge: &str) -> String {
    v["urls"].as_array().unwrap().iter().find(|u| u["edge"] == edge).unwrap()["url"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_urls_serve_plaintext_ranges_from_edges_that_keep_only_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    // A title whose last segment is short: 5 segments of 256 KiB and 12345 bytes.
    let plain: Vec<u8> = (0..5 * SEG + 12_345).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8).collect();
    let input = dir.path().join("film.bin");
    std::fs::write(&input, &plain).unwrap();
    let title_key = {
        let store = BlobStore::open(&dir.path().join("origin"), StoreOptions::default()).unwrap();
        let mut o = IngestOptions::new(TitleId::new("film").unwrap());
        o.segment_size = Some(SEG as u32);
        ingest(&store, &input, &o).unwrap();
        store.title_secret(&TitleId::new("film").unwrap()).unwrap().unwrap()
    };
    let origin = Origin::start(origin_config(&dir.path().join("origin"), 0)).await.unwrap();
    let op = origin.https_addr().port();
    let o = format!("https://localhost:{op}");
    let node_cfg = EdgeSpec::new("node", "node-1", &dir.path().join("node-1"), op).config();
    let tls = EdgeTls::from_config(&node_cfg, &origin.ca_dir()).unwrap();
    let node = EdgeServer::start(node_cfg, tls.clone()).await.unwrap();
    wait_staged(&origin, &["node-1"]).await;
    let parent = format!("https://localhost:{}", node.https_addr().port());
    let mut edges = Vec::new();
    for name in ["edge-1", "edge-2"] {
        let c = EdgeSpec::new("edge", name, &dir.path().join(name), op).parents(std::slice::from_ref(&parent)).config();
        edges.push(EdgeServer::start(c, tls.clone()).await.unwrap());
    }
    let ca = tls.ca_pem.as_bytes();
    let http = https(ca).unwrap();
    let base = |e: &EdgeServer| format!("https://localhost:{}", e.https_addr().port());

    // A 3-play rental in url mode: URLs on both edges, plays counted, the replacement ticket handed back.
    let (ticket, _) = rent(&http, &o, "film", 3).await;
    let (s, v) = play_urls(&http, &o, &ticket, serde_json::json!({"urls": 2})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["urls"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["certificate"].is_null(), "url mode hands out no key part: {v}");
    let url1 = url_on(&v, "edge-1");
    let url2 = url_on(&v, "edge-2");
    assert!(url1.ends_with("/film.bin") && url1.starts_with(&base(&edges[0])), "{url1}");
    let (s, again) = play_urls(&http, &o, &ticket, serde_json::json!({})).await;
    assert_eq!((s, again["error"]["code"].as_str()), (403, Some("replaced")), "{again}");
    let next = v["ticket"].as_str().unwrap().to_string();

    // A seek into the middle of a cold edge costs one segment fetch before the first byte.
    let before = metric(&http, &base(&edges[1]), "edge_upstream_fetches_total").await;
    let mid = 3 * SEG + 100;
    let r = http.get(&url2).header("range", format!("bytes={mid}-{}", mid + 999)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &plain[mid..mid + 1000]);
    assert_eq!(metric(&http, &base(&edges[1]), "edge_upstream_fetches_total").await - before, 1);

    // Every range and conditional case, byte-exact, over h1, h2 and h3.
    let len = plain.len();
    let port = edges[0].https_addr().port();
    let clients = [
        ("h1", Client::H1(https_h1(ca).unwrap())),
        ("h2", Client::H2(https(ca).unwrap())),
        ("h3", Client::H3(H3Client::connect(SocketAddr::from(([127, 0, 0, 1], port)), "localhost", ca).await.unwrap())),
    ];
    let (_, hd, _) = clients[0].1.get("HEAD", &url1, &[]).await;
    let etag = h(&hd, "etag").to_string();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    for (name, c) in &clients {
        let (s, hd, b) = c.get("GET", &url1, &[]).await;
        assert_eq!((s, b.len()), (200, len), "{name}");
        assert!(b[..] == plain[..], "{name}: whole title");
        assert_eq!(h(&hd, "content-type"), "application/octet-stream", "{name}");
        assert_eq!(h(&hd, "accept-ranges"), "bytes");
        assert_eq!(h(&hd, "etag"), etag);
        if *name != "h3" {
            assert_eq!(h(&hd, "alt-svc"), format!("h3=\":{port}\"; ma=86400"), "{name}: Alt-Svc on TCP");
        }
        let singles = [
            ("bytes=0-99", 0, 100),
            (&format!("bytes={}-{}", SEG - 10, SEG + 9), SEG - 10, SEG + 10),
            (&format!("bytes={}-{}", SEG - 1, 3 * SEG), SEG - 1, 3 * SEG + 1),
            ("bytes=-100", len - 100, len),
            (&format!("bytes={}-", 4 * SEG + 7), 4 * SEG + 7, len),
            ("bytes=5-5", 5, 6),
            ("bytes=1000-99999999", 1000, len),
        ];
        let multi = ("bytes=0-9, 300000-300009, -5", [(0, 10), (300_000, 300_010), (len - 5, len)]);
        check_ranges(c, name, &url1, &plain, &etag, &singles, multi).await;
    }

    // Refusals: 403 with a reason that names no key.
    let refused = |url: String, code: &'static str| {
        let http = http.clone();
        async move {
            let r = http.get(&url).header("range", "bytes=0-9").send().await.unwrap();
            let s = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_eq!(s, 403, "{url}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], code, "{body}");
            assert!(body.len() < 300 && !body.contains(&hex::encode(title_key)), "{body}");
        }
    };
    // Another edge's URL: it cannot unseal the key.
    refused(url2.replace(&base(&edges[1]), &base(&edges[0])), "wrong_edge").await;
    // Any altered character: forged or malformed.
    let at = url1.find("/v1/play/").unwrap() + 9 + 100;
    let mut forged = url1.clone().into_bytes();
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let r = http.get(String::from_utf8(forged).unwrap()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http.get(url1.replace("/v1/play/", "/v1/play/x")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Bound to another address.
    let (s, v) = play_urls(&http, &o, &next, serde_json::json!({"bind": "10.9.9.9", "urls": 1})).await;
    assert_eq!(s, 200, "{v}");
    refused(v["urls"][0]["url"].as_str().unwrap().to_string(), "wrong_client").await;
    let next = v["ticket"].as_str().unwrap().to_string();
    // Bound to us, short-lived: works, then expires.
    let (s, v) = play_urls(&http, &o, &next, serde_json::json!({"bind": true, "urls": 1, "lifetime_s": 2})).await;
    assert_eq!(s, 200, "{v}");
    let short = v["urls"][0]["url"].as_str().unwrap().to_string();
    let r = http.get(&short).header("range", "bytes=0-9").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert!(r.bytes().await.unwrap()[..] == plain[..10]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    refused(short, "expired").await;
    // Revoked: the session (the certificate's serial) is revoked at the origin; edges pull it.
    let (bought, _) = rent(&http, &o, "film", 1).await;
    let (_, v) = play_urls(&http, &o, &bought, serde_json::json!({"urls": 1})).await;
    let url = v["urls"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(http.get(&url).header("range", "bytes=0-9").send().await.unwrap().status().as_u16(), 206);
    let r = http
        .post(format!("{o}/v1/revoke"))
        .bearer_auth("test-storefront-token-0123456789")
        .json(&serde_json::json!({"serial": v["session"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let edge_of = v["urls"][0]["edge"].as_str().unwrap().to_string();
    let e = if edge_of == "edge-1" { &edges[0] } else { &edges[1] };
    eventually(5, "revocation reaches the edge", || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(&url).send().await.unwrap().status().as_u16() == 403 }
    })
    .await;
    refused(url, "revoked").await;
    assert!(metric(&http, &base(e), "edge_playback_refused_total").await >= 1);
    assert!(metric(&http, &base(&edges[0]), "edge_playback_requests_total").await > 30);

    // No plaintext and no key at rest on the edges (nor on the node).
    for e in edges {
        e.shutdown().await;
    }
    node.shutdown().await;
    origin.shutdown().await;
    let probes: Vec<&[u8]> = (0..8).map(|k| &plain[k * 600_000 % (len - 32)..][..32]).collect();
    for d in ["edge-1", "edge-2", "node-1"] {
        for f in walk(&dir.path().join(d)) {
            let bytes = std::fs::read(&f).unwrap();
            for p in &probes {
                assert!(!bytes.windows(32).any(|w| w == *p), "plaintext in {}", f.display());
            }
            assert!(!bytes.windows(32).any(|w| w == title_key), "title key in {}", f.display());
        }
    }
}
