//! An edge against hostile clients, with real servers on 127.0.0.1: requests
//! reset before their answer (the HTTP/2 rapid-reset pattern) give their
//! place back; a fetch whose starter is cancelled finishes and leaves the
//! single-flight table; the number of fetches in the air is bounded;
//! overlapping ranges are answered merged, each byte once; one viewer
//! address is held to its share of the places, the cluster's token is not.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tranzcast_edge::EdgeServer;

use tranzcast_testkit::*;

/// A parent that takes TCP connections and never says a word: every fetch
/// that asks it first waits the upstream timeout (2 s in these tests).
fn silent_parent() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://localhost:{}", l.local_addr().unwrap().port());
    (l, url)
}

/// An edge whose only parent is a silent one (so every miss waits there
/// first), with `sets`: the edge, the parent (to keep) and the edge's URL.
async fn edge_behind_a_silent_parent(cl: &TestCluster, sets: &[&str]) -> (EdgeServer, std::net::TcpListener, String) {
    let (silent, silent_url) = silent_parent();
    let edge = cl.server(&cl.spec("edge", "edge-1").parents(&[silent_url]).sets(sets)).await;
    let edge_url = url_of(&edge);
    (edge, silent, edge_url)
}

/// An HTTP/2 connection of the `h2` crate over TLS (to send raw resets).
async fn h2_conn(port: u16, ca: &str) -> h2::client::SendRequest<Bytes> {
    let cfg = tranzcast_net::tls::client_config(ca.as_bytes(), &[b"h2"]).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_reset_before_their_answer_leave_nothing_in_hand() {
    let cl = TestCluster::start(3).await;
    // The address's cancel budget above the 1,000 resets: this is the guards'
    // test (the rapid-reset protection, which would close these connections
    // after 200, has its own in net/tests/limits.rs).
    let (edge, _silent, edge_url) = edge_behind_a_silent_parent(&cl, &["limits.max_cancelled_requests=5000"]).await;
    let http = &cl.http;
    let (cert, _) = cl.client().certificate("film").await;
    let url = format!("{edge_url}/v1/blobs/{}", cl.segments[0]);

    // Ten connections each send 100 requests for the cold blob (they wait on
    // one fetch stuck at the silent parent) and reset each before its answer.
    let t = Instant::now();
    for _ in 0..10 {
        let send = h2_conn(edge.https_addr().port(), &cl.tls.ca_pem).await;
        let mut open = Vec::new();
        for _ in 0..100 {
            let mut ready = send.clone().ready().await.unwrap();
            let req = http::Request::get(&url).header("authorization", &cert).body(()).unwrap();
            open.push(ready.send_request(req, true).unwrap());
        }
        // Every request is in the edge's hands (waiting on the fetch) ...
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ... when its client gives up on it.
        for (resp, mut stream) in open {
            stream.send_reset(h2::Reason::CANCEL);
            drop(resp);
        }
    }
    assert!(t.elapsed() < Duration::from_millis(1800), "the resets came after the fetch could have answered ({:?})", t.elapsed());
    eventually(10, "the in-flight gauge to come back to 0", || async {
        metric(http, &edge_url, "edge_requests_in_flight").await <= 1 // this scrape itself
    })
    .await;
    assert!(metric(http, &edge_url, "edge_requests_total").await >= 1000, "the requests did reach the routes");
    assert_eq!(metric_f64(http, &edge_url, "edge_refused_total{reason=\"cancel_flood\"}").await, Some(0.0));
    // The edge answers normally, with the blob the fetch went on to get.
    let r = http.get(&url).header("authorization", &cert).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap()[..], cl.blobs[0][..]);
    edge.shutdown().await;
    cl.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_whose_starter_is_cancelled_leaves_the_table_and_fetches_are_bounded() {
    let cl = TestCluster::start(3).await;
    let (edge, _silent, edge_url) = edge_behind_a_silent_parent(&cl, &["limits.max_flights=1"]).await;
    let (http, segs) = (&cl.http, &cl.segments);
    let (cert, _) = cl.client().certificate("film").await;
    let get = |i: usize| http.get(format!("{edge_url}/v1/blobs/{}", segs[i])).header("authorization", &cert).send();

    // The starter of a fetch gives up after 200 ms (the fetch waits 2 s on the silent parent).
    let starter = tokio::spawn(get(0));
    eventually(5, "the fetch to start", || async { metric(http, &edge_url, "edge_flights_in_air").await == 1 }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    starter.abort();
    // While it is in the air, the one flight allowed is taken: another miss is refused at once.
    let r = get(1).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().await.unwrap().contains("upstream_busy"));
    // The abandoned fetch goes on (the silent parent times out, the origin
    // has it), stores the blob and leaves the table.
    eventually(15, "the flight to leave the table", || async { metric(http, &edge_url, "edge_flights_in_air").await == 0 }).await;
    let ask = tranzcast_proto::api::MissingBody { blobs: vec![segs[0].to_hex(), segs[1].to_hex()] };
    let b =
        http.post(format!("{edge_url}/v1/staging/missing")).bearer_auth(CLUSTER).json(&ask).send().await.unwrap().bytes().await.unwrap();
    let missing: tranzcast_proto::answers::Missing = tranzcast_proto::answers::parse_small("missing", &b).unwrap();
    assert_eq!(missing.missing, vec![segs[1].to_hex()], "the first is stored, the second not in the air");
    let r = get(0).await.unwrap();
    assert_eq!((r.status().as_u16(), r.bytes().await.unwrap()[..] == cl.blobs[0][..]), (200, true));
    assert_eq!(metric_f64(http, &edge_url, "edge_refused_total{reason=\"upstream_busy\"}").await, Some(1.0));
    edge.shutdown().await;
    cl.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_ranges_are_answered_merged() {
    let cl = TestCluster::start(3).await;
    let node = start_staged(&cl.origin, &cl.tls, &cl.spec("node", "node-1")).await;
    let url = format!("{}/v1/blobs/{}", url_of(&node), cl.segments[0]);
    let http = &cl.http;
    let len = cl.blobs[0].len();
    // 64 overlapping ranges of the whole blob: one range, each byte once.
    let all = format!("bytes={}", (0..64).map(|i| format!("{i}-{}", len - 1)).collect::<Vec<_>>().join(","));
    let node_cfg_max = 64;
    let r = http.get(&url).bearer_auth(CLUSTER).header("range", &all).send().await.unwrap();
    // The node's default is 16 ranges per request: 64 is refused; with the cap raised, merged.
    assert_eq!(r.status(), 400, "more ranges than limits.max_ranges");
    node.shutdown().await;
    let node = cl.server(&cl.spec("node", "node-1").mirroring().sets(&[&format!("limits.max_ranges={node_cfg_max}")])).await;
    let url = format!("{}/v1/blobs/{}", url_of(&node), cl.segments[0]);
    let r = http.get(&url).bearer_auth(CLUSTER).header("range", &all).send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(h(r.headers(), "content-range"), format!("bytes 0-{}/{len}", len - 1));
    assert!(!h(r.headers(), "content-type").starts_with("multipart"));
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len, "64 overlapping ranges cost one blob, not 64");
    assert_eq!(body[..], cl.blobs[0][..]);
    // Overlapping and adjacent parts merge; a gap keeps two parts, in ascending order.
    let r = http.get(&url).bearer_auth(CLUSTER).header("range", "bytes=500-599,0-99,50-149,150-199").send().await.unwrap();
    let ctype = h(r.headers(), "content-type").to_string();
    let body = r.bytes().await.unwrap();
    assert!(ctype.starts_with("multipart/byteranges"), "{ctype}");
    let text = String::from_utf8_lossy(&body);
    let first = text.find("Content-Range: bytes 0-199/").expect("merged 0-199 part");
    let second = text.find("Content-Range: bytes 500-599/").expect("500-599 part");
    assert!(first < second && text.matches("Content-Range").count() == 2, "{text:.300}");
    node.shutdown().await;
    cl.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_address_is_held_to_its_share_and_the_cluster_token_to_its_cap_only() {
    let cl = TestCluster::start(3).await;
    // Every miss waits 2 s at the silent parent, so the requests stay in hand.
    let (edge, _silent, edge_url) = edge_behind_a_silent_parent(&cl, &["limits.max_concurrent_requests=64"]).await;
    let (cert, _) = cl.client().certificate("film").await;
    let statuses = |blob: usize, auth: String| {
        let (http, url) = (cl.http.clone(), format!("{edge_url}/v1/blobs/{}", cl.segments[blob]));
        async move {
            let asks: Vec<_> = (0..30).map(|_| tokio::spawn(http.get(&url).header("authorization", auth.clone()).send())).collect();
            let mut by = std::collections::BTreeMap::new();
            for a in asks {
                *by.entry(a.await.unwrap().unwrap().status().as_u16()).or_insert(0) += 1;
            }
            by
        }
    };
    // A viewer alone: the floor (8), since eight times 8 is not below the 56 then free.
    assert_eq!(statuses(0, cert).await, [(200, 8), (503, 22)].into_iter().collect());
    // The cluster's own servers: their address's cap (1,024) only.
    assert_eq!(statuses(1, format!("Bearer {CLUSTER}")).await, [(200, 30)].into_iter().collect());
    edge.shutdown().await;
    cl.origin.shutdown().await;
}
