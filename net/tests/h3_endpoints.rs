//! HTTP/3 on every core: several QUIC endpoints on one UDP port, each on a
//! thread of its own, packets steered by connection ID (`steering`,
//! `server/endpoints.rs`). Real server on 127.0.0.1, real QUIC, our client.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tranzcast_net::client::H3Client;
use tranzcast_net::{BodyLimit, HttpServer, LimitsConfig, LocalCa, ServerOptions, ServerStats, full};

const ENDPOINTS: usize = 4;

async fn get(h3: &H3Client) -> Response<Bytes> {
    let uri = format!("https://{}/", h3.authority());
    tokio::time::timeout(Duration::from_secs(5), h3.request(Request::get(uri).body(Bytes::new()).unwrap()))
        .await
        .expect("an answer within 5 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_the_endpoints_and_keep_their_endpoint_when_the_client_moves() {
    let ca = LocalCa::generate().unwrap();
    let stats = Arc::new(ServerStats::default());
    // Held by the handler: gone once the server and its threads are.
    let state = Arc::new(());
    let s2 = state.clone();
    let handler = tranzcast_net::handler(move |_req: Request<Bytes>, _cx| {
        let _held = s2.clone();
        async move { Response::new(full(Bytes::from_static(b"here"))) }
    })
    .admit_with(|_, _| Ok(BodyLimit::Small));
    let opts = ServerOptions {
        https: "127.0.0.1:0".parse().unwrap(),
        plain: None,
        identity: ca.issue(&["localhost"]).unwrap(),
        limits: LimitsConfig::default(),
        drain: Duration::from_secs(1),
        stats: stats.clone(),
        h3_endpoints: ENDPOINTS,
    };
    let server = HttpServer::bind(opts, handler).await.unwrap();
    let ca_pem = ca.cert_pem();

    // One client moves to a new port twelve times. The kernel's hash of the
    // new address picks any of the four sockets (all twelve on the owner's
    // by chance: 4^-12); only steering by connection ID keeps the
    // connection, whose packets another endpoint would drop.
    let mover = H3Client::connect(server.https_addr, "localhost", ca_pem.as_bytes()).await.unwrap();
    assert_eq!(get(&mover).await.body().as_ref(), b"here");
    let mut last = mover.rebind().unwrap();
    assert_eq!(get(&mover).await.status(), 200, "after the first move (to {last})");
    for i in 1..12 {
        let at = mover.rebind().unwrap();
        // The socket left last is still open (quinn keeps it a while), so
        // the kernel gives another port.
        assert_ne!(at.port(), last.port(), "move {i} is to a new port");
        last = at;
        let resp = get(&mover).await;
        assert_eq!(resp.status(), 200, "after move {i} (to {at})");
    }
    let taken = stats.h3_connections_by_endpoint();
    assert_eq!(taken.len(), ENDPOINTS);
    assert_eq!(taken.iter().sum::<u64>(), 1, "the moves kept the one connection: {taken:?}");

    // New connections go where the kernel's hash puts them: over more than
    // one endpoint (all 16 on one: 4 * 4^-16).
    let mut clients = Vec::new();
    for _ in 0..16 {
        let c = H3Client::connect(server.https_addr, "localhost", ca_pem.as_bytes()).await.unwrap();
        assert_eq!(get(&c).await.status(), 200);
        clients.push(c);
    }
    let taken = stats.h3_connections_by_endpoint();
    assert_eq!(taken.iter().sum::<u64>(), 17, "{taken:?}");
    assert!(taken.iter().filter(|n| **n > 0).count() >= 2, "connections all on one endpoint: {taken:?}");
    let mut metrics = String::new();
    stats.render("t", &mut metrics);
    assert!(metrics.contains("t_h3_endpoint_connections_total{endpoint=\"3\"}"), "{metrics}");

    // Short-header packets naming IDs no endpoint issued (junk, a guess,
    // a client from before a restart) are dropped unanswered, and counted.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    for i in 0..20u8 {
        let mut d = vec![0x40 | (i & 0x3f), i, 1, 2, 3, 4, 5, 6, 7];
        d.extend_from_slice(&[0x55; 40]);
        junk.send_to(&d, server.https_addr).unwrap();
    }
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while stats.h3_unknown_id_packets() < 20 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.h3_unknown_id_packets(), 20, "junk packets counted");
    let mut buf = [0u8; 64];
    assert!(junk.recv_from(&mut buf).is_err(), "a junk packet got an answer (a stateless reset)");

    // Shutdown with connections open ends the endpoints' threads, and with
    // them everything the server held.
    tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await.expect("shutdown within 10 s");
    assert_eq!(Arc::strong_count(&state), 1, "the server's threads still hold its state");
    drop((mover, clients));
}
