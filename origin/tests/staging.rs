//! Staging: a node that joins after three titles were ingested ends up
//! holding all their blobs, verified, and no key. Real origin and node
//! processes' libraries on 127.0.0.1 over TLS.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_ingest::{IngestOptions, ingest};
use tranzcast_origin::Origin;
use tranzcast_proto::manifest::SignedManifest;
use tranzcast_proto::{BlobAddress, TitleId};
use tranzcast_store::{BlobStore, StoreOptions};
use tranzcast_testkit::{CLUSTER, EdgeSpec, member_credential, origin_config, origin_config_with};

fn ingest_titles(dir: &Path, titles: &[(&str, usize)]) {
    let store = BlobStore::open(dir, StoreOptions::default()).unwrap();
    for (t, len) in titles {
        let input = dir.join(format!("../{t}.bin"));
        std::fs::write(&input, (0..*len).map(|i| (i * 13 + t.len()) as u8).collect::<Vec<_>>()).unwrap();
        let mut o = IngestOptions::new(TitleId::new(t).unwrap());
        o.segment_size = Some(64 << 10);
        ingest(&store, &input, &o).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_node_gets_every_title_verified_and_no_keys() {
    let dir = tempfile::tempdir().unwrap();
    let odata = dir.path().join("origin");
    let titles = [("alpha", 300_000), ("beta", 1_000_000), ("gamma", 65_536)];
    ingest_titles(&odata, &titles);
    let ocfg = origin_config(&odata, 0);
    let origin = Origin::start(ocfg).await.unwrap();
    let origin_url = format!("https://localhost:{}", origin.https_addr().port());

    // A node with the wrong token cannot join.
    let ndata = dir.path().join("node-1");
    let node_spec = EdgeSpec::new("node", "node-1", &ndata, origin.https_addr().port());
    let ncfg = |credential: &str| node_spec.clone().set(&format!("member_credential={credential}")).config();
    // A node whose credential was minted with another key cannot join.
    let good = member_credential("node-1", "node");
    let tls = EdgeTls::from_config(&ncfg(&good), &origin.ca_dir()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let forged =
        tranzcast_proto::member::issue(b"another-member-key-0123456789-0123", "node-1", tranzcast_proto::member::MemberRole::Node, now)
            .unwrap();
    let err = EdgeServer::start(ncfg(&forged), tls.clone()).await.unwrap_err();
    assert!(err.to_string().contains("join refused") && err.to_string().contains("not issued by this origin"), "{err}");

    let node = EdgeServer::start(ncfg(&good), tls.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = origin.staging_status();
        let done = status.get("node-1").map(|t| t.values().filter(|p| p.complete).count()).unwrap_or(0);
        if done == titles.len() {
            break;
        }
        assert!(Instant::now() < deadline, "staging did not finish: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The node refuses bytes that do not match their address, and unauthenticated pushes.
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let base = format!("https://localhost:{}", node.https_addr().port());
    let liar = BlobAddress::of(b"the real bytes");
    let r = http.put(format!("{base}/v1/blobs/{liar}")).bearer_auth(CLUSTER).body("other bytes").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let r = http.put(format!("{base}/v1/blobs/{liar}")).body("the real bytes").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Its pulse shows every segment of a title held.
    let v: serde_json::Value = http.get(format!("{base}/v1/pulse?title=beta")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["segments"]["held"], v["segments"]["total"], "{v}");
    assert_eq!(v["role"], "node");
    let status: serde_json::Value = http.get(format!("{origin_url}/v1/staging")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["nodes"]["node-1"]["gamma"]["complete"], true, "{status}");

    node.shutdown().await;
    origin.shutdown().await;

    // Open the node's store: every blob verifies, every title is whole, no key is there.
    let ostore = BlobStore::open(&odata, StoreOptions::default()).unwrap();
    let nstore = BlobStore::open(&ndata, StoreOptions::default()).unwrap();
    for (addr, _) in nstore.list().unwrap() {
        assert!(nstore.get(&addr).unwrap().is_some());
    }
    let key = tranzcast_ingest::origin_signing_key(&ostore).unwrap().verifying_key();
    for (t, _) in titles {
        let t = TitleId::new(t).unwrap();
        let maddr = nstore.title_manifest(&t).unwrap().unwrap();
        assert_eq!(Some(maddr), ostore.title_manifest(&t).unwrap());
        let m = SignedManifest::decode(&nstore.get(&maddr).unwrap().unwrap()).unwrap();
        for s in &m.verify(&key).unwrap().segments {
            assert!(nstore.get(s).unwrap().is_some(), "{t}: segment {s} missing");
        }
        assert!(nstore.title_secret(&t).unwrap().is_none(), "a node holds a key");
    }
}

/// A node that hangs mid-staging (connections open and silent) holds its
/// own staging only: a node that joins after it is staged in seconds, well
/// before the hung node's calls time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_does_not_stall_staging_for_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let odata = dir.path().join("origin");
    ingest_titles(&odata, &[("alpha", 3 << 20)]);
    let ocfg = origin_config_with(&odata, 0, &["member_timeout=120s".into()]);
    let origin = Origin::start(ocfg).await.unwrap();
    let ncfg = |name: &str| EdgeSpec::new("node", name, &dir.path().join(name), origin.https_addr().port()).config();
    let tls = EdgeTls::from_config(&ncfg("hung"), &origin.ca_dir()).unwrap();
    let hung = EdgeServer::start(ncfg("hung"), tls.clone()).await.unwrap();
    hung.hang();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let complete = |name: &str| origin.staging_status().get(name).and_then(|t| t.get("alpha")).is_some_and(|p| p.complete);
    assert!(!complete("hung"), "the hung node was staged before it hung: nothing tested");

    let t0 = Instant::now();
    let node = EdgeServer::start(ncfg("node-2"), tls.clone()).await.unwrap();
    while !complete("node-2") {
        assert!(t0.elapsed() < Duration::from_secs(8), "staging stalled behind the hung node: {:?}", origin.staging_status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!complete("hung"));
    node.shutdown().await;
    hung.kill().await;
    origin.shutdown().await;
}
