//! The server's own HTTP/3 against raw frames from a hand-driven quinn
//! client: what a conforming client sends is answered (greasing, Huffman
//! literals, a request body), and what a hostile one sends closes the
//! connection or resets the stream with the code RFC 9114 and RFC 9204 name,
//! while the server keeps serving others. Real server on 127.0.0.1, real QUIC.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tranzcast_net::{BodyLimit, HttpServer, LimitsConfig, LocalCa, ServerOptions, ServerStats, full};
use tranzcast_proto::http3::{self, frame, huffman, qpack};

struct Server {
    server: HttpServer,
    addr: SocketAddr,
    ca: String,
    stats: Arc<ServerStats>,
}

async fn start() -> Server {
    start_with(LimitsConfig::default()).await
}

async fn start_with(limits: LimitsConfig) -> Server {
    let ca = LocalCa::generate().unwrap();
    let handler = tranzcast_net::handler(move |req: Request<Bytes>, _cx| async move {
        let body = match req.uri().path() {
            "/echo" => req.body().clone(),
            "/big" => Bytes::from((0..8u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
            "/4m" => Bytes::from(vec![7u8; 4 << 20]),
            // 4 KiB of known length, after 300 ms (a client can go silent first).
            "/late-small" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Bytes::from(vec![b'x'; 4096])
            }
            // N bytes in 16 KiB chunks, after 300 ms (a client can go silent first).
            p if p.starts_with("/late/") => {
                let n: usize = p["/late/".len()..].parse().unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                let chunks = (0..n.div_ceil(16 << 10)).map(move |i| {
                    Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![7u8; (n - i * (16 << 10)).min(16 << 10)])))
                });
                let mut r = Response::new(http_body_util::combinators::UnsyncBoxBody::new(http_body_util::StreamBody::new(
                    futures_util::stream::iter(chunks),
                )));
                r.headers_mut().insert("x-path", req.uri().path().parse().unwrap());
                return r;
            }
            _ => Bytes::from(vec![b'x'; 4096]),
        };
        let mut r = Response::new(full(body));
        r.headers_mut().insert("x-path", req.uri().path().parse().unwrap());
        r
    })
    .admit_with(|_, _| Ok(BodyLimit::Small));
    let opts = ServerOptions {
        https: "127.0.0.1:0".parse().unwrap(),
        plain: None,
        identity: ca.issue(&["localhost"]).unwrap(),
        limits,
        drain: Duration::from_secs(1),
        stats: Arc::new(ServerStats::default()),
        h3_endpoints: 0,
    };
    let stats = opts.stats.clone();
    let server = HttpServer::bind(opts, handler).await.unwrap();
    Server { addr: server.https_addr, server, ca: ca.cert_pem().to_owned(), stats }
}

async fn connect(s: &Server) -> quinn::Connection {
    connect_with(s, quinn::TransportConfig::default()).await
}

async fn connect_with(s: &Server, transport: quinn::TransportConfig) -> quinn::Connection {
    let tls = tranzcast_net::tls::client_config(s.ca.as_bytes(), &[b"h3"]).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(config);
    endpoint.connect(s.addr, "localhost").unwrap().await.unwrap()
}

/// Opens our control stream with `frames` on it (SETTINGS first for a conforming client).
async fn control(c: &quinn::Connection, frames: &[u8]) -> quinn::SendStream {
    let mut s = c.open_uni().await.unwrap();
    let mut b = vec![http3::stream_type::CONTROL as u8];
    b.extend_from_slice(frames);
    s.write_all(&b).await.unwrap();
    s
}

fn settings() -> Vec<u8> {
    let mut b = Vec::new();
    // One greasing setting (0x1f * 3 + 0x21).
    http3::write_frame_head(frame::SETTINGS, 3, &mut b);
    b.extend_from_slice(&[0x40, 0x7e, 0x01]);
    b
}

fn frame_of(ty: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    http3::write_frame_head(ty, payload.len() as u64, &mut b);
    b.extend_from_slice(payload);
    b
}

/// A GET (or POST) of `path`: the method and scheme from the static table,
/// `path` as a Huffman literal, `extra` fields as plain literals.
fn head(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let m = qpack::STATIC_TABLE.iter().position(|&(n, v)| n == ":method" && v == method).unwrap();
    let mut b = vec![0, 0, 0xc0 | m as u8, 0xc0 | 23];
    b.push(0x50); // :authority by name reference
    qpack::write_prefix_int(9, 7, 0, &mut b);
    b.extend_from_slice(b"localhost");
    let mut coded = Vec::new();
    huffman::encode(path.as_bytes(), &mut coded);
    b.push(0x51); // :path by name reference, Huffman value
    qpack::write_prefix_int(coded.len() as u64, 7, 0x80, &mut b);
    b.extend_from_slice(&coded);
    for (n, v) in extra {
        qpack::write_prefix_int(n.len() as u64, 3, 0x20, &mut b);
        b.extend_from_slice(n.as_bytes());
        qpack::write_prefix_int(v.len() as u64, 7, 0, &mut b);
        b.extend_from_slice(v.as_bytes());
    }
    frame_of(frame::HEADERS, &b)
}

