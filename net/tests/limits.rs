//! Every limit of `HttpServer`, against a real server on 127.0.0.1 with real
//! TLS and QUIC, driven by raw clients where a well-behaved client library
//! would not misbehave (a head that stops arriving, a body that never
//! comes, requests reset before their answer). Each test fails without
//! the limit it is about.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tranzcast_net::client::H3Client;
use tranzcast_net::{BodyLimit, ClusterMember, HttpServer, LimitsConfig, LocalCa, Refusal, Refused, ServerOptions, ServerStats, full};

/// What the test handler saw.
#[derive(Default)]
struct Seen {
    /// Requests that reached the handler.
    calls: AtomicU64,
    /// Body bytes handed to the handler.
    body_bytes: AtomicU64,
    /// Handlers running now, and the most at once.
    running: AtomicUsize,
    most: AtomicUsize,
}

struct Running<'a>(&'a Seen);

impl<'a> Running<'a> {
    fn new(s: &'a Seen) -> Self {
        let n = s.running.fetch_add(1, Ordering::SeqCst) + 1;
        s.most.fetch_max(n, Ordering::SeqCst);
        Self(s)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Server {
    server: HttpServer,
    stats: Arc<ServerStats>,
    seen: Arc<Seen>,
    ca: String,
    addr: SocketAddr,
}

/// A server whose handler answers `/slow` after 300 ms, `/hang` after a
/// minute, `/big` with 4 MiB at once, `/drip` with 1 MiB over 150 ms,
/// panics on `/panic` (and in its answer's body on `/panic-body`),
/// `/echo` with the body's length, anything else at once; `admit`
/// wants `authorization: ok` on `/secret`, lets `/upload` take an upload
/// body, and takes `authorization: member` for one of the cluster's own servers.
async fn start(limits: LimitsConfig) -> Server {
    let ca = LocalCa::generate().unwrap();
    let identity = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    let stats = Arc::new(ServerStats::default());
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    let handler = tranzcast_net::handler(move |req: Request<Bytes>, _cx| {
        let seen = s2.clone();
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            seen.body_bytes.fetch_add(req.body().len() as u64, Ordering::SeqCst);
            let _running = Running::new(&seen);
            match req.uri().path() {
                "/slow" => tokio::time::sleep(Duration::from_millis(300)).await,
                "/hang" => tokio::time::sleep(Duration::from_secs(60)).await,
                "/panic" => panic!("the test handler panics"),
                // A body that panics before its first piece.
                "/panic-at-once" => {
                    let pieces = futures_util::stream::once(async {
                        panic!("the test answer panics at once");
                        #[allow(unreachable_code)]
                        Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::new()))
                    });
                    return Response::new(http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(pieces)));
                }
                // One piece of the answer, sent, then a panic while making the next.
                "/panic-body" => {
                    let pieces = futures_util::stream::unfold(0u32, |i| async move {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        assert!(i == 0, "the test answer panics");
                        Some((Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![7u8; 1000]))), i + 1))
                    });
                    let mut r = Response::new(http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(pieces)));
                    r.headers_mut().insert("content-length", http::HeaderValue::from_static("2000"));
                    return r;
                }
                "/big" => return Response::new(full(vec![7u8; 4 << 20])),
                // 1 MiB in 16 pieces 10 ms apart: an answer still being made.
                "/drip" => {
                    let pieces = futures_util::stream::unfold(0u32, |i| async move {
                        if i == 16 {
                            return None;
                        }
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Some((Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![7u8; 64 << 10]))), i + 1))
                    });
                    return Response::new(http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(pieces)));
                }
                _ => {}
            }
            Response::new(full(format!("{}", req.body().len())))
        }
    })
    .admit_with(|parts, _cx| match parts.uri.path() {
        "/panic-admit" => panic!("the test admission panics"),
        "/secret" if parts.headers.get("authorization").is_none_or(|v| v != "ok") => {
            Err(Refused::new(StatusCode::UNAUTHORIZED, Refusal::Unauthorized, "unauthorized", "say ok"))
        }
        "/upload" => Ok(BodyLimit::Upload),
        _ => {
            if parts.headers.get("authorization").is_some_and(|v| v == "member") {
                parts.extensions.insert(ClusterMember);
            }
            Ok(BodyLimit::Small)
        }
    });
    let opts = ServerOptions {
        https: "127.0.0.1:0".parse().unwrap(),
        plain: None,
        identity,
        limits,
        drain: Duration::from_secs(1),
        stats: stats.clone(),
        h3_endpoints: 0,
    };
    let server = HttpServer::bind(opts, handler).await.unwrap();
    let addr = server.https_addr;
    Server { server, stats, seen, ca: ca.cert_pem().to_string(), addr }
}

fn dur(d: Duration) -> tranzcast_config::Duration {
    tranzcast_config::Duration(d)
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TCP connection to `to` from the loopback address `from`.
async fn tcp_from(from: &str, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{from}:0").parse().unwrap())?;
    // Small writes go out at once (as every HTTP/2 client's do).
    s.set_nodelay(true)?;
    s.connect(to).await
}

/// A TLS connection offering `alpn`, from `from`.
async fn tls_from(s: &Server, from: &str, alpn: &[&[u8]]) -> std::io::Result<Tls> {
    let cfg = tranzcast_net::tls::client_config(s.ca.as_bytes(), alpn).unwrap();
    let c = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tcp_from(from, s.addr).await?;
    c.connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp).await
}

