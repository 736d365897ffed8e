//! The miss path with real servers on 127.0.0.1: 500 concurrent requests for
//! one cold blob reach the parent once; failover when a node or the origin
//! is down; a parent that lies is caught and nothing bad is stored.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_origin::Origin;
use tranzcast_proto::BlobAddress;
use tranzcast_store::{BlobStore, StoreOptions};

use tranzcast_testkit::*;

/// A range of a blob from the server at `base`, asked with the certificate header `cert`.
async fn ranged(http: &reqwest::Client, base: &str, blob: &BlobAddress, range: &str, cert: &str) -> reqwest::Response {
    http.get(format!("{base}/v1/blobs/{blob}")).header("range", range).header("authorization", cert).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_and_failover_across_tiers() {
    let TestCluster { dir, origin, oport, tls, segments: segs, blobs: bytes, .. } = TestCluster::start(3).await;
    // A rate limit that can be lowered later, to kill the node mid-transfer.
    let node =
        start_staged(&origin, &tls, &EdgeSpec::new("node", "node-1", &dir.path().join("n1"), oport).sets(&["rate_limit=1GiB"])).await;
    let nport = node.https_addr().port();
    let node_url = format!("https://localhost:{nport}");
    // 500 requests at once from one address, a hundred of them over
    // HTTP/1.1 (a connection each): past the default connection rate.
    let edge = EdgeServer::start(
        EdgeSpec::new("edge", "edge-1", &dir.path().join("e1"), oport)
            .parents(std::slice::from_ref(&node_url))
            .sets(&["limits.connection_rate_per_ip=1000"])
            .config(),
        tls.clone(),
    )
    .await
    .unwrap();
    let edge_url = format!("https://localhost:{}", edge.https_addr().port());
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let h1 = tranzcast_net::client::https_h1(tls.ca_pem.as_bytes()).unwrap();
    let origin_url = format!("https://localhost:{oport}");
    let (cert, _) = certificate(&http, &origin_url, "film").await;

    // A forged certificate for a cold blob is refused before any upstream fetch.
    let before_forged = metric(&http, &node_url, "edge_blob_requests_total").await;
    let mut forged = cert.clone().into_bytes();
    let at = forged.len() - 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let r = http
        .get(format!("{edge_url}/v1/blobs/{}", segs[1]))
        .header("authorization", String::from_utf8(forged).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(metric(&http, &node_url, "edge_blob_requests_total").await, before_forged, "a forged certificate caused a fetch");

    // 500 concurrent requests for one cold blob: one upstream fetch, all
    // byte-exact. A few ask for its outboard (clients verifying per group):
    // they join the same flight.
    let before = metric(&http, &node_url, "edge_blob_requests_total").await;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let c = if i % 5 == 0 { h1.clone() } else { http.clone() };
        let what = if i % 50 == 7 { "outboards" } else { "blobs" };
        let (url, cert) = (format!("{edge_url}/v1/{what}/{}", segs[0]), cert.clone());
        tasks.push(tokio::spawn(async move {
            let r = c.get(url).header("authorization", cert).send().await.unwrap();
            (what, r.status().as_u16(), r.bytes().await.unwrap())
        }));
    }
    for t in tasks {
        let (what, s, b) = t.await.unwrap();
        assert_eq!(s, 200, "{what}");
        if what == "outboards" {
            let ob = tranzcast_proto::outboard::Outboard::decode(&b).unwrap();
            ob.verify_root(&segs[0]).unwrap();
        } else {
            assert!(b[..] == bytes[0][..], "a waiter got different bytes");
        }
    }
    assert_eq!(metric(&http, &node_url, "edge_blob_requests_total").await - before, 1, "exactly one request reached the parent");
    assert_eq!(metric(&http, &edge_url, "edge_upstream_fetches_total").await, 1);
    // A range on a blob the edge now holds is a hit.
    let r = ranged(&http, &edge_url, &segs[0], "bytes=100-199", &cert).await;
    assert_eq!(r.bytes().await.unwrap()[..], bytes[0][100..200]);

    // The edge's pulse: 490 blob answers' bytes out, nothing in the air; the
    // manifest it fetched on the first request gives its bitmap (segment 0
    // only); the node, which holds the set, reports every segment.
    eventually(10, "the edge's bitmap", || async {
        let p: serde_json::Value = http.get(format!("{edge_url}/v1/pulse?title=film")).send().await.unwrap().json().await.unwrap();
        p["segments"]["bitmap"] == "80" && p["segments"]["held"] == 1 && p["segments"]["total"] == 3
    })
    .await;
    let pulse: serde_json::Value = http.get(format!("{edge_url}/v1/pulse?title=film")).send().await.unwrap().json().await.unwrap();
    assert_eq!(pulse["role"], "edge");
    assert!(pulse["load"]["bytes_out_total"].as_u64().unwrap() >= 490 * bytes[0].len() as u64, "{pulse}");
    assert!(pulse["load"]["bytes_out_per_s"].as_f64().is_some(), "{pulse}");
    assert_eq!((pulse["load"]["queued"].as_u64(), pulse["load"]["in_flight"].as_i64()), (Some(0), Some(0)), "{pulse}");
    let pulse: serde_json::Value = http.get(format!("{node_url}/v1/pulse?title=film")).send().await.unwrap().json().await.unwrap();
    assert_eq!((pulse["segments"]["held"].as_u64(), pulse["segments"]["bitmap"].as_str()), (Some(3), Some("e0")), "{pulse}");

    // Access (segment 0 is held now): no credentials, another title's certificate, a forged one.
    let url0 = format!("{edge_url}/v1/blobs/{}", segs[0]);
    let r = http.get(&url0).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (other, _) = certificate(&http, &origin_url, "other").await;
    let r = http.get(&url0).header("authorization", &other).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("wrong_title"));
    let mut forged = cert.clone().into_bytes();
    let at = forged.len() - 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let r = http.get(&url0).header("authorization", String::from_utf8(forged).unwrap()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("forged"));
    // Revoked at the origin: the edge learns it within a heartbeat.
    let (revokee, serial) = certificate(&http, &origin_url, "film").await;
    let r = http.get(format!("{edge_url}/v1/blobs/{}", segs[0])).header("authorization", &revokee).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(OriginClient::new(&http, &origin_url).revoke_serial(&serial).await, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http.get(format!("{edge_url}/v1/blobs/{}", segs[0])).header("authorization", &revokee).send().await.unwrap();
        let (status, body) = (r.status().as_u16(), r.text().await.unwrap());
        if status == 403 && body.contains("revoked") {
            break;
        }
        assert!(Instant::now() < deadline, "revocation not applied: {status} {}", &body[..body.len().min(200)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The node crashes (killed, not drained) while it sends the edge a cold
    // blob at 1 MiB/s: the edge resumes at the origin from the last byte it
    // verified, and its client gets the whole blob.
    assert!(node.set_rate_limit(1 << 20));
    let fetch = {
        let (http, url, cert) = (http.clone(), format!("{edge_url}/v1/blobs/{}", segs[1]), cert.clone());
        tokio::spawn(async move {
            let r = http.get(url).header("authorization", cert).send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.in_flight() == 0 {
        assert!(Instant::now() < deadline, "the edge never asked the node");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_hand = node.in_flight();
    node.kill().await;
    let (status, body) = fetch.await.unwrap();
    assert!(in_hand > 0, "the kill did not land mid-transfer");
    assert_eq!(status, 200);
    assert!(body[..] == bytes[1][..], "the blob differs after the node's crash");
    let resumed = metric(&http, &edge_url, "edge_upstream_demoted_total").await;
    assert!(resumed >= 1, "the edge did not see the node fail mid-blob");

    // Node back (same port, same store), origin stopped: the node serves.
    let node =
        EdgeServer::start(EdgeSpec::new("node", "node-1", &dir.path().join("n1"), oport).port(nport).config(), tls.clone()).await.unwrap();
    origin.shutdown().await;
    let r = ranged(&http, &edge_url, &segs[2], "bytes=-1000", &cert).await;
    assert_eq!(r.status().as_u16(), 206);
    assert!(r.bytes().await.unwrap()[..] == bytes[2][bytes[2].len() - 1000..]);
    edge.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_parent_is_caught_and_nothing_bad_is_stored() {
    let TestCluster { dir, origin, oport, tls, segments: segs, blobs: bytes, .. } = TestCluster::start(3).await;
    let liar = EdgeServer::start(EdgeSpec::new("node", "liar", &dir.path().join("liar"), oport).corrupt(true).config(), tls.clone())
        .await
        .unwrap();
    wait_staged(&origin, &["liar"]).await;
    let liar_url = format!("https://localhost:{}", liar.https_addr().port());
    let edata = dir.path().join("e1");
    let edge = EdgeServer::start(EdgeSpec::new("edge", "edge-1", &edata, oport).parents(&[liar_url]).config(), tls.clone()).await.unwrap();
    let edge_url = format!("https://localhost:{}", edge.https_addr().port());
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let (cert, _) = certificate(&http, &format!("https://localhost:{oport}"), "film").await;

    let r = http.get(format!("{edge_url}/v1/blobs/{}", segs[0])).header("authorization", &cert).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.unwrap()[..] == bytes[0][..], "served bytes differ");
    assert!(metric(&http, &edge_url, "edge_upstream_demoted_total").await >= 1, "the liar was not demoted");
    edge.shutdown().await;
    liar.shutdown().await;
    origin.shutdown().await;
    let store = BlobStore::open(&edata, StoreOptions::default()).unwrap();
    // The segment, and the title's manifest (signed by the origin; fetched for pulses).
    let manifests: Vec<_> = store.titles().unwrap().into_iter().map(|(_, m)| m).collect();
    let blobs: Vec<_> = store.list().unwrap().into_iter().map(|(a, _)| a).filter(|a| !manifests.contains(a)).collect();
    assert_eq!(blobs, vec![segs[0]]);
    assert!(store.get(&segs[0]).unwrap().unwrap()[..] == bytes[0][..], "what the edge stored verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_one_title_cannot_make_an_edge_fetch_or_store_another() {
    use tranzcast_proto::TitleId;
    use tranzcast_proto::manifest::SignedManifest;
    let dir = tempfile::tempdir().unwrap();
    let (segs, bytes) = setup(dir.path());
    let others = {
        let store = BlobStore::open(&dir.path().join("origin"), StoreOptions::default()).unwrap();
        let m = store.title_manifest(&TitleId::new("other").unwrap()).unwrap().unwrap();
        let mut v = SignedManifest::decode(&store.get(&m).unwrap().unwrap()).unwrap().manifest.segments;
        v.push(m);
        v
    };
    let origin = Origin::start(origin_config(&dir.path().join("origin"), 0)).await.unwrap();
    let oport = origin.https_addr().port();
    let tls = EdgeTls::from_config(&EdgeSpec::new("node", "x", dir.path(), oport).config(), &origin.ca_dir()).unwrap();
    let node = start_staged(&origin, &tls, &EdgeSpec::new("node", "node-1", &dir.path().join("n1"), oport)).await;
    let node_url = url_of(&node);
    let edata = dir.path().join("e1");
    let edge =
        EdgeServer::start(EdgeSpec::new("edge", "edge-1", &edata, oport).parents(std::slice::from_ref(&node_url)).config(), tls.clone())
            .await
            .unwrap();
    let edge_url = format!("https://localhost:{}", edge.https_addr().port());
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let (film, _) = certificate(&http, &format!("https://localhost:{oport}"), "film").await;

    // Every blob of "other" (segments and manifest), and their outboards,
    // asked with a certificate for "film": refused, and nothing goes upstream.
    let before = metric(&http, &node_url, "edge_blob_requests_total").await;
    for what in ["blobs", "outboards"] {
        for a in &others {
            let r = http.get(format!("{edge_url}/v1/{what}/{a}")).header("authorization", &film).send().await.unwrap();
            let (status, body) = (r.status().as_u16(), r.text().await.unwrap());
            assert_eq!(status, 403, "{what}/{a}: {body}");
            assert!(body.contains("wrong_title"), "{body}");
        }
    }
    assert_eq!(metric(&http, &node_url, "edge_blob_requests_total").await, before, "a refused request reached the parent");
    assert_eq!(metric(&http, &edge_url, "edge_upstream_fetches_total").await, 0, "a refused request started a fetch");
    // The check is the title's, not a blanket refusal: film's cold blob comes through.
    let r = http.get(format!("{edge_url}/v1/blobs/{}", segs[1])).header("authorization", &film).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.unwrap()[..] == bytes[1][..]);
    assert_eq!(metric(&http, &edge_url, "edge_upstream_fetches_total").await, 1);
    edge.shutdown().await;
    node.shutdown().await;
    origin.shutdown().await;
    let store = BlobStore::open(&edata, StoreOptions::default()).unwrap();
    for a in &others {
        assert!(store.get(a).unwrap().is_none(), "the edge stored {a} of another title");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_manifest_lookups_of_a_missing_title_go_upstream_once_not_once_each() {
    let cl = TestCluster::start(3).await;
    let (node, node_url) = cl.mirroring_node(&[]).await;
    let TestCluster { dir, origin, oport, tls, .. } = cl;
    let edge = EdgeServer::start(
        EdgeSpec::new("edge", "edge-1", &dir.path().join("e1"), oport).parents(std::slice::from_ref(&node_url)).config(),
        tls.clone(),
    )
    .await
    .unwrap();
    let edge_url = format!("https://localhost:{}", edge.https_addr().port());
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let label = "edge_http_requests_total{protocol=\"h2\",status=\"404\"}";
    let before = metric_f64(&http, &node_url, label).await.unwrap_or(0.0);
    // Sixty asks without credentials for a title no source has, thirty at
    // once then thirty more: the node is asked once.
    for _ in 0..2 {
        let asks = (0..30).map(|_| http.get(format!("{edge_url}/v1/titles/nope/manifest")).send());
        for r in futures_util::future::join_all(asks).await {
            assert_eq!(r.unwrap().status().as_u16(), 404);
        }
    }
    let after = metric_f64(&http, &node_url, label).await.unwrap_or(0.0);
    assert_eq!(after - before, 1.0, "the node was asked {} times", after - before);
    // A title that exists still comes through.
    let r = http.get(format!("{edge_url}/v1/titles/film/manifest")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The origin gone, the node's "not here" is not taken for "no such
    // title": an upstream error (502), kept for no one.
    origin.shutdown().await;
    for _ in 0..2 {
        let r = http.get(format!("{edge_url}/v1/titles/nope2/manifest")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 502);
    }
    edge.shutdown().await;
    node.shutdown().await;
}
