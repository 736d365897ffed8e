//! Pre-casting: in the off-peak window the origin pushes the most popular
//! title's first segments to a registered peer, and nothing else.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_ingest::{IngestOptions, ingest};
use tranzcast_origin::Origin;
use tranzcast_proto::TitleId;
use tranzcast_store::{BlobStore, StoreOptions};
use tranzcast_testkit::{EdgeSpec, STOREFRONT, origin_config_with, precast_now};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popular_title_first_segments_reach_the_peer_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let odata = dir.path().join("origin");
    {
        let store = BlobStore::open(&odata, StoreOptions::default()).unwrap();
        for t in ["hot", "cold"] {
            let input = dir.path().join(t);
            std::fs::write(&input, vec![t.len() as u8; 5 * 65536]).unwrap();
            let mut o = IngestOptions::new(TitleId::new(t).unwrap());
            o.segment_size = Some(65536);
            ingest(&store, &input, &o).unwrap();
        }
    }
    // A window around now: the first 2 segments of the most popular title.
    let mut sets = precast_now(2);
    sets.push("precast.titles=1".into());
    let origin = Origin::start(origin_config_with(&odata, 0, &sets)).await.unwrap();
    let base = format!("https://localhost:{}", origin.https_addr().port());
    let http = tranzcast_net::client::https(origin.ca_pem().as_bytes()).unwrap();
    let post = |p: &str, b: serde_json::Value| http.post(format!("{base}{p}")).bearer_auth(STOREFRONT).json(&b).send();
    let c: serde_json::Value = post("/v1/customers", json!({"name": "Lin"})).await.unwrap().json().await.unwrap();
    let mut tickets = Vec::new();
    for t in ["hot", "hot", "cold"] {
        let o: serde_json::Value =
            post("/v1/orders", json!({"customer": c["customer"], "title": t, "kind": "buy"})).await.unwrap().json().await.unwrap();
        tickets.push(o["ticket"].as_str().unwrap().to_string());
    }
    let play: serde_json::Value =
        http.post(format!("{base}/v1/play")).json(&json!({"ticket": tickets[0]})).send().await.unwrap().json().await.unwrap();
    let cert = play["certificate"].as_str().unwrap().to_string();

    let pdata = dir.path().join("peer");
    let pcfg =
        |cert: &str| EdgeSpec::new("peer", "peer-1", &pdata, origin.https_addr().port()).set(&format!("certificate={cert}")).config();
    let tls = EdgeTls::from_config(&pcfg(&cert), &origin.ca_dir()).unwrap();
    // A peer without a valid certificate is refused.
    let err = EdgeServer::start(pcfg("not-a-certificate"), tls.clone()).await.unwrap_err();
    assert!(err.to_string().contains("join refused"), "{err}");
    // The cluster listing never shows push tokens.
    let peer = EdgeServer::start(pcfg(&cert), tls).await.unwrap();
    let listing = http.get(format!("{base}/v1/cluster")).send().await.unwrap().text().await.unwrap();
    assert!(listing.contains("peer-1") && !listing.contains("push_token"), "{listing}");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = origin.precast_status();
        if s.get("peer-1").and_then(|t| t.get("hot")).is_some_and(|p| p.complete) {
            break;
        }
        assert!(Instant::now() < deadline, "pre-cast did not reach the peer: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!origin.precast_status()["peer-1"].contains_key("cold"), "only the most popular title is pre-cast");
    peer.shutdown().await;
    origin.shutdown().await;

    let ostore = BlobStore::open(&odata, StoreOptions::default()).unwrap();
    let pstore = BlobStore::open(&pdata, StoreOptions::default()).unwrap();
    let hot = ostore.title_manifest(&TitleId::new("hot").unwrap()).unwrap().unwrap();
    let m = tranzcast_proto::manifest::SignedManifest::decode(&ostore.get(&hot).unwrap().unwrap()).unwrap().manifest;
    assert!(pstore.get(&hot).unwrap().is_some(), "manifest pre-cast");
    assert!(pstore.get(&m.segments[0]).unwrap().is_some() && pstore.get(&m.segments[1]).unwrap().is_some());
    assert!(pstore.get(&m.segments[2]).unwrap().is_none(), "only the first 2 segments");
    assert_eq!(pstore.list().unwrap().len(), 3, "manifest and two segments, nothing else");
}
