//! The service stack every listener shares, with real servers on 127.0.0.1:
//! requests counted by protocol and status (HTTP/1.1, HTTP/2, HTTP/3),
//! latency histograms, load shedding with 503 + Retry-After (health and
//! metrics exempt), the outgoing rate limit, and 504 when the head is late.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use tranzcast_edge::EdgeServer;
use tranzcast_net::client::H3Client;

use tranzcast_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_by_protocol_shedding_rate_limit_and_timeout() {
    let cl = TestCluster::start(3).await;
    // A node that sends at most 256 KiB/s and holds at most 2 requests at once.
    let (node, node_url) = cl.mirroring_node(&["rate_limit=256KiB", "limits.max_concurrent_requests=2"]).await;
    let TestCluster { dir, origin, oport, tls, segments: segs, blobs: bytes, .. } = cl;
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let h1 = tranzcast_net::client::https_h1(tls.ca_pem.as_bytes()).unwrap();
    let h3 = H3Client::connect(node.https_addr(), "localhost", tls.ca_pem.as_bytes()).await.unwrap();
    let (cert, _) = certificate(&http, &format!("https://localhost:{oport}"), "film").await;
    let url = format!("{node_url}/v1/blobs/{}", segs[0]);

    // One small range on each protocol, and one refusal on h2.
    let range = |c: &reqwest::Client| c.get(&url).header("authorization", &cert).header("range", "bytes=0-999").send();
    assert_eq!(range(&h1).await.unwrap().bytes().await.unwrap()[..], bytes[0][..1000]);
    assert_eq!(range(&http).await.unwrap().bytes().await.unwrap()[..], bytes[0][..1000]);
    let req = http::Request::get(&url).header("authorization", &cert).header("range", "bytes=0-999").body(Bytes::new()).unwrap();
    let r = h3.request(req).await.unwrap();
    assert_eq!((r.status().as_u16(), &r.body()[..]), (206, &bytes[0][..1000]));
    assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 401);
    for (label, want) in [
        ("protocol=\"h1\",status=\"206\"", 1.0),
        ("protocol=\"h2\",status=\"206\"", 1.0),
        ("protocol=\"h3\",status=\"206\"", 1.0),
        ("protocol=\"h2\",status=\"401\"", 1.0),
    ] {
        assert_eq!(metric_f64(&http, &node_url, &format!("edge_http_requests_total{{{label}}}")).await, Some(want), "{label}");
    }
    assert_eq!(metric_f64(&http, &node_url, "edge_http_response_bytes_total{protocol=\"h3\",status=\"206\"}").await, Some(1000.0));
    assert_eq!(metric_f64(&http, &node_url, "edge_http_response_head_seconds_count{protocol=\"h3\"}").await, Some(1.0));
    assert!(metric_f64(&http, &node_url, "edge_http_response_seconds_bucket{protocol=\"h2\",le=\"+Inf\"}").await >= Some(2.0));

    // The rate limit: 384 KiB at 256 KiB/s takes at least a second.
    let t = Instant::now();
    let b = http.get(&url).header("authorization", &cert).header("range", "bytes=0-393215").send().await.unwrap().bytes().await.unwrap();
    assert_eq!(b[..], bytes[0][..393216]);
    assert!(t.elapsed() >= Duration::from_millis(1000), "the rate limit let 384 KiB through in {:?}", t.elapsed());

    // Two slow whole-blob bodies in flight fill the node; a third request is
    // shed at once with 503 and Retry-After; health and metrics still answer.
    let slow: Vec<_> = (0..2).map(|_| http.get(&url).header("authorization", &cert).send()).collect();
    let slow = futures_util::future::join_all(slow).await.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>();
    let r = range(&http).await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().await.unwrap().contains("overloaded"));
    assert_eq!(http.get(format!("{node_url}/healthz")).send().await.unwrap().status().as_u16(), 200);
    assert!(metric_f64(&http, &node_url, "edge_refused_total{reason=\"overloaded\"}").await >= Some(1.0));
    // Dropping the slow bodies frees their places.
    drop(slow);
    eventually(10, "places to free up", || async { range(&http).await.unwrap().status().as_u16() == 206 }).await;

    // A parent that accepts connections and never answers: the request's
    // deadline (300 ms) passes long before the upstream timeout (2 s): 504.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("https://localhost:{}", silent.local_addr().unwrap().port());
    let edge_cfg = EdgeSpec::new("edge", "edge-1", &dir.path().join("e1"), oport)
        .parents(&[silent_url])
        .mirroring()
        .sets(&["limits.request_timeout=300ms"])
        .config();
    let edge = EdgeServer::start(edge_cfg, tls.clone()).await.unwrap();
    let edge_url = format!("https://localhost:{}", edge.https_addr().port());
    // (Had the 2 s upstream timeout come first, the origin would have answered 200.)
    let r = http.get(format!("{edge_url}/v1/blobs/{}", segs[1])).header("authorization", &cert).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 504);
    assert_eq!(metric_f64(&http, &edge_url, "edge_http_requests_total{protocol=\"h2\",status=\"504\"}").await, Some(1.0));
    edge.shutdown().await;
    node.shutdown().await;
    origin.shutdown().await;
}