/// Reads until the peer closes or `limit` passes; true if it closed.
async fn closed_within(io: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline.into(), io.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// The status line of the answer read from `io` (the head only).
async fn read_status(io: &mut (impl AsyncReadExt + Unpin)) -> u16 {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if io.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// This process's resident memory, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Limits where an address whose connections never send a head within
/// `header_timeout` is out for `penalty` after `strikes` of them.
fn penalty_after(strikes: u32, header_timeout: Duration, penalty: Duration) -> LimitsConfig {
    LimitsConfig {
        header_read_timeout: dur(header_timeout),
        abuse_strikes: strikes,
        abuse_penalty: dur(penalty),
        ..LimitsConfig::default()
    }
}

type Held = Vec<tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>>;

/// A server started with `limits`, an HTTPS client and the server's base URL.
struct At {
    s: Server,
    c: reqwest::Client,
    base: String,
}

async fn at(limits: LimitsConfig) -> At {
    let s = start(limits).await;
    let base = format!("https://localhost:{}", s.addr.port());
    let c = tranzcast_net::client::https(s.ca.as_bytes()).unwrap();
    At { s, c, base }
}

/// Four requests to `/hang` from `c` held in hand (the cap these tests set),
/// then one more: it is answered 503, and returned with the four.
async fn four_in_hand_and_a_503(s: &Server, c: &reqwest::Client, base: &str) -> (Held, reqwest::Response) {
    let held = (0..4).map(|_| tokio::spawn(c.get(format!("{base}/hang")).send())).collect();
    eventually(5, "four requests in hand", || s.stats.in_flight() == 4).await;
    let r = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    (held, r)
}

/// Gives up the held requests; their places come back.
async fn let_go(s: &Server, held: Held) {
    for t in held {
        t.abort();
    }
    eventually(5, "places to come back", || s.stats.in_flight() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_stops_arriving_is_closed_within_the_header_timeout() {
    let s = start(LimitsConfig { header_read_timeout: dur(Duration::from_millis(500)), ..LimitsConfig::default() }).await;
    // HTTP/1.1: half a request head, then nothing.
    let t = Instant::now();
    let mut h1 = tls_from(&s, "127.0.0.1", &[b"http/1.1"]).await.unwrap();
    h1.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    assert!(closed_within(&mut h1, Duration::from_secs(3)).await, "a slowloris head was not cut");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_millis(2500), "cut after {took:?}");
    // HTTP/2: the preface and nothing more (no request ever completes).
    let mut h2 = tls_from(&s, "127.0.0.1", &[b"h2"]).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut h2, Duration::from_secs(3)).await, "a silent HTTP/2 connection was not cut");
    // A TCP connection that never starts its TLS handshake.
    let mut raw = tcp_from("127.0.0.1", s.addr).await.unwrap();
    raw.write_all(b"\x16\x03\x01").await.unwrap();
    assert!(closed_within(&mut raw, Duration::from_secs(3)).await, "a stalled handshake was not cut");
    assert!(s.stats.refused(Refusal::HeaderTimeout) >= 2, "{}", s.stats.refused(Refusal::HeaderTimeout));
    assert!(s.stats.refused(Refusal::Handshake) >= 1);
    assert_eq!(s.seen.calls.load(Ordering::SeqCst), 0);
    eventually(5, "connections to be gone", || s.stats.connections() == 0 && s.stats.tasks() == 0).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_idle_timeout_on_every_protocol() {
    let s = start(LimitsConfig { idle_timeout: dur(Duration::from_millis(800)), ..LimitsConfig::default() }).await;
    let url = format!("https://localhost:{}/", s.addr.port());
    let h2 = tranzcast_net::client::https(s.ca.as_bytes()).unwrap();
    assert_eq!(h2.get(&url).send().await.unwrap().status(), 200);
    let h3 = H3Client::connect(s.addr, "localhost", s.ca.as_bytes()).await.unwrap();
    let r = h3.request(Request::get(&url).body(Bytes::new()).unwrap()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.stats.connections(), 2);
    // Nothing more asked: both closed by the server within about the idle time.
    let t = Instant::now();
    eventually(5, "idle connections to close", || s.stats.connections() == 0).await;
    assert!(t.elapsed() >= Duration::from_millis(500), "closed after {:?}, before the idle timeout", t.elapsed());
    // The server still answers new connections (and the client library reconnects).
    assert_eq!(h2.get(&url).send().await.unwrap().status(), 200);
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_on_every_protocol() {
    let s = start(LimitsConfig { max_header_bytes: tranzcast_config::ByteSize(4 << 10), max_headers: 20, ..LimitsConfig::default() }).await;
    let url = format!("https://localhost:{}/", s.addr.port());
    let big = "x".repeat(8 << 10);
    let h1 = tranzcast_net::client::https_h1(s.ca.as_bytes()).unwrap();
    let h2 = tranzcast_net::client::https(s.ca.as_bytes()).unwrap();
    for c in [&h1, &h2] {
        assert_eq!(c.get(&url).header("x-big", &big).send().await.unwrap().status(), 431);
        let mut r = c.get(&url);
        for i in 0..30 {
            r = r.header(format!("x-{i}"), "1");
        }
        assert_eq!(r.send().await.unwrap().status(), 431, "too many headers");
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200, "a normal request still works");
    }
    let h3 = H3Client::connect(s.addr, "localhost", s.ca.as_bytes()).await.unwrap();
    // The server's SETTINGS carry its cap: a conforming client refuses to send
    // the head at all; one that sends it anyway gets 431.
    match h3.request(Request::get(&url).header("x-big", &big).body(Bytes::new()).unwrap()).await {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(e.to_string().contains("max size: 4096"), "{e}"),
    }
    let mut b = Request::get(&url);
    for i in 0..30 {
        b = b.header(format!("x-{i}"), "1");
    }
    assert_eq!(h3.request(b.body(Bytes::new()).unwrap()).await.unwrap().status(), 431);
    assert!(s.stats.refused(Refusal::TooManyHeaders) >= 2, "h2 and h3 counted by us");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_gets_413_before_it_is_read_and_credentials_come_first() {
    let s = start(LimitsConfig {
        max_body: tranzcast_config::ByteSize(64 << 10),
        max_upload_body: tranzcast_config::ByteSize(2 << 20),
        ..LimitsConfig::default()
    })
    .await;
    // 10 MiB declared, not one byte sent: the answer comes anyway.
    for (path, want) in [("/echo", 413), ("/secret", 401), ("/upload", 413)] {
        let mut c = tls_from(&s, "127.0.0.1", &[b"http/1.1"]).await.unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n", 10 << 20);
        c.write_all(head.as_bytes()).await.unwrap();
        let t = Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(2), read_status(&mut c)).await.expect("no answer without the body");
        assert_eq!(got, want, "{path}");
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    // A chunked body (no length) is cut at the cap.
    let mut c = tls_from(&s, "127.0.0.1", &[b"http/1.1"]).await.unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 << 10, "y".repeat(16 << 10));
    let writer = async {
        for _ in 0..64 {
            if c.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    // HTTP/2 and HTTP/3, with a declared length.
    let url = format!("https://localhost:{}/echo", s.addr.port());
    let h2 = tranzcast_net::client::https(s.ca.as_bytes()).unwrap();
    assert_eq!(h2.post(&url).body(vec![0u8; 10 << 20]).send().await.unwrap().status(), 413);
    let h3 = H3Client::connect(s.addr, "localhost", s.ca.as_bytes()).await.unwrap();
    // (The head alone: the answer comes before any body would be read.)
    let req = Request::post(&url).header("content-length", (10 << 20).to_string()).body(Bytes::new()).unwrap();
    assert_eq!(h3.request(req).await.unwrap().status(), 413);
    assert_eq!(s.seen.calls.load(Ordering::SeqCst), 0, "no oversized or unauthorised request reached the handler");
    // Within the caps, bodies arrive whole: an upload route takes 1 MiB, a small one 60 KB.
    let up = format!("https://localhost:{}/upload", s.addr.port());
    assert_eq!(h2.post(&up).body(vec![1u8; 1 << 20]).send().await.unwrap().text().await.unwrap(), (1 << 20).to_string());
    assert_eq!(h2.post(&url).body(vec![1u8; 60_000]).send().await.unwrap().text().await.unwrap(), "60000");
    assert!(s.stats.refused(Refusal::BodyTooLarge) >= 5, "{}", s.stats.refused(Refusal::BodyTooLarge));
    assert_eq!(s.stats.refused(Refusal::Unauthorized), 1);
    // A busy client refused on the head many times over one HTTP/2
    // connection, its small body a moment behind its head each time, is not
    // taken for a reset flood: the body is read before the refusal goes out
    // (h2 closes a connection after 1,024 streams it had to reset itself).
    let secret = format!("https://localhost:{}/secret", s.addr.port());
    let tls = tls_from(&s, "127.0.0.10", &[b"h2"]).await.unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    for i in 0..1100 {
        let mut ready = send.clone().ready().await.unwrap_or_else(|e| panic!("connection gone after {i} refusals: {e}"));
        let (resp, mut stream) = ready.send_request(Request::post(&secret).body(()).unwrap(), false).unwrap();
        tokio::time::sleep(Duration::from_micros(300)).await;
        stream.send_data(Bytes::from_static(b"{}"), true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 401);
    }
    assert!(!driver.is_finished());
    assert_eq!((s.stats.refused(Refusal::CancelFlood), s.stats.refused(Refusal::Penalized)), (0, 0));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_minimum_rate_gets_408_and_body_memory_is_bounded() {
    let s = start(LimitsConfig {
        header_read_timeout: dur(Duration::from_millis(300)),
        body_min_rate: tranzcast_config::ByteSize(64 << 10),
        max_upload_body: tranzcast_config::ByteSize(1 << 20),
        max_body_memory: tranzcast_config::ByteSize(1 << 20),
        ..LimitsConfig::default()
    })
    .await;
    // 60,000 bytes at 64 KiB/s: due within 0.3 + 0.9 s; a byte every 100 ms is far too slow.
    let mut c = tls_from(&s, "127.0.0.1", &[b"http/1.1"]).await.unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 60000\r\n\r\n").await.unwrap();
    let t = Instant::now();
    let (mut r, mut w) = tokio::io::split(c);
    let drip = tokio::spawn(async move {
        for _ in 0..100 {
            if w.write_all(b"z").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), read_status(&mut r)).await.unwrap(), 408);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    drip.abort();
    // An upload holding 790 KB of the 1 MiB of body memory (its last bytes
    // not sent yet): a second one is refused with 503 once its bytes would
    // go past the budget. (Memory is taken as bytes arrive, not as declared.)
    let mut a = tls_from(&s, "127.0.0.1", &[b"http/1.1"]).await.unwrap();
    a.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 800000\r\n\r\n").await.unwrap();
    a.write_all(&vec![b'a'; 790_000]).await.unwrap();
    eventually(5, "the first upload's bytes to be held", || s.stats.body_bytes() >= 790_000).await;
    let mut b = tls_from(&s, "127.0.0.1", &[b"http/1.1"]).await.unwrap();
    b.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 800000\r\n\r\n").await.unwrap();
    let _ = b.write_all(&vec![b'b'; 300_000]).await;
    assert_eq!(tokio::time::timeout(Duration::from_secs(2), read_status(&mut b)).await.unwrap(), 503);
    assert_eq!(s.stats.refused(Refusal::BodyMemory), 1);
    drop(a);
    eventually(5, "the held memory to be given back", || s.stats.in_flight() == 0).await;
    s.server.shutdown().await;
}

/// An HTTP/2 connection of the `h2` crate over TLS.
async fn h2_client(s: &Server, from: &str) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tls = tls_from(s, from, &[b"h2"]).await.unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, driver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reset_before_their_answer_give_their_place_back_and_a_reset_flood_closes_the_connection() {
    let s = start(LimitsConfig { max_cancelled_requests: 100, h2_max_concurrent_streams: 32, ..LimitsConfig::default() }).await;
    let url = format!("https://localhost:{}/hang", s.addr.port());
    // Six clients (addresses) each reset 90 slow requests (within their
    // budget): 540 requests that never get an answer.
    let mut conns = Vec::new();
    for i in 0..6 {
        conns.push(h2_client(&s, &format!("127.0.0.{}", 11 + i)).await);
    }
    assert_eq!(conns[0].0.current_max_send_streams(), 32, "the server's SETTINGS carry its stream limit");
    for (send, _) in &mut conns {
        for _ in 0..90 {
            let mut send = send.clone().ready().await.unwrap();
            let (resp, mut stream) = send.send_request(Request::get(&url).body(()).unwrap(), true).unwrap();
            // Long enough for the server to start the handler, then cancel.
            tokio::time::sleep(Duration::from_millis(1)).await;
            stream.send_reset(h2::Reason::CANCEL);
            drop(resp);
        }
    }
    eventually(10, "every reset request to give back its place", || s.stats.in_flight() == 0).await;
    assert!(s.seen.calls.load(Ordering::SeqCst) > 100, "the handlers did start");
    assert_eq!(s.stats.refused(Refusal::CancelFlood), 0, "within budget: no connection closed");
    // One connection resetting far more than its budget is closed; the
    // budget is its address's, so that address's other connection goes at
    // its next cancel.
    let (other_send, other_driver) = h2_client(&s, "127.0.0.1").await;
    let (send, driver) = h2_client(&s, "127.0.0.1").await;
    let mut closed = false;
    for _ in 0..1000 {
        let Ok(mut ready) = send.clone().ready().await else {
            closed = true;
            break;
        };
        match ready.send_request(Request::get(&url).body(()).unwrap(), true) {
            Ok((_resp, mut stream)) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                stream.send_reset(h2::Reason::CANCEL);
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed || driver.is_finished(), "the flooding connection was not closed");
    assert_eq!(s.stats.refused(Refusal::CancelFlood), 1);
    // (The budget refills at 10 a second: the other connection has only
    // what came back since, far less than a fresh connection's 100.)
    let t = Instant::now();
    let mut other_cancels = 0;
    while !other_driver.is_finished() && other_cancels < 60 {
        let Ok(mut ready) = other_send.clone().ready().await else { break };
        let Ok((_resp, mut stream)) = ready.send_request(Request::get(&url).body(()).unwrap(), true) else { break };
        tokio::time::sleep(Duration::from_millis(1)).await;
        stream.send_reset(h2::Reason::CANCEL);
        other_cancels += 1;
    }
    eventually(5, "the address's other connection to be closed", || other_driver.is_finished()).await;
    assert!(other_cancels < 10 + 10 * (t.elapsed().as_secs() as i32 + 3), "{other_cancels} cancels before the other connection went");
    assert_eq!(s.stats.refused(Refusal::CancelFlood), 2);
    // Its address serves a penalty: no new connection for a while (before any TLS work).
    // (Refused after accept, or its handshake dropped by the kernel once the socket filter has it.)
    let again = tokio::time::timeout(Duration::from_secs(2), tls_from(&s, "127.0.0.1", &[b"h2"])).await;
    assert!(!matches!(again, Ok(Ok(_))), "the flooding address reconnected at once");
    assert!(s.stats.refused(Refusal::Penalized) >= 1 || s.stats.filtered_addresses() >= 1);
    eventually(10, "in-flight back to 0", || s.stats.in_flight() == 0).await;
    // And the server answers everyone else normally.
    let ok = format!("https://localhost:{}/", s.addr.port());
    let other = client_from(&s, [127, 0, 0, 9]);
    assert_eq!(other.get(&ok).send().await.unwrap().status(), 200);
    s.server.shutdown().await;
}

/// A GET of `url` on an HTTP/2 connection: its status and body.
async fn h2_get(send: &h2::client::SendRequest<Bytes>, url: &str) -> (StatusCode, Vec<u8>) {
    let mut send = send.clone().ready().await.unwrap();
    let (resp, _) = send.send_request(Request::get(url).body(()).unwrap(), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status();
    let mut body = resp.into_body();
    let mut all = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        all.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    (status, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connections_streams_run_at_once_and_end_with_it_or_finish_through_a_shutdown() {
    // The streams of an HTTP/2 connection run on the connection's own task
    // (server/h2_local.rs), not a task each: they must still run at once,
    // end with their connection, and finish through a graceful shutdown.
    let s = start(LimitsConfig::default()).await;
    let base = format!("https://localhost:{}", s.addr.port());
    let (send, driver) = h2_client(&s, "127.0.0.1").await;
    // Eight requests that wait a minute, all in hand at once on the one
    // connection; a quick one is answered beside them.
    let mut hangs = Vec::new();
    for _ in 0..8 {
        let mut ready = send.clone().ready().await.unwrap();
        hangs.push(ready.send_request(Request::get(format!("{base}/hang")).body(()).unwrap(), true).unwrap());
    }
    eventually(5, "eight handlers of one connection running at once", || s.seen.running.load(Ordering::SeqCst) == 8).await;
    let (status, body) = h2_get(&send, &format!("{base}/")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"0"[..]), "a quick request beside them");
    eventually(5, "the quick one's place back, the eight still in hand", || s.stats.in_flight() == 8).await;
    assert_eq!(s.seen.running.load(Ordering::SeqCst), 8);
    // A connection that goes away with requests in hand gives their places back.
    driver.abort();
    drop((hangs, send));
    eventually(5, "the places of a closed connection's requests to come back", || s.stats.in_flight() == 0).await;
    // An answer still being made when the server is told to stop arrives whole.
    let (send, driver) = h2_client(&s, "127.0.0.1").await;
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, _) = ready.send_request(Request::get(format!("{base}/drip")).body(()).unwrap(), true).unwrap();
    let mut body = resp.await.unwrap().into_body();
    let first = body.data().await.unwrap().unwrap();
    let _ = body.flow_control().release_capacity(first.len());
    let shutdown = tokio::spawn(async move { s.server.shutdown().await });
    let mut n = first.len();
    let mut intact = first.iter().all(|&b| b == 7);
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the answer is not cut");
        n += chunk.len();
        intact &= chunk.iter().all(|&b| b == 7);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    assert_eq!(n, 1 << 20, "bytes of the answer that arrived");
    assert!(intact, "the answer arrived changed");
    shutdown.await.unwrap();
    eventually(5, "the connection to close after the shutdown", || driver.is_finished()).await;
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK literal field line without indexing, by static name index (< 15), plain value.
fn hpack_literal(name_index: u8, value: &str, out: &mut Vec<u8>) {
    out.push(name_index);
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connection_ended_in_the_poll_that_started_its_streams_leaves_nothing_behind() {
    // hyper ends a connection in the very poll that handed its executor a
    // stream when, in the same read, a CONNECT carries a body (it resets it
    // and stops). Each stream holds a clone of its connection's executor, so
    // a stream left in the executor's inbox would hold the inbox, and with
    // it the request and its buffers, for ever: one flight, one leak.
    let s = start(LimitsConfig::default()).await;
    assert_eq!(s.stats.h2_executors(), 0);
    for round in 0..3 {
        let mut tls = tls_from(&s, "127.0.0.1", &[b"h2"]).await.unwrap();
        let mut flight = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        flight.extend(h2_frame(4, 0, 0, &[]));
        // Stream 1: GET /hang (END_STREAM | END_HEADERS).
        let mut get = vec![0x82, 0x87]; // :method GET, :scheme https
        hpack_literal(1, "localhost", &mut get);
        hpack_literal(4, "/hang", &mut get);
        flight.extend(h2_frame(1, 0x5, 1, &get));
        // Stream 3: CONNECT with content-length 1 (END_HEADERS).
        let mut connect = Vec::new();
        hpack_literal(2, "CONNECT", &mut connect);
        hpack_literal(1, "localhost", &mut connect);
        connect.extend([0x0f, 28 - 15, 1, b'1']); // content-length (static 28): "1"
        flight.extend(h2_frame(1, 0x4, 3, &connect));
        tls.write_all(&flight).await.unwrap();
        tls.flush().await.unwrap();
        assert!(closed_within(&mut tls, Duration::from_secs(5)).await, "round {round}: hyper ends the connection");
        eventually(5, "the connection's executor and the stream it was handed to be freed", || s.stats.h2_executors() == 0).await;
        assert_eq!(s.seen.running.load(Ordering::SeqCst), 0, "the GET's handler never ran");
    }
    // The server still answers over HTTP/2, and its executor goes with it.
    let base = format!("https://localhost:{}", s.addr.port());
    let (send, driver) = h2_client(&s, "127.0.0.1").await;
    assert_eq!(h2_get(&send, &format!("{base}/")).await.0, StatusCode::OK);
    assert_eq!(s.stats.h2_executors(), 1);
    driver.abort();
    drop(send);
    eventually(5, "a closed connection's executor to be freed", || s.stats.h2_executors() == 0).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_panics_fails_alone_on_every_protocol() {
    // A handler's panic is that request's 500; a panic in an answer's body
    // ends that answer. The connection and its other requests go on: an
    // HTTP/2 or HTTP/3 connection's requests share its task.
    let s = start(LimitsConfig::default()).await;
    let base = format!("https://localhost:{}", s.addr.port());
    let h1 = reqwest::Client::builder()
        .tls_backend_preconfigured(tranzcast_net::tls::client_config(s.ca.as_bytes(), &[b"http/1.1"]).unwrap())
        .http1_only()
        .build()
        .unwrap();
    for path in ["/panic", "/panic-admit"] {
        let r = h1.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 500, "{path}");
        assert!(r.text().await.unwrap().contains("internal_error"));
    }
    assert_eq!(h1.get(format!("{base}/")).send().await.unwrap().status(), 200);
    // HTTP/1.1 can only end an answer cut short by closing its connection.
    let r = h1.get(format!("{base}/panic-body")).send().await.unwrap();
    assert!(r.bytes().await.is_err(), "an answer whose body panicked came whole over HTTP/1.1");
    assert_eq!(h1.get(format!("{base}/")).send().await.unwrap().status(), 200);
    assert_eq!(s.stats.panics(), 3);
    assert_eq!(s.stats.refused(Refusal::CancelFlood), 0);
    // HTTP/2: a request in hand beside them keeps running.
    let (send, driver) = h2_client(&s, "127.0.0.1").await;
    let mut ready = send.clone().ready().await.unwrap();
    let (hang, _) = ready.send_request(Request::get(format!("{base}/hang")).body(()).unwrap(), true).unwrap();
    eventually(5, "the hanging request to run", || s.seen.running.load(Ordering::SeqCst) == 1).await;
    assert_eq!(h2_get(&send, &format!("{base}/panic")).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, _) = ready.send_request(Request::get(format!("{base}/panic-body")).body(()).unwrap(), true).unwrap();
    let mut body = resp.await.unwrap().into_body();
    let mut got = 0;
    let cut = loop {
        match body.data().await {
            Some(Ok(chunk)) => got += chunk.len(),
            Some(Err(e)) => break e.is_reset(),
            None => break false,
        }
    };
    assert!(cut && got <= 1000, "the answer whose body panicked is reset, not finished ({got} bytes came)");
    assert_eq!(h2_get(&send, &format!("{base}/")).await.0, StatusCode::OK, "the connection goes on");
    assert!(!driver.is_finished());
    assert_eq!(s.seen.running.load(Ordering::SeqCst), 1, "the request in hand beside them still runs");
    assert_eq!(s.stats.panics(), 5);
    driver.abort();
    drop((hang, send));
    // HTTP/3.
    let h3 = H3Client::connect(s.addr, "localhost", s.ca.as_bytes()).await.unwrap();
    let url = format!("{base}/");
    assert_eq!(h3.request(Request::get(&url).body(Bytes::new()).unwrap()).await.unwrap().status(), 200);
    let r = h3.request(Request::get(format!("{base}/panic")).body(Bytes::new()).unwrap()).await.unwrap();
    assert_eq!(r.status(), 500);
    // Its head and first piece out, then reset: not finished, which would
    // end the answer like a whole one.
    assert!(h3.request(Request::get(format!("{base}/panic-body")).body(Bytes::new()).unwrap()).await.is_err());
    assert_eq!(h3.request(Request::get(&url).body(Bytes::new()).unwrap()).await.unwrap().status(), 200, "the connection goes on");
    // Before its head was out: counted as the server's 500, not as a
    // request the client cancelled (which spends its address's budget).
    assert!(h3.request(Request::get(format!("{base}/panic-at-once")).body(Bytes::new()).unwrap()).await.is_err());
    assert_eq!(h3.request(Request::get(&url).body(Bytes::new()).unwrap()).await.unwrap().status(), 200, "the connection goes on");
    assert_eq!(s.stats.panics(), 8);
    let mut metrics = String::new();
    s.stats.render("test", &mut metrics);
    assert!(metrics.contains("test_handler_panics_total 8"), "{metrics}");
    assert!(metrics.contains("test_http_requests_total{protocol=\"h3\",status=\"500\"} 2"), "{metrics}");
    eventually(5, "every request's place back", || s.stats.in_flight() == 0).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_cap_are_shed_with_503_and_health_still_answers() {
    let At { s, c, base } = at(LimitsConfig { max_concurrent_requests: 4, ..LimitsConfig::default() }).await;
    let (held, r) = four_in_hand_and_a_503(&s, &c, &base).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(s.stats.refused(Refusal::Overloaded), 1);
    let_go(&s, held).await;
    assert_eq!(c.get(format!("{base}/")).send().await.unwrap().status(), 200);
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_its_share_of_requests_in_hand_and_a_stalled_reader_is_cut() {
    let At { s, c, base } =
        at(LimitsConfig { max_requests_per_ip: 4, idle_timeout: dur(Duration::from_millis(800)), ..LimitsConfig::default() }).await;
    let (held, r) = four_in_hand_and_a_503(&s, &c, &base).await;
    assert!(r.text().await.unwrap().contains("from this address"));
    let other = client_from(&s, [127, 0, 0, 8]);
    assert_eq!(other.get(format!("{base}/")).send().await.unwrap().status(), 200, "another address has its share");
    let_go(&s, held).await;
    // A client that asks for 4 MiB and grants no flow-control credit: no byte
    // of the answer can go; the connection is cut after the idle time.
    let tls = tls_from(&s, "127.0.0.9", &[b"h2"]).await.unwrap();
    let (send, conn) = h2::client::Builder::new().initial_window_size(0).handshake::<_, Bytes>(tls).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut ready = send.ready().await.unwrap();
    let (resp, _) = ready.send_request(Request::get(format!("{base}/big")).body(()).unwrap(), true).unwrap();
    let head = resp.await.unwrap();
    assert_eq!(head.status(), 200);
    eventually(5, "the stalled connection to be cut", || driver.is_finished()).await;
    assert_eq!(s.stats.refused(Refusal::Stalled), 1);
    eventually(5, "its request to be given back", || s.stats.in_flight() == 0).await;
    s.server.shutdown().await;
}

/// An HTTP/2 client whose connections come from `ip`.
fn client_from(s: &Server, ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tranzcast_net::tls::client_config(s.ca.as_bytes(), &[b"h2"]).unwrap())
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_holding_all_they_may_leave_places_for_others() {
    let At { s, base, .. } = at(LimitsConfig { max_concurrent_requests: 128, max_requests_per_ip: 128, ..LimitsConfig::default() }).await;
    let hang = format!("{base}/hang");
    // Alone, an address holds while eight times what it holds is below
    // what is free: 15 of 128, well under its own cap.
    let first = client_from(&s, [127, 0, 0, 2]);
    let mut held: Held = (0..15).map(|_| tokio::spawn(first.get(&hang).send())).collect();
    eventually(5, "15 requests in hand", || s.stats.in_flight() == 15).await;
    let r = first.get(&hang).send().await.unwrap();
    assert_eq!(r.status(), 503, "a 16th request from one address, 113 places free");
    assert!(r.text().await.unwrap().contains("from this address"));
    // Eight more addresses each ask 16 at once: each keeps at least the
    // floor (8), the first to come a few more, and at least 37 places stay
    // free (79 to 91 in hand, by the order they come in); without the share
    // the first 113 asked would have filled the server.
    let others: Vec<reqwest::Client> = (3..11).map(|i| client_from(&s, [127, 0, 0, i])).collect();
    for c in &others {
        held.extend((0..16).map(|_| tokio::spawn(c.get(&hang).send())));
    }
    let asked = 15 + 1 + 8 * 16;
    eventually(5, "every request taken or refused", || s.stats.in_flight() + s.stats.refused(Refusal::Overloaded) as i64 == asked).await;
    let in_hand = s.stats.in_flight();
    assert!((79..=91).contains(&in_hand), "{in_hand} in hand");
    // A newcomer is served.
    assert_eq!(client_from(&s, [127, 0, 0, 11]).get(format!("{base}/")).send().await.unwrap().status(), 200);
    let_go(&s, held).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_s_own_servers_are_held_to_their_address_s_cap_only() {
    let At { s, base, .. } = at(LimitsConfig { max_concurrent_requests: 32, max_requests_per_ip: 30, ..LimitsConfig::default() }).await;
    let edge = client_from(&s, [127, 0, 0, 12]);
    let mut held: Held = (0..30).map(|_| tokio::spawn(edge.get(format!("{base}/hang")).header("authorization", "member").send())).collect();
    eventually(5, "30 requests in hand", || s.stats.in_flight() == 30).await;
    let r = edge.get(format!("{base}/hang")).header("authorization", "member").send().await.unwrap();
    assert_eq!(r.status(), 503, "past its address's cap");
    let_go(&s, std::mem::take(&mut held)).await;
    // The same address without the credential: the floor (8), since eight
    // times 8 is not below the 24 places then free.
    held.extend((0..30).map(|_| tokio::spawn(edge.get(format!("{base}/hang")).send())));
    eventually(5, "every request taken or refused", || s.stats.in_flight() + s.stats.refused(Refusal::Overloaded) as i64 == 1 + 30).await;
    assert_eq!(s.stats.in_flight(), 8);
    let_go(&s, held).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_client_never_reads_hold_no_place_past_its_share() {
    let At { s, c, base } = at(LimitsConfig { max_concurrent_requests: 16, ..LimitsConfig::default() }).await;
    // A client that grants no flow-control credit asks for 64 answers: the
    // heads come back, no body byte can. Its share is 8 (the floor); the
    // 56 refused give their places back though their 503s cannot be read.
    let tls = tls_from(&s, "127.0.0.13", &[b"h2"]).await.unwrap();
    let (send, conn) = h2::client::Builder::new().initial_window_size(0).handshake::<_, Bytes>(tls).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    let mut heads = Vec::new();
    for _ in 0..64 {
        send = send.ready().await.unwrap();
        heads.push(send.send_request(Request::get(format!("{base}/big")).body(()).unwrap(), true).unwrap().0);
    }
    // Kept, unread: a stream whose answer is dropped is reset.
    let mut answers = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for h in heads {
        let r = h.await.unwrap();
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
        answers.push(r);
    }
    assert_eq!(statuses, [(200, 8), (503, 56)].into_iter().collect());
    assert_eq!(s.stats.in_flight(), 8, "refusals hold no place");
    assert_eq!(c.get(format!("{base}/")).send().await.unwrap().status(), 200, "another client is served");
    // The stuck connection gone, every place comes back.
    drop((answers, send));
    driver.abort();
    eventually(5, "every place back", || s.stats.in_flight() == 0).await;
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_caps_are_closed_or_refused() {
    let s = start(LimitsConfig { max_connections: 6, max_connections_per_ip: 4, ..LimitsConfig::default() }).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tls_from(&s, "127.0.0.1", &[b"http/1.1"]).await.unwrap());
    }
    // A fifth from the same address: closed at once (the handshake fails).
    assert!(tls_from(&s, "127.0.0.1", &[b"http/1.1"]).await.is_err(), "a fifth connection from one address was served");
    // QUIC from the same address: refused too.
    assert!(H3Client::connect(s.addr, "localhost", s.ca.as_bytes()).await.is_err(), "an h3 connection past the cap was served");
    // Other addresses have their own share, up to the total.
    held.push(tls_from(&s, "127.0.0.2", &[b"http/1.1"]).await.unwrap());
    held.push(tls_from(&s, "127.0.0.2", &[b"http/1.1"]).await.unwrap());
    assert!(tls_from(&s, "127.0.0.3", &[b"http/1.1"]).await.is_err(), "a connection past the total was served");
    assert_eq!(s.stats.refused(Refusal::ConnectionsPerAddress), 2);
    assert_eq!(s.stats.refused(Refusal::ConnectionsTotal), 1);
    // Closing gives the slots back.
    held.clear();
    eventually(5, "slots to come back", || s.stats.connections() == 0).await;
    assert!(tls_from(&s, "127.0.0.1", &[b"http/1.1"]).await.is_ok());
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_opening_connections_too_fast_is_closed_before_tls() {
    let s = start(LimitsConfig { connection_rate_per_ip: 5, ..LimitsConfig::default() }).await;
    // A burst of twice the rate is taken, then one new connection each 1/rate.
    let mut ok = 0;
    for _ in 0..30 {
        if tls_from(&s, "127.0.0.4", &[b"http/1.1"]).await.is_ok() {
            ok += 1;
        }
    }
    assert!((10..=12).contains(&ok), "{ok} of 30 connections at once were taken");
    assert!(s.stats.refused(Refusal::ConnectionRate) >= 18);
    assert!(tls_from(&s, "127.0.0.5", &[b"http/1.1"]).await.is_ok(), "another address is not limited");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(tls_from(&s, "127.0.0.4", &[b"http/1.1"]).await.is_ok(), "the rate refills");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_whose_connections_never_ask_anything_serves_a_penalty() {
    let s = start(penalty_after(3, Duration::from_millis(300), Duration::from_secs(30))).await;
    // Five connections that complete their handshake and say nothing: each
    // closed at the header deadline; past three strikes the address is out.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(tls_from(&s, "127.0.0.6", &[b"http/1.1"]).await.unwrap());
    }
    for c in &mut idle {
        assert!(closed_within(c, Duration::from_secs(3)).await);
    }
    assert!(s.stats.refused(Refusal::HeaderTimeout) >= 5);
    // Refused after accept at first, then dropped by the kernel (the
    // listener's socket filter): the connection does not even complete.
    let during = tokio::time::timeout(Duration::from_secs(2), tls_from(&s, "127.0.0.6", &[b"http/1.1"])).await;
    assert!(!matches!(during, Ok(Ok(_))), "the address opened a connection during its penalty");
    eventually(5, "the penalty in the socket filter", || s.stats.filtered_addresses() == 1).await;
    let refused = s.stats.refused(Refusal::Penalized);
    let t = Instant::now();
    let dropped = tokio::time::timeout(Duration::from_millis(700), tcp_from("127.0.0.6", s.addr)).await;
    assert!(dropped.is_err(), "the handshake was not dropped: {dropped:?} after {:?}", t.elapsed());
    assert_eq!(s.stats.refused(Refusal::Penalized), refused, "the server never saw it");
    assert!(tls_from(&s, "127.0.0.7", &[b"http/1.1"]).await.is_ok(), "another address is not penalised");
    s.server.shutdown().await;
}

/// A penalty ends in the kernel too: the socket filter is rebuilt when the
/// first penalty in it ends, and the address connects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_filter_lets_an_address_back_when_its_penalty_ends() {
    let s = start(penalty_after(1, Duration::from_millis(200), Duration::from_secs(3))).await;
    // Connections that say nothing, until the address is out.
    while s.stats.filtered_addresses() == 0 {
        match tokio::time::timeout(Duration::from_millis(300), tls_from(&s, "127.0.0.8", &[b"http/1.1"])).await {
            Ok(Ok(mut c)) => assert!(closed_within(&mut c, Duration::from_secs(3)).await),
            _ => eventually(1, "the penalty in the socket filter", || s.stats.filtered_addresses() == 1).await,
        }
    }
    assert!(tokio::time::timeout(Duration::from_millis(500), tcp_from("127.0.0.8", s.addr)).await.is_err(), "dropped while penalised");
    eventually(5, "the filter emptied", || s.stats.filtered_addresses() == 0).await;
    assert!(tls_from(&s, "127.0.0.8", &[b"http/1.1"]).await.is_ok(), "the address is back");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h3_connection_runs_at_most_its_stream_limit_at_once() {
    let s = start(LimitsConfig { h3_max_concurrent_streams: 16, ..LimitsConfig::default() }).await;
    let h3 = H3Client::connect(s.addr, "localhost", s.ca.as_bytes()).await.unwrap();
    let url = format!("https://localhost:{}/slow", s.addr.port());
    let all = (0..64).map(|_| h3.request(Request::get(&url).body(Bytes::new()).unwrap()));
    let answers = futures_util::future::join_all(all).await;
    assert!(answers.iter().all(|r| r.as_ref().is_ok_and(|r| r.status() == 200)));
    let most = s.seen.most.load(Ordering::SeqCst);
    assert!((8..=16).contains(&most), "{most} handlers at once on one connection");
    s.server.shutdown().await;
}

/// One long-lived HTTP/3 connection sending 100,000 cheap requests: every
/// finished request task is freed as it finishes, so the server's task
/// count (and the runtime's) ends where it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_h3_connection_with_100000_requests_leaves_the_task_count_flat() {
    let s = start(LimitsConfig::default()).await;
    let h3 = H3Client::connect(s.addr, "localhost", s.ca.as_bytes()).await.unwrap();
    let url = format!("https://localhost:{}/", s.addr.port());
    let one = || h3.request(Request::get(&url).body(Bytes::new()).unwrap());
    use futures_util::StreamExt;
    // Warm up (allocator arenas, buffers), then measure from here.
    let warm = futures_util::stream::iter(0..2_000).map(|_| one()).buffer_unordered(64).count().await;
    assert_eq!(warm, 2_000);
    let rss_before = rss();
    let rt = tokio::runtime::Handle::current().metrics();
    let (tasks_before, alive_before) = (s.stats.tasks(), rt.num_alive_tasks());
    let most = Arc::new(AtomicUsize::new(0));
    let (stats, m2) = (s.stats.clone(), most.clone());
    let sampler = tokio::spawn(async move {
        loop {
            m2.fetch_max(stats.tasks() as usize, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let done = futures_util::stream::iter(0..100_000)
        .map(|_| one())
        .buffer_unordered(64)
        .fold(0u32, |n, r| async move { n + u32::from(r.is_ok_and(|r| r.status() == 200)) })
        .await;
    sampler.abort();
    assert_eq!(done, 100_000);
    eventually(5, "request tasks to end", || s.stats.tasks() <= tasks_before).await;
    let peak = most.load(Ordering::Relaxed);
    assert!(peak <= 64 + 8, "{peak} server tasks at once for 64 requests in flight");
    let alive_after = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    assert!(alive_after <= alive_before + 4, "runtime tasks {alive_before} -> {alive_after}");
    // Finished tasks kept until the connection ends would hold their memory:
    // some kilobytes each, hundreds of megabytes for 100,000.
    let grown = rss().saturating_sub(rss_before);
    assert!(grown < 48 << 20, "resident memory grew {} MiB over 100,000 requests", grown >> 20);
    s.server.shutdown().await;
}
