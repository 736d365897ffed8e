//! HTTP/3 response bodies of 64 KiB chunks and up reach quinn without a
//! copy (`server/h3_streams.rs`), smaller ones are copied: a real server on
//! 127.0.0.1, real QUIC, our own client.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tranzcast_net::client::H3Client;
use tranzcast_net::{BodyLimit, HttpServer, LimitsConfig, LocalCa, ServerOptions, ServerStats, full};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_reach_quic_as_they_are_and_arrive_whole() {
    let ca = LocalCa::generate().unwrap();
    let stats = Arc::new(ServerStats::default());
    // 5 MiB of a pattern no two offsets share by accident, answered as one
    // body in frames of 256 KiB (as the edge does) or whole.
    let blob: Bytes = (0..5u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<u8>>().into();
    let b2 = blob.clone();
    let handler = tranzcast_net::handler(move |req: Request<Bytes>, _cx| {
        let blob = b2.clone();
        async move {
            match req.uri().path() {
                "/framed" => {
                    let frames = (0..blob.len().div_ceil(256 << 10)).map(move |i| {
                        Ok::<_, std::io::Error>(hyper::body::Frame::data(
                            blob.slice(i * (256 << 10)..((i + 1) * (256 << 10)).min(blob.len())),
                        ))
                    });
                    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
                    Response::new(http_body_util::BodyExt::boxed_unsync(body))
                }
                "/small" => Response::new(full(blob.slice(4096..8192))),
                _ => Response::new(full(blob)),
            }
        }
    })
    .admit_with(|_, _| Ok(BodyLimit::Small));
    let opts = ServerOptions {
        https: "127.0.0.1:0".parse().unwrap(),
        plain: None,
        identity: ca.issue(&["localhost"]).unwrap(),
        limits: LimitsConfig::default(),
        drain: Duration::from_secs(1),
        stats: stats.clone(),
        h3_endpoints: 0,
    };
    let server = HttpServer::bind(opts, handler).await.unwrap();
    let h3 = H3Client::connect(server.https_addr, "localhost", ca.cert_pem().as_bytes()).await.unwrap();
    for path in ["/whole", "/framed"] {
        let before = stats.h3_body_bytes();
        let uri = format!("https://{}{path}", h3.authority());
        let resp = h3.request(Request::get(uri).body(Bytes::new()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.body() == &blob, "{path}: the body arrived changed ({} bytes)", resp.body().len());
        let after = stats.h3_body_bytes();
        // Every body byte went to quinn as the chunk it was, none copied.
        assert_eq!(after.0 - before.0, blob.len() as u64, "{path}: bytes handed over without a copy");
        assert_eq!(after.1, before.1, "{path}: bytes copied");
    }
    // A small chunk is copied: in quinn's hands until acknowledged, a slice
    // would keep its whole blob alive for a few bytes.
    let before = stats.h3_body_bytes();
    let uri = format!("https://{}/small", h3.authority());
    let resp = h3.request(Request::get(uri).body(Bytes::new()).unwrap()).await.unwrap();
    assert!(resp.body() == &blob.slice(4096..8192));
    let after = stats.h3_body_bytes();
    assert_eq!((after.0 - before.0, after.1 - before.1), (0, 4096), "a 4 KiB chunk: (zero-copy, copied) bytes");
    let mut metrics = String::new();
    stats.render("t", &mut metrics);
    assert!(metrics.contains(&format!("t_h3_body_bytes_total{{path=\"zero_copy\"}} {}", 2 * blob.len())), "{metrics}");
}
