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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_title_ingested_at_one_origin_is_staged_from_s3_by_another_after_the_first_is_gone() {
    let (pg, s3) = (Postgres::start(), S3Server::start("masters").await);
    let url = pg.database("masters");
    let kek_dir = tempfile::tempdir().unwrap();
    std::fs::write(kek_dir.path().join("kek"), KEK).unwrap();
    let mut sets = vec![
        "state.backend=postgres".to_string(),
        format!("state.url={url}"),
        format!("keys.kek_file={}", kek_dir.path().join("kek").display()),
    ];
    sets.extend(s3.master_settings());

    // Origin A: the ingested titles go to the bucket (each round copies what is missing).
    let a = TestCluster::start_with(3, &sets).await;
    eventually(30, "every blob of both titles in the bucket", || {
        let n = a.origin.master_blobs();
        async move { n >= 2 * (3 + 1) }
    })
    .await;
    let TestCluster { dir, segments, blobs, origin, tls, http, .. } = a;
    let ca_dir = origin.ca_dir();
    let b_dir = dir.path().join("origin-b");
    drop(tranzcast_store::BlobStore::open(&b_dir, tranzcast_store::StoreOptions { create: true, ..Default::default() }).unwrap());
    std::fs::create_dir_all(b_dir.join("tls")).unwrap();
    for f in std::fs::read_dir(&ca_dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), b_dir.join("tls").join(f.file_name())).unwrap();
    }
    origin.shutdown().await;

    // Origin B: an empty store, the same cluster; a node joins it only now.
    let b = Origin::start(origin_config_with(&b_dir, 0, &sets)).await.unwrap();
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
    let (pg, s3) = (Postgres::start(), S3Server::start("leases").await);
    let url = pg.database("leases");
    let kek_dir = tempfile::tempdir().unwrap();
    std::fs::write(kek_dir.path().join("kek"), KEK).unwrap();
    let mut sets = vec![
        "state.backend=postgres".to_string(),
        format!("state.url={url}"),
        format!("keys.kek_file={}", kek_dir.path().join("kek").display()),
    ];
    sets.extend(s3.master_settings());
    let a = TestCluster::start_with(3, &sets).await;
    eventually(30, "every blob in the bucket", || {
        let n = a.origin.master_blobs();
        async move { n >= 2 * (3 + 1) }
    })
    .await;
    let b_dir = a.dir.path().join("origin-b");
    drop(tranzcast_store::BlobStore::open(&b_dir, tranzcast_store::StoreOptions { create: true, ..Default::default() }).unwrap());
    std::fs::create_dir_all(b_dir.join("tls")).unwrap();
    for f in std::fs::read_dir(a.origin.ca_dir()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), b_dir.join("tls").join(f.file_name())).unwrap();
    }
    let b = Origin::start(origin_config_with(&b_dir, 0, &sets)).await.unwrap();
    let b_url = format!("https://localhost:{}", b.https_addr().port());
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
