//! Master copies on a real S3-compatible server (SeaweedFS started by the
//! test on loopback): an origin copies every blob there; after it is gone,
//! another origin of the same cluster (one PostgreSQL), which never held
//! the title's blobs, restores them from the bucket (verified) and stages
//! the title to a node that joins only then; the node's blobs are
//! byte-identical to what was ingested. And a tampered master is refused.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tranzcast_origin::Origin;
use tranzcast_testkit::*;

const KEK: &str = "0d1c2a7d4e9b3f60a5d7c8e1b2f3a4d5c6e7f8091a2b3c4d5e6f708192a3b4c5";

/// A private PostgreSQL and S3 server, the settings of a cluster on them,
/// and its first origin (which ingested `film` and `other`, 3 segments each)
/// once every blob of both is in the bucket.
async fn origin_with_masters(db: &str) -> (Postgres, S3Server, tempfile::TempDir, Vec<String>, TestCluster) {
    let (pg, s3) = (Postgres::start(), S3Server::start(db).await);
    let url = pg.database(db);
    let kek_dir = tempfile::tempdir().unwrap();
    std::fs::write(kek_dir.path().join("kek"), KEK).unwrap();
    let mut sets = vec![
        "state.backend=postgres".to_string(),
        format!("state.url={url}"),
        format!("keys.kek_file={}", kek_dir.path().join("kek").display()),
    ];
    sets.extend(s3.master_settings());
    // The ingested titles go to the bucket (each round copies what is missing).
    let a = TestCluster::start_with(3, &sets).await;
    eventually(30, "every blob of both titles in the bucket", || {
        let n = a.origin.master_blobs();
        async move { n >= 2 * (3 + 1) }
    })
    .await;
    (pg, s3, kek_dir, sets, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_title_ingested_at_one_origin_is_staged_from_s3_by_another_after_the_first_is_gone() {
    let (_pg, _s3, _kek, sets, a) = origin_with_masters("masters").await;
    // Origin A goes (its store with it, as far as B knows); B starts on an
    // empty store, the same cluster.
    let (b, _) = a.another_origin("origin-b", &sets).await;
    let TestCluster { dir, segments, blobs, origin, tls, http, .. } = a;
    origin.shutdown().await;
    // A node joins B only now.
    let bport = b.https_addr().port();
    let node_spec = EdgeSpec::new("node", "node-late", &dir.path().join("node-late"), bport);
    let node = tranzcast_edge::EdgeServer::start(node_spec.config(), tls.clone()).await.unwrap();
    wait_staged(&b, &["node-late"]).await;
    for (i, (addr, bytes)) in segments.iter().zip(&blobs).enumerate() {
        let r = http.get(format!("{}/v1/blobs/{addr}", url_of(&node))).bearer_auth(CLUSTER).send().await.unwrap();
        assert_eq!(r.status(), 200, "segment {i}");
        assert!(r.bytes().await.unwrap()[..] == bytes[..], "segment {i} byte-identical");
    }
    // And B serves a play of the title it restored.
    let grant = OriginClient::new(&http, &format!("https://localhost:{bport}")).certificate("film").await;
    assert!(grant.0.starts_with("Tranzcast "));
    drop(node);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_master_copy_is_refused_not_restored() {
    let s3 = S3Server::start("tampered").await;
    let opts = tranzcast_store::MasterOptions::S3 {
        bucket: s3.bucket.clone(),
        root: "/".into(),
        endpoint: Some(s3.endpoint.clone()),
        region: Some("us-east-1".into()),
        credentials: Some(("tranzcast-test".into(), "tranzcast-test-secret".into())),
    };
    let m = tranzcast_store::MasterStore::open(&opts).unwrap();
    let good = bytes::Bytes::from(vec![7u8; 100_000]);
    let a = m.put(good.clone()).await.unwrap();
    assert_eq!(m.get(&a).await.unwrap().unwrap(), good);
    assert!(m.list().await.unwrap().contains(&a));
    // Overwrite the object behind the store's back (as a compromised bucket would).
    let h = a.to_hex();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let r = http.put(format!("{}/{}/blobs/{}/{h}", s3.endpoint, s3.bucket, &h[..2])).body(vec![8u8; 100_000]).send().await.unwrap();
    assert!(r.status().is_success());
    let e = m.get(&a).await.unwrap_err();
    assert!(matches!(e, tranzcast_store::StoreError::Corrupt { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_origins_that_can_both_stage_push_each_title_to_a_node_once() {
    let (_pg, _s3, _kek, sets, a) = origin_with_masters("leases").await;
    let (b, b_url) = a.another_origin("origin-b", &sets).await;
    // Both can stage both titles (A from its store, B from the bucket); a node joins.
    let node = a.server(&a.spec("node", "node-1")).await;
    let staged = |o: &Origin, t: &str| o.staging_status().get("node-1").and_then(|m| m.get(t)).is_some_and(|p| p.complete);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !["film", "other"].iter().all(|t| staged(&a.origin, t) || staged(&b, t)) {
        assert!(std::time::Instant::now() < deadline, "staging incomplete: {:?} {:?}", a.origin.staging_status(), b.staging_status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more rounds: nothing is pushed twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pushed =
        metric(&a.http, &a.origin_url, "origin_pushed_bytes_total").await + metric(&a.http, &b_url, "origin_pushed_bytes_total").await;
    let segments: u64 = a.blobs.iter().map(|b| b.len() as u64).sum::<u64>() * 2;
    eprintln!("pushed {pushed} bytes for {segments} bytes of segments");
    assert!(pushed >= segments, "every segment pushed: {pushed} < {segments}");
    assert!(pushed < segments + segments / 20, "pushed twice: {pushed} for {segments}");
    drop(node);
    b.shutdown().await;
}
