//! Revocation fails closed, with real servers on 127.0.0.1: an edge reads
//! the real origin's revocation list through a fault-injecting TLS proxy
//! (the proxy forwards every call, and answers `/v1/revocations` as told:
//! passed through, 500, a stall after the head, or garbage). The edge refuses
//! certificates until its first list is read, keeps refusing a revoked one
//! when the origin fails or stalls, reports itself unhealthy once its list is
//! older than `revocation_max_age`, and recovers when the origin answers.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_net::{Body, HttpServer, RequestContext, ServerOptions, ServerStats};

use tranzcast_testkit::*;

const PASS: u8 = 0;
const ERROR: u8 = 1;
const STALL: u8 = 2;
const GARBAGE: u8 = 3;

/// A TLS reverse proxy in front of the origin (same CA, so the edge trusts
/// it as the origin), with a switch for what `/v1/revocations` gets.
async fn proxy(tls: &EdgeTls, origin: String, mode: Arc<AtomicU8>, pulls: Arc<std::sync::atomic::AtomicU64>) -> HttpServer {
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let handler = tranzcast_net::handler(move |req: Request<Bytes>, _cx: RequestContext| {
        let (http, origin, mode, pulls) = (http.clone(), origin.clone(), mode.clone(), pulls.clone());
        async move {
            if req.uri().path() == "/v1/revocations" {
                pulls.fetch_add(1, Ordering::Relaxed);
                match mode.load(Ordering::Relaxed) {
                    ERROR => {
                        let mut r = Response::new(tranzcast_net::full(r#"{"revoked":[]}"#));
                        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        return r;
                    }
                    STALL => {
                        // The head and the start of a list, then nothing, ever.
                        let start = futures_util::stream::once(async {
                            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(b"{\"revoked\":[")))
                        });
                        let body = http_body_util::StreamBody::new(futures_util::StreamExt::chain(start, futures_util::stream::pending()));
                        return Response::new(Body::new(body));
                    }
                    GARBAGE => return Response::new(tranzcast_net::full(r#"{"revoked":[{"serial":"not-hex","time":1}]}"#)),
                    _ => {}
                }
            }
            let url = format!("{origin}{}", req.uri().path_and_query().map_or("/", |p| p.as_str()));
            let mut out = http.request(req.method().clone(), url);
            for (k, v) in req.headers() {
                if k != http::header::HOST {
                    out = out.header(k, v);
                }
            }
            let r = out.body(req.into_body()).send().await.unwrap();
            let status = r.status();
            let headers = r.headers().clone();
            let body = r.bytes().await.unwrap();
            let mut resp = Response::new(tranzcast_net::full(body));
            *resp.status_mut() = status;
            for (k, v) in headers.iter() {
                if k != http::header::CONTENT_LENGTH && k != http::header::TRANSFER_ENCODING {
                    resp.headers_mut().insert(k, v.clone());
                }
            }
            resp
        }
    });
    let opts = ServerOptions {
        https: "127.0.0.1:0".parse().unwrap(),
        plain: None,
        identity: tls.identity.clone(),
        limits: Default::default(),
        drain: Duration::from_secs(1),
        stats: Arc::new(ServerStats::default()),
        h3_endpoints: 0,
    };
    HttpServer::bind(opts, handler).await.unwrap()
}

async fn read(http: &reqwest::Client, url: &str, cert: &str) -> (u16, String) {
    let r = http.get(url).header("authorization", cert).send().await.unwrap();
    let status = r.status().as_u16();
    (status, String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned())
}

async fn health(http: &reqwest::Client, edge: &str) -> String {
    let p: serde_json::Value = http.get(format!("{edge}/v1/pulse")).send().await.unwrap().json().await.unwrap();
    p["health"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_refuses_until_it_reads_the_list_and_keeps_refusing_when_the_origin_fails_or_stalls() {
    let TestCluster { dir, segments: segs, blobs: bytes, origin, origin_url, tls, http, .. } = TestCluster::start(3).await;
    let mode = Arc::new(AtomicU8::new(ERROR));
    let pulls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let px = proxy(&tls, origin_url.clone(), mode.clone(), pulls.clone()).await;
    let pport = px.https_addr.port();

    // The edge starts while the origin's list answers 500: it serves nothing
    // to certificates (503 with Retry-After), and says why in its pulse.
    let cfg = EdgeSpec::new("edge", "edge-1", &dir.path().join("e1"), pport)
        .mirroring()
        .sets(&["upstream_timeout=500ms", "revocation_max_age=1500ms", "mirroring.prefetch_segments=0"])
        .config();
    let edge = EdgeServer::start(cfg, tls.clone()).await.unwrap();
    let edge_url = format!("https://localhost:{}", edge.https_addr().port());
    let blob = format!("{edge_url}/v1/blobs/{}", segs[0]);
    let (cert, serial) = certificate(&http, &origin_url, "film").await;
    let r = http.get(&blob).header("authorization", &cert).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    assert!(r.text().await.unwrap().contains("revocations_unknown"));
    assert_eq!(health(&http, &edge_url).await, "revocations_unknown");
    assert!(metric(&http, &edge_url, "edge_revocation_pull_failures_total").await >= 1);
    // The cluster's own reads do not wait for the list.
    let r = http.get(&blob).bearer_auth(CLUSTER).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Garbage is no list either.
    mode.store(GARBAGE, Ordering::Relaxed);
    let before = pulls.load(Ordering::Relaxed);
    eventually(10, "two more pulls", || {
        let p = pulls.clone();
        async move { p.load(Ordering::Relaxed) >= before + 2 }
    })
    .await;
    assert_eq!(read(&http, &blob, &cert).await.0, 503);

    // The origin answers: the certificate works.
    mode.store(PASS, Ordering::Relaxed);
    eventually(10, "the first list read", || {
        let (http, blob, cert) = (http.clone(), blob.clone(), cert.clone());
        async move { read(&http, &blob, &cert).await.0 == 200 }
    })
    .await;
    let (status, body) = {
        let r = http.get(&blob).header("authorization", &cert).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(body[..] == bytes[0][..]);
    assert_eq!(health(&http, &edge_url).await, "ok");

    // Revoked at the origin (its order: this is the ticket's serial): refused within a pull.
    assert_eq!(OriginClient::new(&http, &origin_url).revoke_serial(&serial).await, 200);
    eventually(10, "the revocation applied", || {
        let (http, blob, cert) = (http.clone(), blob.clone(), cert.clone());
        async move {
            let (s, b) = read(&http, &blob, &cert).await;
            s == 403 && b.contains("revoked")
        }
    })
    .await;

    // The origin fails (500 with an empty list), then stalls after the head:
    // the last good list holds, the edge goes unhealthy past revocation_max_age.
    for (m, what) in [(ERROR, "500"), (STALL, "stall")] {
        mode.store(m, Ordering::Relaxed);
        let failures = metric(&http, &edge_url, "edge_revocation_pull_failures_total").await;
        eventually(15, &format!("unhealthy while the origin answers {what}"), || {
            let (http, edge_url) = (http.clone(), edge_url.clone());
            async move { health(&http, &edge_url).await == "revocations_stale" }
        })
        .await;
        eventually(15, &format!("failed pulls counted ({what})"), || {
            let (http, edge_url) = (http.clone(), edge_url.clone());
            async move { metric(&http, &edge_url, "edge_revocation_pull_failures_total").await > failures }
        })
        .await;
        let (s, b) = read(&http, &blob, &cert).await;
        assert_eq!((s, b.contains("revoked")), (403, true), "{what}: {b}");
        // Back to health when the origin answers again: the loop did not
        // freeze on a stalled answer.
        mode.store(PASS, Ordering::Relaxed);
        eventually(15, &format!("healthy again after {what}"), || {
            let (http, edge_url) = (http.clone(), edge_url.clone());
            async move { health(&http, &edge_url).await == "ok" }
        })
        .await;
    }
    let (s, _) = read(&http, &blob, &cert).await;
    assert_eq!(s, 403);

    edge.shutdown().await;
    px.shutdown().await;
    origin.shutdown().await;
}