/// Sends `bytes` on a new request stream and reads the answer: its fields and body.
async fn exchange(c: &quinn::Connection, bytes: &[u8]) -> Result<(Vec<(String, String)>, Vec<u8>), quinn::ReadToEndError> {
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    let all = recv.read_to_end(16 << 20).await?;
    let mut at = 0;
    let (mut fields, mut body) = (Vec::new(), Vec::new());
    while at < all.len() {
        let h = http3::read_frame_head(&all[at..]).unwrap();
        let payload = &all[at + h.head_len..at + h.head_len + h.len as usize];
        match h.ty {
            frame::HEADERS => {
                fields = qpack::decode_section(payload, 1 << 16, 100)
                    .unwrap()
                    .into_iter()
                    .map(|f| (String::from_utf8(f.name.into_owned()).unwrap(), String::from_utf8(f.value.into_owned()).unwrap()))
                    .collect();
            }
            frame::DATA => body.extend_from_slice(payload),
            t => panic!("frame type {t} in an answer"),
        }
        at += h.head_len + h.len as usize;
    }
    Ok((fields, body))
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

async fn closed_with(c: &quinn::Connection) -> u64 {
    match tokio::time::timeout(Duration::from_secs(5), c.closed()).await.expect("the server closes the connection") {
        quinn::ConnectionError::ApplicationClosed(a) => a.error_code.into_inner(),
        other => panic!("closed otherwise: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conforming_client_with_greasing_huffman_and_a_body_is_answered() {
    let s = start().await;
    let c = connect(&s).await;
    let mut grease_frame = frame_of(0x21, b"ignore me");
    let _control = control(&c, &[settings(), grease_frame.clone()].concat()).await;
    // A greasing unidirectional stream: stopped, not an error.
    let mut g = c.open_uni().await.unwrap();
    g.write_all(&[0x40, 0x21, 1, 2, 3]).await.unwrap();
    // The server's control stream opens with its SETTINGS: its head cap.
    let mut sc = c.accept_uni().await.unwrap();
    let mut opening = [0u8; 64];
    let n = sc.read(&mut opening).await.unwrap().unwrap();
    assert_eq!(opening[0], 0, "a control stream");
    let h = http3::read_frame_head(&opening[1..n]).unwrap();
    assert_eq!(h.ty, frame::SETTINGS);
    let got = http3::read_settings(&opening[1 + h.head_len..1 + h.head_len + h.len as usize]).unwrap();
    assert_eq!(got.max_field_section_size, Some(LimitsConfig::default().max_header_bytes.0));

    // A grease frame before the head; a 4 KiB answer comes as one HEADERS and one DATA.
    grease_frame.extend_from_slice(&head("GET", "/a/b?c=1", &[("user-agent", "raw")]));
    let (fields, body) = exchange(&c, &grease_frame).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"));
    assert_eq!(field(&fields, "x-path"), Some("/a/b"));
    assert_eq!(field(&fields, "content-length"), Some("4096"));
    assert_eq!(body, vec![b'x'; 4096]);

    // A body in three DATA frames, with a grease frame and trailers between.
    let mut req = head("POST", "/echo", &[]);
    req.extend(frame_of(frame::DATA, b"hello "));
    req.extend(frame_of(0x21 + 0x1f, b"?"));
    req.extend(frame_of(frame::DATA, b""));
    req.extend(frame_of(frame::DATA, b"world"));
    req.extend(frame_of(frame::HEADERS, &[0, 0, 0x23, b'x', b'-', b't', 1, b'1']));
    let (fields, body) = exchange(&c, &req).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"));
    assert_eq!(body, b"hello world");

    // Trailers are checked as a head is: a pseudo-header field in them, or
    // more than a head may hold, fails the request.
    let big = vec![b'v'; 20 << 10];
    let mut over = vec![0, 0, 0x25, b'x', b'-', b'b', b'i', b'g', 0x7f];
    qpack::write_prefix_int(big.len() as u64 - 127, 7, 0, &mut over);
    over.extend_from_slice(&big);
    for (trailers, what) in [(vec![0, 0, 0x51, 0x01, b'/'], "a :path in the trailers"), (over, "trailers over the head cap")] {
        let mut req = head("POST", "/echo", &[]);
        req.extend(frame_of(frame::DATA, b"hello"));
        req.extend(frame_of(frame::HEADERS, &trailers));
        let (fields, _) = exchange(&c, &req).await.unwrap();
        assert_eq!(field(&fields, ":status"), Some("400"), "{what}");
    }

    // A body shorter than its declared length is refused.
    let mut req = head("POST", "/echo", &[("content-length", "10")]);
    req.extend(frame_of(frame::DATA, b"hello"));
    let (fields, _) = exchange(&c, &req).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("400"));

    // A client with a QPACK table of its own cancels every stream it resets
    // on its decoder stream: thousands are fine.
    let mut dec = c.open_uni().await.unwrap();
    dec.write_all(&[http3::stream_type::QPACK_DECODER as u8]).await.unwrap();
    let mut cancels = Vec::new();
    for i in 0..5000u64 {
        qpack::write_prefix_int(i * 4, 6, 0x40, &mut cancels);
    }
    dec.write_all(&cancels).await.unwrap();
    let (fields, _) = exchange(&c, &head("GET", "/x", &[])).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"), "after 5,000 stream cancellations");

    // HEAD: the head alone.
    let (fields, body) = exchange(&c, &head("HEAD", "/x", &[])).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"));
    assert!(body.is_empty());
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_head_resets_its_stream_and_the_connection_serves_on() {
    let s = start().await;
    let c = connect(&s).await;
    let _control = control(&c, &settings()).await;
    for bad in [
        head("GET", "/x", &[("Upper", "1")]),
        head("GET", "/x", &[("connection", "close")]),
        head("GET", "/x", &[("host", "elsewhere")]),             // :authority says localhost
        frame_of(frame::HEADERS, &[0, 0, 0xc0 | 17, 0xc0 | 23]), // no :path
    ] {
        match exchange(&c, &bad).await {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => assert_eq!(code.into_inner(), 0x10e, "H3_MESSAGE_ERROR"),
            other => panic!("not reset: {:?}", other.map(|(f, _)| f)),
        }
    }
    // A head over the server's cap: 431, answered.
    let big = "v".repeat(20 << 10);
    let (fields, _) = exchange(&c, &head("GET", "/x", &[("x-big", &big)])).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("431"));
    let (fields, _) = exchange(&c, &head("GET", "/x", &[])).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"), "the connection still serves");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_close_the_connection_with_their_code() {
    let s = start().await;
    // What breaks the rules, the code it must close with, and what goes on
    // the control stream and on a request stream.
    let cases = [
        ("DATA before HEADERS", 0x105, (settings(), frame_of(frame::DATA, b"x"))),
        ("SETTINGS on a request stream", 0x105, (settings(), frame_of(frame::SETTINGS, b""))),
        ("HTTP/2's PRIORITY type", 0x105, (settings(), frame_of(0x2, b""))),
        ("a dynamic table reference", 0x200, (settings(), frame_of(frame::HEADERS, &[0, 0, 0x80 | 1]))),
        ("a Required Insert Count", 0x200, (settings(), frame_of(frame::HEADERS, &[2, 0, 0xc0 | 17]))),
        ("a bad Huffman string", 0x200, (settings(), frame_of(frame::HEADERS, &[0, 0, 0x51, 0x81, 0xff]))),
        (
            "a dynamic table reference in the trailers",
            0x200,
            (settings(), [head("POST", "/echo", &[]), frame_of(frame::DATA, b"x"), frame_of(frame::HEADERS, &[0, 0, 0x81])].concat()),
        ),
        ("no SETTINGS first", 0x10a, (frame_of(frame::GOAWAY, &[0]), head("GET", "/x", &[]))),
        ("HTTP/2 settings", 0x109, (frame_of(frame::SETTINGS, &[0x2, 0]), head("GET", "/x", &[]))),
        ("HEADERS on the control stream", 0x105, ([settings(), head("GET", "/", &[])].concat(), head("GET", "/x", &[]))),
    ];
    for (what, code, (ctl, req)) in cases {
        let c = connect(&s).await;
        let _control = control(&c, &ctl).await;
        let (mut send, _recv) = c.open_bi().await.unwrap();
        send.write_all(&req).await.unwrap();
        assert_eq!(closed_with(&c).await, code, "{what}");
    }
    // A second control stream, a push stream, a flood on the QPACK encoder stream.
    for (what, code, kind, bytes) in [
        ("a second control stream", 0x103u64, 0u8, settings()),
        ("a push stream", 0x103, 1, vec![0]),
        ("an insertion on the QPACK encoder stream", 0x201, 2, vec![0x20, 0xc0 | 17, 0x01, b'x']),
        ("a table capacity above zero", 0x201, 2, vec![0x3f, 0x01]),
        ("capacity zero said past the bound", 0x201, 2, vec![0x20; 8 << 10]),
        ("a Section Acknowledgment", 0x202, 3, vec![0x80]),
        ("an Insert Count Increment", 0x202, 3, vec![0x01]),
    ] {
        let c = connect(&s).await;
        let _control = control(&c, &settings()).await;
        let mut u = c.open_uni().await.unwrap();
        u.write_all(&[kind]).await.unwrap();
        u.write_all(&bytes).await.unwrap();
        assert_eq!(closed_with(&c).await, code, "{what}");
    }
    // A reset control stream is a closed one.
    let c = connect(&s).await;
    let mut ctl = control(&c, &settings()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    ctl.reset(0u32.into()).unwrap();
    assert_eq!(closed_with(&c).await, 0x104, "the control stream was reset");
    // The control stream closed.
    let c = connect(&s).await;
    let mut ctl = control(&c, &settings()).await;
    ctl.finish().unwrap();
    assert_eq!(closed_with(&c).await, 0x104, "the control stream ended");
    // And the server still serves a well-behaved client.
    let c = connect(&s).await;
    let _control = control(&c, &settings()).await;
    let (fields, _) = exchange(&c, &head("GET", "/x", &[])).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_sends_goaway_then_closes_with_no_error() {
    let s = start().await;
    let c = connect(&s).await;
    let _control = control(&c, &settings()).await;
    let (fields, _) = exchange(&c, &head("GET", "/x", &[])).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"));
    let mut sc = c.accept_uni().await.unwrap();
    let shutdown = tokio::spawn(async move { s.server.shutdown().await });
    // SETTINGS, then a GOAWAY naming the stream after the one served (0).
    let mut got = Vec::new();
    let goaway = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut at = 0;
            while let Some(h) = http3::read_frame_head(&got[at..]) {
                let end = at + h.head_len + h.len as usize;
                if end > got.len() {
                    break;
                }
                if h.ty == frame::GOAWAY {
                    return http3::read_varint(&got[at + h.head_len..end]).unwrap().0;
                }
                at = end;
            }
            match sc.read_chunk(1024, true).await {
                Ok(Some(c)) => {
                    if got.is_empty() {
                        got.extend_from_slice(&c.bytes[1..]); // the stream's type
                    } else {
                        got.extend_from_slice(&c.bytes);
                    }
                }
                other => panic!("the control stream ended without a GOAWAY: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(goaway, 4);
    assert_eq!(closed_with(&c).await, 0x100, "H3_NO_ERROR");
    shutdown.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_during_a_large_answer_lets_it_arrive_whole() {
    let s = start().await;
    // Windows wide enough for the whole answer: quinn takes all of it at
    // once, long before it is sent and acknowledged, which is when a close
    // that did not wait would cut it.
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window((64u32 << 20).into()).receive_window((64u32 << 20).into());
    let c = connect_with(&s, transport).await;
    let _control = control(&c, &settings()).await;
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    send.write_all(&head("GET", "/big", &[])).await.unwrap();
    send.finish().unwrap();
    // The answer has begun: then the server is told to stop.
    let first = recv.read_chunk(64 << 10, true).await.unwrap().unwrap();
    let shutdown = tokio::spawn(async move { s.server.shutdown().await });
    let mut all = first.bytes.to_vec();
    while let Some(c) = recv.read_chunk(1 << 20, true).await.expect("the answer is not cut") {
        all.extend_from_slice(&c.bytes);
    }
    // HEADERS, then DATA frames whose payloads make the whole body.
    let (mut at, mut body) = (0, Vec::with_capacity(8 << 20));
    while at < all.len() {
        let h = http3::read_frame_head(&all[at..]).unwrap();
        if h.ty == frame::DATA {
            body.extend_from_slice(&all[at + h.head_len..at + h.head_len + h.len as usize]);
        }
        at += h.head_len + h.len as usize;
    }
    assert_eq!(body.len(), 8 << 20, "bytes of the answer that arrived");
    assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8), "the answer arrived changed");
    assert_eq!(closed_with(&c).await, 0x100, "H3_NO_ERROR");
    shutdown.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_stream_stays_open_is_answered_at_once_and_extra_bytes_are_stopped() {
    let s = start().await;
    let c = connect(&s).await;
    let _control = control(&c, &settings()).await;
    // Its head, no FIN, then nothing: answered without waiting for a body
    // that a GET does not have (before, the request, and its address's
    // share, were held until the body deadline: 10 s and more).
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    send.write_all(&head("GET", "/x", &[])).await.unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while got.len() < 4096 {
        // (The body deadline, which the answer used to wait for, is 10 s and more.)
        match tokio::time::timeout(Duration::from_secs(8), recv.read(&mut buf)).await.expect("no answer within 8 s") {
            Ok(Some(n)) => got.extend_from_slice(&buf[..n]),
            Ok(None) => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(got.len() > 4096, "the whole answer came ({} bytes)", got.len());
    assert!(started.elapsed() < Duration::from_secs(8), "answered after {:?}, as at the body deadline", started.elapsed());
    // What the client sends after its head is not read: the stream is stopped.
    let stopped = tokio::time::timeout(Duration::from_secs(3), send.stopped()).await.expect("the request side was not stopped");
    assert!(matches!(stopped, Ok(Some(_))), "{stopped:?}");
    // A POST (a body to wait for) is still read to its end.
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    let mut post = head("POST", "/echo", &[]);
    post.extend_from_slice(&frame_of(frame::DATA, b"late"));
    send.write_all(&post).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    send.finish().unwrap();
    let all = recv.read_to_end(1 << 20).await.unwrap();
    assert!(all.windows(4).any(|w| w == b"late"), "the POST's body was not read");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_no_stream_credit_is_closed_at_the_header_deadline() {
    let s = start().await;
    let mut t = quinn::TransportConfig::default();
    // The server cannot open its control stream.
    t.max_concurrent_uni_streams(0u32.into());
    let c = connect_with(&s, t).await;
    let started = std::time::Instant::now();
    let code = tokio::time::timeout(Duration::from_secs(30), c.closed()).await.expect("never closed");
    let took = started.elapsed();
    match code {
        quinn::ConnectionError::ApplicationClosed(a) => assert_eq!(a.error_code.into_inner(), 0x107, "H3_EXCESSIVE_LOAD"),
        other => panic!("closed otherwise: {other}"),
    }
    let deadline = LimitsConfig::default().header_read_timeout.0;
    assert!(took <= deadline + Duration::from_secs(2), "held {took:?}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_arriving_piece_by_piece_share_a_per_connection_budget() {
    let s = start().await;
    let c = connect(&s).await;
    let _control = control(&c, &settings()).await;
    let max_head = LimitsConfig::default().max_header_bytes.0 + 16;
    // Four streams each one byte short of the largest head: the budget (four
    // such heads) is spent.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let (mut send, recv) = c.open_bi().await.unwrap();
        let mut b = Vec::new();
        http3::write_frame_head(frame::HEADERS, max_head, &mut b);
        b.extend(std::iter::repeat_n(0u8, max_head as usize - 1));
        send.write_all(&b).await.unwrap();
        stalled.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A head that came whole takes nothing from the budget: answered.
    let (fields, _) = exchange(&c, &head("GET", "/whole", &[])).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"));
    // A head that comes in two pieces waits for the budget...
    let (mut send, mut recv) = c.open_bi().await.unwrap();
    let big = head("GET", "/pieces", &[("x-pad", &"p".repeat(4000))]);
    send.write_all(&big[..2000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    send.write_all(&big[2000..]).await.unwrap();
    send.finish().unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), recv.read(&mut buf)).await.is_err(),
        "a head in pieces was read while four others held the connection's budget"
    );
    // ...and is answered once one of the four gives its share back.
    let (mut gone, _) = stalled.remove(0);
    gone.reset(0u32.into()).unwrap();
    let mut all = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(Some(n)) = recv.read(&mut buf).await {
            all.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(got.is_ok() && all.len() > 4096, "not answered after a share came back ({} bytes)", all.len());
    s.server.shutdown().await;
}

/// A blind flood of Initials, each a new connection closed at once (what a
/// spoofer can send: Initial keys come from the client's own connection
/// ID), spends at most the unproven budget in handshakes, a tenth of a
/// second's worth and then 1,000 a second per endpoint; the rest get a
/// stateless Retry. An honest client still gets in and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_initials_past_the_unproven_budget_gets_retries_and_honest_clients_still_get_in() {
    let s = start().await;
    let tls = tranzcast_net::tls::client_config(s.ca.as_bytes(), &[b"h3"]).unwrap();
    let quic = Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap());
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut flood = quinn_proto::Endpoint::new(Arc::new(quinn::EndpointConfig::default()), None, false, None);
    // Built first (a key exchange each), sent after: the flood's pace is
    // the socket's, not this machine's crypto.
    let initials = 2000;
    let mut datagrams = Vec::with_capacity(2 * initials);
    for _ in 0..initials {
        let now = std::time::Instant::now();
        let (handle, mut conn) = flood.connect(now, quinn::ClientConfig::new(quic.clone()), s.addr, "localhost").unwrap();
        let mut buf = Vec::with_capacity(2048);
        let first = conn.poll_transmit(now, 1, &mut buf).expect("a client's first Initial");
        buf.truncate(first.size);
        datagrams.push(buf);
        conn.close(now, 0u32.into(), Bytes::new());
        let mut buf = Vec::with_capacity(2048);
        if let Some(close) = conn.poll_transmit(now, 1, &mut buf) {
            buf.truncate(close.size);
            datagrams.push(buf);
        }
        flood.handle_event(handle, quinn_proto::EndpointEvent::drained());
    }
    let started = std::time::Instant::now();
    for (i, d) in datagrams.iter().enumerate() {
        socket.send_to(d, s.addr).await.unwrap();
        // In bursts of 40 datagrams: a default-sized receive buffer holds them.
        if i % 40 == 39 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // The server has read the flood once neither its Retries nor its
    // handshakes grow for half a second; the budget refills for as long as
    // it was reading.
    let seen = || s.stats.quic_retries() + s.stats.h3_connections_by_endpoint().iter().sum::<u64>();
    let (mut last, mut read_by) = (u64::MAX, started.elapsed());
    loop {
        let now = seen();
        if now == last {
            break;
        }
        (last, read_by) = (now, started.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let flood_secs = read_by.as_secs_f64();
    let by_endpoint = s.stats.h3_connections_by_endpoint();
    let busiest = by_endpoint.iter().copied().max().unwrap_or(0) as f64;
    let handshakes: u64 = by_endpoint.iter().sum();
    let retries = s.stats.quic_retries();
    // Each endpoint's budget: a tenth of a second's worth, then 1,000 a second.
    let budget = 100.0 + 1000.0 * flood_secs;
    eprintln!("flood: {handshakes} handshakes ({by_endpoint:?}), {retries} Retries in {flood_secs:.2} s");
    assert!(busiest <= budget, "{busiest} handshakes on one endpoint over {flood_secs:.2} s (budget {budget})");
    assert!(retries >= 100, "{retries} Retries for {initials} Initials, {handshakes} handshakes");
    // An honest client, right after: through a Retry or not, it is answered.
    let c = connect(&s).await;
    let _ctl = control(&c, &settings()).await;
    let (fields, body) = exchange(&c, &head("GET", "/after-the-flood", &[])).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"));
    assert_eq!(body.len(), 4096);
    s.server.shutdown().await;
}

/// A connection whose client grants 16 MiB of credit per stream and can be
/// muted; its control stream is open.
async fn connect_mutable(s: &Server) -> (quinn::Connection, quinn::SendStream, Arc<std::sync::atomic::AtomicBool>) {
    connect_mutable_from(s, [127, 0, 0, 1]).await
}

/// The same from `ip`, another address on the loopback (127.0.0.0/8).
async fn connect_mutable_from(s: &Server, ip: [u8; 4]) -> (quinn::Connection, quinn::SendStream, Arc<std::sync::atomic::AtomicBool>) {
    let tls = tranzcast_net::tls::client_config(s.ca.as_bytes(), &[b"h3"]).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap()));
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window((16u32 << 20).into());
    transport.receive_window((64u32 << 20).into());
    config.transport_config(Arc::new(transport));
    let bind = SocketAddr::new(std::net::Ipv4Addr::from(ip).into(), 0);
    let (endpoint, mute) = tranzcast_net::client::silenceable_endpoint(bind, config).unwrap();
    let c = endpoint.connect(s.addr, "localhost").unwrap().await.unwrap();
    let ctl = control(&c, &settings()).await;
    (c, ctl, mute)
}

/// Asks `path` on `c`, then mutes the client once the server has read the
/// request whole: from then on the server hears no acknowledgement.
async fn ask_then_go_silent(c: &quinn::Connection, mute: &std::sync::atomic::AtomicBool, path: &str) {
    let (mut send, _recv) = c.open_bi().await.unwrap();
    send.write_all(&head("GET", path, &[])).await.unwrap();
    send.finish().unwrap();
    // Resolves once the server has acknowledged the request and its end.
    let _ = send.stopped().await;
    mute.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Asks `/late-small` `n` times at once on `c`, then mutes the client once
/// the server has read every request whole; the streams, to read later.
async fn ask_small_then_go_silent(
    c: &quinn::Connection,
    mute: &std::sync::atomic::AtomicBool,
    n: usize,
) -> Vec<(quinn::SendStream, quinn::RecvStream)> {
    let mut streams = Vec::new();
    for _ in 0..n {
        let (mut send, recv) = c.open_bi().await.unwrap();
        send.write_all(&head("GET", "/late-small", &[])).await.unwrap();
        send.finish().unwrap();
        streams.push((send, recv));
    }
    for (send, _) in &streams {
        let _ = send.stopped().await;
    }
    mute.store(true, std::sync::atomic::Ordering::Relaxed);
    streams
}

/// Limits for the send-window tests: `budget`, and an answer's deadline
/// of 3 s plus its length at 8 MiB/s.
fn send_window_limits(budget: u64) -> LimitsConfig {
    LimitsConfig {
        h3_send_memory: tranzcast_config::ByteSize(budget),
        request_timeout: tranzcast_config::Duration(Duration::from_secs(3)),
        body_min_rate: tranzcast_config::ByteSize(8 << 20),
        ..LimitsConfig::default()
    }
}

/// HTTP/3 body bytes the server has handed to quinn so far.
fn body_bytes_handed(s: &Server) -> u64 {
    let (zero_copy, copied) = s.stats.h3_body_bytes();
    zero_copy + copied
}

/// Waits (at most 10 s) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    let wait = async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.unwrap_or_else(|_| panic!("not within 10 s: {what}"));
}

/// HTTP/3 send windows (what quinn may hold of a connection's answers until
/// the client acknowledges them) come out of the server's budget, grown by
/// each answer's length and only while answers are in hand: an honest
/// client's window is back to the floor once its answer is acknowledged; a
/// client that goes silent has quinn take its whole 7 MiB answer, and the
/// next one only what the budget has left; the silent one's window comes
/// back when its answer is reset at its deadline and its connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_windows_come_out_of_the_server_budget_while_answers_are_unacknowledged() {
    const M: u64 = 1 << 20;
    const FULL: u64 = 8 * M;
    const FLOOR: u64 = 64 << 10;
    let s = start_with(send_window_limits(FULL)).await;
    let handed = || body_bytes_handed(&s);
    let windows = || s.stats.h3_send_window_bytes();
    // An honest client: an 8 MiB answer whole, then its window back to the floor.
    let c = connect(&s).await;
    let _c_ctl = control(&c, &settings()).await;
    let (fields, body) = exchange(&c, &head("GET", "/big", &[])).await.unwrap();
    assert_eq!(field(&fields, ":status"), Some("200"));
    assert_eq!(body.len(), 8 << 20);
    assert!(body.iter().enumerate().all(|(i, &v)| v == (i % 251) as u8), "the answer whole, in order");
    until("the honest client's window back to the floor", || windows() == FLOOR).await;
    c.close(0u32.into(), b"done");
    until("the honest client's floor given back", || windows() == 0).await;
    // A client that goes silent after asking for 7 MiB (of a length not
    // known in advance, so the full window): quinn takes all of it, unacknowledged.
    let (a, _a_ctl, mute_a) = connect_mutable(&s).await;
    let before = handed();
    ask_then_go_silent(&a, &mute_a, "/late/7340032").await;
    until("quinn holding the whole 7 MiB", || handed() - before == 7 * M).await;
    assert_eq!(windows(), FULL);
    // The next one, the budget spent: the floor, and quinn takes no more of
    // its answer (counted per gathered write of about 64 KiB).
    let (b, _b_ctl, mute_b) = connect_mutable(&s).await;
    let before = handed();
    ask_then_go_silent(&b, &mute_b, "/late/4194304").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pinned = handed() - before;
    assert!(pinned <= FLOOR, "{pinned} bytes taken on a 64 KiB window");
    assert_eq!(windows(), FULL + FLOOR, "the budget and one floor");
    // a's answer is reset at its deadline (about 4 s) and a closed: its
    // window goes back to the budget.
    until("the silent client's window given back", || windows() == FLOOR).await;
    drop((a, b));
    s.server.shutdown().await;
}

/// One address's connections hold at most its share of the send-window
/// budget beyond their floors (a sixteenth, at least a full window): a client that never
/// acknowledges cannot hold every other client to the floor by opening
/// more connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_the_send_window_budget() {
    const M: u64 = 1 << 20;
    const FULL: u64 = 8 * M;
    const FLOOR: u64 = 64 << 10;
    // Four full windows; an address's share: one.
    let s = start_with(send_window_limits(4 * FULL)).await;
    let handed = || body_bytes_handed(&s);
    let windows = || s.stats.h3_send_window_bytes();
    // 127.0.0.2 goes silent on 7 MiB: its window, full, is its whole share.
    let (a, _a_ctl, mute_a) = connect_mutable_from(&s, [127, 0, 0, 2]).await;
    let before = handed();
    ask_then_go_silent(&a, &mute_a, "/late/7340032").await;
    until("quinn holding the whole 7 MiB", || handed() - before == 7 * M).await;
    assert_eq!(windows(), FULL);
    assert_eq!(s.stats.h3_send_window_capped(), 0, "a full window is within the share");
    // Its second connection gets what is left of its share beyond the
    // floors (64 KiB) and its own floor, with three quarters of the budget free.
    let (a2, _a2_ctl, mute_a2) = connect_mutable_from(&s, [127, 0, 0, 2]).await;
    let before = handed();
    ask_then_go_silent(&a2, &mute_a2, "/late/4194304").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pinned = handed() - before;
    assert!(pinned <= 2 * FLOOR, "{pinned} bytes taken past the address's share");
    assert_eq!(windows(), FULL + 2 * FLOOR);
    let capped = s.stats.h3_send_window_capped();
    assert!(capped >= 1, "the share's hold counted in /metrics");
    // Another address, silent too: quinn takes its whole 4 MiB.
    let (b, _b_ctl, mute_b) = connect_mutable_from(&s, [127, 0, 0, 3]).await;
    let before = handed();
    ask_then_go_silent(&b, &mute_b, "/late/4194304").await;
    until("quinn holding the other address's 4 MiB", || handed() - before == 4 * M).await;
    assert_eq!(windows(), 2 * FULL + 2 * FLOOR);
    assert_eq!(s.stats.h3_send_window_capped(), capped, "another address is not held to the first one's share");
    drop((a, a2, b));
    s.server.shutdown().await;
}

/// Small answers wait for their acknowledgement in their connection's list,
/// not each on its own: the window still holds them until the client
/// acknowledges them (then it goes back to the floor), and a client that
/// never does has them reset at their deadline and its connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_answers_keep_their_window_until_acknowledged_and_are_reset_at_their_deadline() {
    const FLOOR: u64 = 64 << 10;
    let s = start_with(LimitsConfig {
        // An answer's deadline: 2 s (plus 4 KiB at 8 MiB/s).
        request_timeout: tranzcast_config::Duration(Duration::from_secs(2)),
        body_min_rate: tranzcast_config::ByteSize(8 << 20),
        ..LimitsConfig::default()
    })
    .await;
    let windows = || s.stats.h3_send_window_bytes();
    // An honest client: forty 4 KiB answers, at once; its window back to the floor.
    let c = connect(&s).await;
    let _c_ctl = control(&c, &settings()).await;
    let asks = (0..40).map(|i| {
        let c = c.clone();
        async move { exchange(&c, &head("GET", &format!("/small/{i}"), &[])).await.unwrap() }
    });
    for (fields, body) in futures_util::future::join_all(asks).await {
        assert_eq!(field(&fields, ":status"), Some("200"));
        assert_eq!(body.len(), 4096);
    }
    until("the honest client's window back to the floor", || windows() == FLOOR).await;
    c.close(0u32.into(), b"done");
    until("the honest client's floor given back", || windows() == 0).await;
    // A client that goes silent after asking for three 4 KiB answers: each
    // grows its window by its length, and the window stays so while quinn
    // holds them, past their first look.
    let (a, _a_ctl, mute) = connect_mutable(&s).await;
    let opened = std::time::Instant::now();
    let streams = ask_small_then_go_silent(&a, &mute, 3).await;
    until("three small answers in the window", || windows() == FLOOR + 3 * 4096).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(windows(), FLOOR + 3 * 4096, "the window given back while quinn holds the answers");
    assert!(a.close_reason().is_none(), "closed before the answers' deadline");
    // At their deadline (about 2.3 s after the ask), reset and the
    // connection closed: its window goes back to the budget.
    until("the silent client's window given back", || windows() == 0).await;
    let took = opened.elapsed();
    assert!(took >= Duration::from_secs(2), "closed after {took:?}, before the deadline");
    drop((a, streams));
    // A client silent for a while, past the answers' first look, then
    // acknowledging again (quinn sends them again): they settle, the
    // window goes back to the floor, the connection stays.
    let (b, _b_ctl, mute) = connect_mutable(&s).await;
    let mut streams = ask_small_then_go_silent(&b, &mute, 2).await;
    until("two small answers in the window", || windows() == FLOOR + 2 * 4096).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(windows(), FLOOR + 2 * 4096);
    mute.store(false, std::sync::atomic::Ordering::Relaxed);
    until("the window back to the floor once acknowledged", || windows() == FLOOR).await;
    for (_, recv) in &mut streams {
        let frames = recv.read_to_end(1 << 20).await.unwrap();
        assert!(frames.ends_with(&[b'x'; 4096]), "the answer whole: {} bytes of frames", frames.len());
    }
    assert!(b.close_reason().is_none());
    drop((b, streams));
    s.server.shutdown().await;
}
