//! Demand-driven mirroring and the disk budget, with real servers on
//! 127.0.0.1: a hot title's next segments reach an edge before anyone asks
//! (fetched ahead by the edge, or pushed by the node that sees the demand);
//! an edge stays within `store.disk_bytes`, keeping what is asked for often.

#![allow(clippy::unwrap_used)]

use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_origin::Origin;

use tranzcast_testkit::*;

async fn bitmap(http: &reqwest::Client, base: &str) -> (u64, String) {
    let p: serde_json::Value = http.get(format!("{base}/v1/pulse?title=film")).send().await.unwrap().json().await.unwrap();
    (p["segments"]["held"].as_u64().unwrap_or(0), p["segments"]["bitmap"].as_str().unwrap_or("").to_string())
}

fn bit(bitmap: &str, i: usize) -> bool {
    let b = hex::decode(bitmap).unwrap();
    b.get(i / 8).is_some_and(|x| x & (0x80 >> (i % 8)) != 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_title_is_fetched_ahead_and_the_disk_budget_holds() {
    let cl = TestCluster::start(24).await;
    let (node, node_url) = cl.mirroring_node(&["mirroring.push_to_edges=false"]).await;
    let TestCluster { dir, origin, oport, tls, segments: segs, blobs: bytes, .. } = cl;
    let edge_cfg = EdgeSpec::new("edge", "edge-1", &dir.path().join("e1"), oport)
        .parents(std::slice::from_ref(&node_url))
        .mirroring()
        .sets(&["store.disk_bytes=16MiB", "mirroring.hot_requests_per_min=3", "mirroring.prefetch_segments=2"])
        .config();
    let edge = EdgeServer::start(edge_cfg, tls.clone()).await.unwrap();
    let edge_url = format!("https://localhost:{}", edge.https_addr().port());
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let (cert, _) = certificate(&http, &format!("https://localhost:{oport}"), "film").await;
    let get = |i: usize| {
        let (http, url, cert) = (http.clone(), format!("{edge_url}/v1/blobs/{}", segs[i]), cert.clone());
        async move { http.get(url).header("authorization", cert).send().await.unwrap().bytes().await.unwrap() }
    };

    // Two requests: not hot yet, nothing fetched ahead.
    assert_eq!(get(0).await[..], bytes[0][..]);
    assert_eq!(get(0).await[..], bytes[0][..]);
    eventually(10, "the edge to hold the manifest", || async { bitmap(&http, &edge_url).await == (1, "800000".into()) }).await;
    assert_eq!(metric(&http, &edge_url, "edge_prefetched_segments_total").await, 0);
    // The third request in a minute makes the title hot: segments 2 and 3 come
    // ahead of any viewer, and no further.
    assert_eq!(get(1).await[..], bytes[1][..]);
    eventually(10, "segments 2 and 3 fetched ahead", || async { bitmap(&http, &edge_url).await == (4, "f00000".into()) }).await;
    assert_eq!(metric(&http, &edge_url, "edge_prefetched_segments_total").await, 2);
    let hits = metric(&http, &edge_url, "edge_hits_total").await;
    assert_eq!(get(2).await[..], bytes[2][..]);
    assert_eq!(metric(&http, &edge_url, "edge_hits_total").await, hits + 1, "a prefetched segment is a hit");
    let demand: serde_json::Value = http.get(format!("{edge_url}/v1/demand")).send().await.unwrap().json().await.unwrap();
    assert_eq!((demand["titles"][0]["title"].as_str(), demand["titles"][0]["hot"].as_bool()), (Some("film"), Some(true)), "{demand}");
    assert_eq!(demand["titles"][0]["top_segments"][0], serde_json::json!({"segment": 0, "requests": 2}), "{demand}");
    // Demand counts reads started, not the ranges a read comes in: three
    // ranges from the middle of segment 0 add nothing, one from byte 0 adds one.
    let ranged = |range: &'static str| {
        let (http, url, cert) = (http.clone(), format!("{edge_url}/v1/blobs/{}", segs[0]), cert.clone());
        async move {
            let r = http.get(url).header("authorization", cert).header("range", range).send().await.unwrap();
            assert_eq!(r.status(), 206, "{range}");
            r.bytes().await.unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(ranged("bytes=4096-8191").await[..], bytes[0][4096..8192]);
    }
    assert_eq!(ranged("bytes=0-99").await[..], bytes[0][..100]);
    let demand: serde_json::Value = http.get(format!("{edge_url}/v1/demand")).send().await.unwrap().json().await.unwrap();
    assert_eq!(demand["titles"][0]["top_segments"][0], serde_json::json!({"segment": 0, "requests": 3}), "{demand}");

    // Every segment, segment 0 many times more: 24 MiB through a 16 MiB disk.
    for i in 3..segs.len() {
        assert_eq!(get(i).await[..], bytes[i][..], "segment {i}");
        for _ in 0..2 {
            assert_eq!(get(0).await[..], bytes[0][..]);
        }
    }
    // Settled: every fetch started and stored (a flight stays in the air
    // until its bytes are on disk; responses do not wait for that).
    eventually(10, "prefetches to settle", || async {
        let queued = || async {
            let p: serde_json::Value = http.get(format!("{edge_url}/v1/pulse")).send().await.unwrap().json().await.unwrap();
            p["load"]["queued"].as_u64()
        };
        metric(&http, &edge_url, "edge_upstream_fetches_total").await >= 24 && queued().await == Some(0)
    })
    .await;
    let resident = metric(&http, &edge_url, "edge_resident_bytes").await;
    let stored = metric(&http, &edge_url, "edge_store_bytes").await;
    assert!(resident <= 16 << 20 && stored <= 16 << 20, "over budget: resident {resident}, stored {stored}");
    let evicted = metric(&http, &edge_url, "edge_evicted_blobs_total").await;
    let not_admitted = metric(&http, &edge_url, "edge_not_admitted_blobs_total").await;
    assert!(evicted + not_admitted >= 8, "24 MiB cannot fit in 16 without evicting or passing over some: {evicted} + {not_admitted}");
    let (held, map) = bitmap(&http, &edge_url).await;
    assert!(bit(&map, 0), "the most asked-for segment stays: {map}");
    assert!((10..24).contains(&held), "held {held}: {map}");
    // An evicted segment comes back through the tiers, byte-exact.
    let gone = (1..24).find(|i| !bit(&map, *i)).unwrap();
    assert_eq!(get(gone).await[..], bytes[gone][..]);

    // A restart keeps the budget and what was held.
    edge.shutdown().await;
    let edge_cfg = EdgeSpec::new("edge", "edge-1", &dir.path().join("e1"), oport)
        .parents(std::slice::from_ref(&node_url))
        .mirroring()
        .sets(&["store.disk_bytes=16MiB"])
        .config();
    let edge = EdgeServer::start(edge_cfg, tls.clone()).await.unwrap();
    let edge_url = format!("https://localhost:{}", edge.https_addr().port());
    assert!(metric(&http, &edge_url, "edge_resident_bytes").await <= 16 << 20);
    assert!(bit(&bitmap(&http, &edge_url).await.1, 0));
    edge.shutdown().await;
    node.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pushes_a_hot_titles_next_segments_to_the_edge_that_asks() {
    let cl = TestCluster::start(8).await;
    let (node, node_url) = cl.mirroring_node(&["mirroring.hot_requests_per_min=2", "mirroring.prefetch_segments=3"]).await;
    let TestCluster { dir, origin, oport, tls, segments: segs, blobs: bytes, .. } = cl;
    // No parents configured: the edge learns the node from the origin's
    // cluster view and pulses it. It never finds a title hot itself.
    let edge_cfg = EdgeSpec::new("edge", "edge-1", &dir.path().join("e1"), oport)
        .mirroring()
        .sets(&["mirroring.hot_requests_per_min=1000000"])
        .config();
    let edge = EdgeServer::start(edge_cfg, tls.clone()).await.unwrap();
    let edge_url = format!("https://localhost:{}", edge.https_addr().port());
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    eventually(10, "the edge to learn and pulse its parent", || async {
        metric_f64(&http, &edge_url, &format!("edge_parent_rtt_seconds{{parent=\"{node_url}\"}}")).await.is_some()
    })
    .await;
    let (cert, _) = certificate(&http, &format!("https://localhost:{oport}"), "film").await;
    for i in 0..2 {
        let b = http
            .get(format!("{edge_url}/v1/blobs/{}", segs[i]))
            .header("authorization", &cert)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(b[..], bytes[i][..]);
    }
    // The node saw two requests for film from this edge: hot. It pushes 2, 3, 4.
    eventually(10, "the node's push", || async { bitmap(&http, &edge_url).await == (5, "f8".into()) }).await;
    assert_eq!(metric(&http, &node_url, "edge_pushed_segments_total").await, 3);
    assert_eq!(metric(&http, &edge_url, "edge_prefetched_segments_total").await, 0, "the edge fetched nothing ahead itself");
    assert_eq!(metric(&http, &edge_url, "edge_upstream_fetches_total").await, 2, "only the two asked-for segments were fetched");
    let hits = metric(&http, &edge_url, "edge_hits_total").await;
    let b =
        http.get(format!("{edge_url}/v1/blobs/{}", segs[4])).header("authorization", &cert).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(b[..], bytes[4][..]);
    assert_eq!(metric(&http, &edge_url, "edge_hits_total").await, hits + 1);
    edge.shutdown().await;
    node.shutdown().await;
    origin.shutdown().await;
}

/// Many threads storing and evicting the same few blobs at once (as parallel
/// misses and prefetches do) leave the disk holding exactly what the resident
/// set accounts for: no blob deleted after it came back, none stored after it
/// was evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_keeps_and_evictions_leave_disk_and_budget_agreeing() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(origin_config(&dir.path().join("origin"), 0)).await.unwrap();
    let oport = origin.https_addr().port();
    let tls = EdgeTls::from_config(&EdgeSpec::new("edge", "x", dir.path(), oport).config(), &origin.ca_dir()).unwrap();
    let cfg = EdgeSpec::new("edge", "edge-1", &dir.path().join("e1"), oport).mirroring().sets(&["store.disk_bytes=16MiB"]).config();
    let edge = std::sync::Arc::new(EdgeServer::start(cfg, tls.clone()).await.unwrap());
    let blobs: Vec<Vec<u8>> = (0..80u8).map(|i| vec![i; 256 << 10]).collect();
    let blobs = std::sync::Arc::new(blobs);
    let workers: Vec<_> = (0..16usize)
        .map(|w| {
            let (edge, blobs) = (edge.clone(), blobs.clone());
            std::thread::spawn(move || {
                // xorshift: each worker its own random walk over the blobs.
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1);
                for _ in 0..200 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    edge.keep_blob(&blobs[(x % blobs.len() as u64) as usize]);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let url = format!("https://localhost:{}", edge.https_addr().port());
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let resident = metric(&http, &url, "edge_resident_bytes").await;
    let stored = metric(&http, &url, "edge_store_bytes").await;
    let evicted = metric(&http, &url, "edge_evicted_blobs_total").await;
    assert!(evicted > 50, "the budget forced only {evicted} evictions");
    assert_eq!(resident, stored, "the resident set and the disk disagree");
    assert!((12 << 20..=16 << 20).contains(&stored), "stored {stored}");
    match std::sync::Arc::try_unwrap(edge) {
        Ok(edge) => edge.shutdown().await,
        Err(_) => panic!("edge still shared"),
    }
    origin.shutdown().await;
}
