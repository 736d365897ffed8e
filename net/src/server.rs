//! One handler behind three listeners: HTTP/1.1 + HTTP/2 over TLS (TCP),
//! HTTP/3 (UDP, same port number) and optional plain HTTP (TCP), with the
//! same limits on all of them (`LimitsConfig`, `docs/operations.md`).
//!
//! What a client may take, and where it is enforced:
//! - **connections**: a slot per connection, in total and per address, and
//!   a rate of new connections per address, checked before any TLS or QUIC
//!   work (QUIC: once the address is proven); an address caught abusing
//!   serves a penalty. Guards in `guards.rs` hold each count.
//! - **time**: a connection must complete its handshake and first request
//!   head within `header_read_timeout` (on HTTP/1.1, every next head within
//!   that of the last answer); it is closed after `idle_timeout` with nothing in hand, or with
//!   requests in hand and no answer byte sent; a body must arrive at
//!   `body_min_rate`; a response head must come within `request_timeout`.
//! - **sizes**: request heads (hyper, h2 and h3 settings, 431), header
//!   count, bodies per route (413 before a byte is read when the length is
//!   declared), bodies in memory server-wide.
//! - **work in hand**: every request holds an `InFlight` guard from arrival
//!   until its response body ends or is dropped, however the request ends;
//!   past `max_concurrent_requests` (or its address's share) new ones get 503.
//! - **cancellations**: an address that cancels requests before their
//!   answer faster than its budget allows has its connection closed.
//! - **CPU**: one new connection and one handshake step per scheduler turn,
//!   so a flood of new connections queues in the kernel, not ahead of the
//!   requests of the connections already served.
//!
//! The application decides on the request head alone ([`Handler::admit_with`]:
//! credentials, rate limits, the body cap of the route) before any body byte
//! is read; then gets the whole body ([`Handler`]'s call). `request.rs` is
//! that path; this file the listeners and connections.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tranzcast_config::LimitsConfig;

use self::guards::{Active, Close, ConnGauge, ConnPermit, ConnState, Slots, TaskGuard, Tracked, watchdog};
use self::request::{ChunkSource, H3Body, process};
use crate::coalesce::WriteCoalescer;
use crate::limits::ClientKey;
use crate::stats::{Refusal, ServerStats};
use crate::tls::ALPN_H3;
use crate::{NetError, TlsIdentity};

mod guards;
mod penalty_filter;
mod request;

/// A response body: streamed, errors as I/O errors.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A whole body from bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never: Infallible| match never {}).boxed_unsync()
}

/// The JSON error answer every server gives: `{"error": {"code", "reason"}}` with its status.
pub fn error_response(status: StatusCode, code: &str, reason: &str) -> Response<Body> {
    let v = tranzcast_proto::answers::ErrorBody::new(code, reason);
    let mut r = Response::new(full(serde_json::to_string(&v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 over TLS.
    H1,
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/3 over QUIC.
    H3,
    /// Plain HTTP/1.1 (local use).
    Plain,
}

impl Protocol {
    /// Short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::H1 => "h1",
            Protocol::H2 => "h2",
            Protocol::H3 => "h3",
            Protocol::Plain => "plain",
        }
    }

    fn index(self) -> usize {
        match self {
            Protocol::H1 => 0,
            Protocol::H2 => 1,
            Protocol::H3 => 2,
            Protocol::Plain => 3,
        }
    }
}

/// Who asked, and how.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    /// The client's address.
    pub peer: SocketAddr,
    /// The protocol.
    pub protocol: Protocol,
}

/// How large a body a route takes, decided from the request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// `limits.max_body`: every route but uploads.
    Small,
    /// `limits.max_upload_body`: authenticated uploads (staging pushes, publishing).
    Upload,
}

/// A request turned away on its head alone: answered (see [`error_response`])
/// before any body byte is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The status.
    pub status: StatusCode,
    /// Why, for `/metrics`.
    pub reason: Refusal,
    /// The machine-readable code of the JSON answer.
    pub code: &'static str,
    /// The reason for people.
    pub message: String,
    /// Seconds to send in `Retry-After`, if any.
    pub retry_after: Option<u64>,
}

impl Refused {
    /// A refusal answered with `status` and `{"error": {"code", "reason"}}`.
    pub fn new(status: StatusCode, reason: Refusal, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, reason, code, message: message.into(), retry_after: None }
    }

    /// The same, asking the client to come back after `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    fn response(&self) -> Response<Body> {
        let mut r = error_response(self.status, self.code, &self.message);
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

type AdmitFn = dyn Fn(&mut http::request::Parts, &RequestContext) -> Result<BodyLimit, Refused> + Send + Sync;
type CallFn = dyn Fn(Request<Bytes>, RequestContext) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync;

/// The application behind a server: `admit` decides on the request head
/// (it may add extensions, such as checked credentials, for the call), then
/// the call gets the request with its whole body.
#[derive(Clone)]
pub struct Handler {
    admit: Arc<AdmitFn>,
    call: Arc<CallFn>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

impl Handler {
    /// Replaces the admission check (the default admits every request with a small body).
    pub fn admit_with<A>(mut self, admit: A) -> Self
    where
        A: Fn(&mut http::request::Parts, &RequestContext) -> Result<BodyLimit, Refused> + Send + Sync + 'static,
    {
        self.admit = Arc::new(admit);
        self
    }
}

/// Wraps an async function as a [`Handler`] that admits every request with a small body.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Bytes>, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    Handler { admit: Arc::new(|_, _| Ok(BodyLimit::Small)), call: Arc::new(move |req, cx| Box::pin(f(req, cx))) }
}

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// TLS address: TCP for h1/h2, UDP for h3, same port.
    pub https: SocketAddr,
    /// Optional plain-HTTP address.
    pub plain: Option<SocketAddr>,
    /// Certificate and key.
    pub identity: TlsIdentity,
    /// What clients may take.
    pub limits: LimitsConfig,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
    /// Counters, shared with the application (its `/metrics`, its load).
    pub stats: Arc<ServerStats>,
}

/// A running server. Dropping it does not stop it: call [`HttpServer::shutdown`].
#[derive(Debug)]
pub struct HttpServer {
    /// Bound TLS address (TCP and UDP).
    pub https_addr: SocketAddr,
    /// Bound plain address.
    pub plain_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    /// Cuts every connection (see [`HttpServer::kill`]).
    kill: watch::Sender<bool>,
    /// Stops answering (see [`HttpServer::freeze`]).
    freeze: watch::Sender<bool>,
    /// The accept loops.
    accepts: JoinSet<()>,
    endpoint: quinn::Endpoint,
    drain: Duration,
    stats: Arc<ServerStats>,
}

/// Requests to `/healthz` and `/metrics` in hand at once: they skip load
/// shedding (an overloaded server still says so) but have this budget.
const EXEMPT_MAX: i64 = 64;

/// After a connection is told to close (idle, cancel flood), how long its
/// requests in hand may take to finish before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Descriptors kept for everything but client connections (the store, upstream calls, logs).
const FD_RESERVE: u64 = 256;

impl HttpServer {
    /// Binds every listener and starts serving with `handler`.
    pub async fn bind(opts: ServerOptions, handler: Handler) -> Result<Self, NetError> {
        let limits = opts.limits;
        // TCP and UDP on the same port number: bind TCP (maybe port 0), then
        // UDP on the port it got; retry if that UDP port is taken.
        let mut attempt = 0;
        let (tcp, endpoint) = loop {
            let tcp = TcpListener::bind(opts.https).await.map_err(NetError::io(format!("bind tcp {}", opts.https)))?;
            let addr = tcp.local_addr().map_err(NetError::io("local addr"))?;
            let mut tls = opts.identity.server_config(&[ALPN_H3])?;
            tls.max_early_data_size = 0;
            let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
            let mut qcfg = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
            let mut transport = quinn::TransportConfig::default();
            transport.max_concurrent_bidi_streams(limits.h3_max_concurrent_streams.into());
            // h3 needs three (control, QPACK encoder and decoder), plus room for grease.
            transport.max_concurrent_uni_streams(8u32.into());
            // Clients send small requests: what a client may make us buffer
            // unread stays small (uploads go over HTTP/2).
            transport.stream_receive_window((256u32 << 10).into());
            transport.receive_window((1u32 << 20).into());
            transport.send_window(64 << 20);
            transport.max_idle_timeout(Some(limits.idle_timeout.0.try_into().map_err(|_| NetError::H3("idle timeout".into()))?));
            qcfg.transport_config(Arc::new(transport));
            match quinn::Endpoint::server(qcfg, addr) {
                Ok(ep) => break (tcp, ep),
                Err(e) if opts.https.port() == 0 && attempt < 10 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "udp port taken, retrying");
                }
                Err(e) => return Err(NetError::io(format!("bind udp {addr}"))(e)),
            }
        };
        let https_addr = tcp.local_addr().map_err(NetError::io("local addr"))?;
        let (stop, stop_rx) = watch::channel(false);
        let (kill, kill_rx) = watch::channel(false);
        let (freeze, freeze_rx) = watch::channel(false);
        let stops = Stops { kill: kill_rx, freeze: freeze_rx };
        let max_connections = match crate::fd_limit() {
            Some(n) if u64::from(limits.max_connections) + FD_RESERVE > n => {
                let cap = n.saturating_sub(FD_RESERVE).max(16) as u32;
                tracing::warn!(
                    configured = limits.max_connections,
                    open_files = n,
                    cap,
                    "limits.max_connections is above what this process may open; capped (raise the open-files limit)"
                );
                cap
            }
            _ => limits.max_connections,
        };
        let shared = Arc::new(Shared::new(handler, limits, opts.stats.clone(), https_addr.port()));
        let slots = Arc::new(Slots::new(&limits, max_connections));
        let mut accepts = JoinSet::new();
        let tls_cfg = Arc::new(opts.identity.server_config(&[b"h2", b"http/1.1"])?);
        accepts.spawn(accept_tcp(tcp, Some(tls_cfg), shared.clone(), slots.clone(), stop_rx.clone(), stops.clone()));
        let plain_addr = match opts.plain {
            Some(a) => {
                let l = TcpListener::bind(a).await.map_err(NetError::io(format!("bind tcp {a}")))?;
                let bound = l.local_addr().map_err(NetError::io("local addr"))?;
                accepts.spawn(accept_tcp(l, None, shared.clone(), slots.clone(), stop_rx.clone(), stops.clone()));
                Some(bound)
            }
            None => None,
        };
        accepts.spawn(accept_h3(endpoint.clone(), shared, slots, max_connections, stop_rx, stops));
        tracing::info!(%https_addr, ?plain_addr, max_connections, "listening (h1, h2, h3)");
        Ok(Self { https_addr, plain_addr, stop, kill, freeze, accepts, endpoint, drain: opts.drain, stats: opts.stats })
    }

    /// Stops answering anything, as a machine that died or fell off the
    /// network: connections stay open but nothing more is sent on them, new
    /// ones are not served. Clients find out only by their timeouts. Ended
    /// by [`HttpServer::kill`] or [`HttpServer::shutdown`].
    pub fn freeze(&self) {
        let _ = self.freeze.send(true);
    }

    /// Stops at once, as a crash would: no drain; connections are cut
    /// mid-response (load tests kill servers with it).
    pub async fn kill(mut self) {
        self.drain = Duration::ZERO;
        let _ = self.kill.send(true);
        self.shutdown().await;
    }

    /// Stops accepting, lets requests in flight finish (up to the drain time), then closes.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.accepts.join_next().await.is_some() {}
        if tokio::time::timeout(self.drain, tasks_done(&self.stats)).await.is_err() {
            tracing::warn!("drain timed out; closing remaining connections");
            let _ = self.kill.send(true);
            // Cut connections unwind at once: they hold the handler (and its state).
            let _ = tokio::time::timeout(Duration::from_secs(5), tasks_done(&self.stats)).await;
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Resolves once no connection or request task of the server is alive.
async fn tasks_done(stats: &ServerStats) {
    loop {
        let idle = stats.tasks_idle.notified();
        if stats.tasks() <= 0 {
            return;
        }
        idle.await;
    }
}

/// What every connection of a server shares.
struct Shared {
    handler: Handler,
    limits: LimitsConfig,
    stats: Arc<ServerStats>,
    /// Body bytes that may be held in memory at once, server-wide.
    body_memory: Arc<Semaphore>,
    alt_svc: Option<HeaderValue>,
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    h3: h3::server::Builder,
    /// Handshake steps that may be runnable at once (see [`tls_handshake`]).
    handshakes: Semaphore,
}

impl Shared {
    fn new(handler: Handler, limits: LimitsConfig, stats: Arc<ServerStats>, port: u16) -> Self {
        // No hyper header timer on HTTP/1.1 (it set and cancelled a timer for
        // every request head): the connection's watchdog holds the same
        // deadline, the first head within header_read_timeout of the
        // connection, each next one within header_read_timeout of the
        // previous request's end (ConnState::keep_alive_h1).
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.max_header_size(limits.max_header_bytes.0 as usize).max_headers(limits.max_headers as usize);
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.max_header_bytes.0 as u32);
        let mut h3 = h3::server::builder();
        h3.max_field_section_size(limits.max_header_bytes.0);
        Self {
            handler,
            limits,
            stats,
            body_memory: Arc::new(Semaphore::new(limits.max_body_memory.0.min(Semaphore::MAX_PERMITS as u64) as usize)),
            alt_svc: HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).ok(),
            h1,
            h2,
            h3,
            handshakes: Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        }
    }
}

// ---------------------------------------------------------------- TCP

async fn accept_tcp(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
    stops: Stops,
) {
    let mut freeze = stops.freeze.clone();
    let mut filter = penalty_filter::PenaltyFilter::new(&slots);
    loop {
        let (sock, peer) = tokio::select! {
            () = filter.due() => {
                filter.apply(&listener, &shared.stats);
                continue;
            }
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: the connection waits in the backlog.
                    tracing::warn!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
            // Frozen: accept nothing more (the kernel's backlog still
            // completes handshakes, as on a hung machine), until stopped.
            () = until(&mut freeze) => { let _ = stop.changed().await; break }
        };
        let permit = match ConnPermit::take(&slots, peer) {
            Ok(p) => p,
            Err(why) => {
                shared.stats.refuse(why);
                // Reset, not closed: no FIN exchange and no TIME_WAIT socket
                // kept a minute per refusal (a reconnecting flood of them
                // costs the kernel's CPU in bursts, ahead of everyone's packets).
                let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
                drop(sock);
                // A turn each, as for the connections taken.
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let _ = socket2::SockRef::from(&sock).set_tcp_notsent_lowat(NOTSENT_LOWAT);
        let (shared2, tls, stop, stops) = (shared.clone(), tls.clone(), stop.clone(), stops.clone());
        TaskGuard::spawn(&shared.stats, async move {
            if stops.run(serve_tcp(sock, peer, tls, shared2, stop, &permit)).await.is_none() {
                tracing::debug!(%peer, "connection cut (kill)");
            }
        });
        // One new connection per turn of the scheduler: a burst of thousands
        // queues in the kernel's backlog, not ahead of the requests of the
        // connections already served (an idle server still accepts at once).
        tokio::task::yield_now().await;
    }
}

/// Bytes a TCP connection may hold written but not yet sent. Past this the
/// response bodies wait in the server, where a cancelled HTTP/2 stream's
/// bytes are dropped: in the kernel's buffer (megabytes, autotuned) they
/// would still go out, and a client that cancels (a lost race, a segment
/// moved to a faster source) would pay for them on a slow link.
const NOTSENT_LOWAT: u32 = 128 << 10;

async fn serve_tcp(
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    permit: &ConnPermit,
) {
    let conn = ConnState::new(permit);
    let mut dog = Box::pin(watchdog(conn.clone(), shared.limits));
    let stats = &shared.stats;
    let (mut stream, protocol) = match tls {
        None => {
            let _gauge = ConnGauge::new(stats, Protocol::Plain);
            if !first_bytes(&sock, &mut dog, &mut stop, stats, permit).await {
                return;
            }
            let cx = RequestContext { peer, protocol: Protocol::Plain };
            conn.keep_alive_h1(&shared.limits);
            let c = shared.h1.serve_connection(TokioIo::new(sock), service(&shared, &conn, cx));
            return Box::pin(drive(c, &conn, dog, &mut stop, stats, permit, true)).await;
        }
        Some(cfg) => {
            // The handshake counts against the header deadline (the watchdog's first one).
            let handshake = tokio::select! {
                r = Box::pin(tls_handshake(sock, cfg, &shared.handshakes)) => Some(r),
                _ = &mut dog => None,
                _ = stop.changed() => return,
            };
            match handshake {
                Some(Ok(s)) => {
                    let p = if s.get_ref().1.alpn_protocol() == Some(b"h2") { Protocol::H2 } else { Protocol::H1 };
                    (s, p)
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    stats.refuse(Refusal::Handshake);
                    permit.slots.strike(permit.key, stats);
                    return;
                }
                None => {
                    stats.refuse(Refusal::Handshake);
                    permit.slots.strike(permit.key, stats);
                    return;
                }
            }
        }
    };
    let _gauge = ConnGauge::new(stats, protocol);
    // Nothing more is built (hyper's connection, its buffers, HTTP/2's
    // tables) until the client sends its first bytes: a connection that
    // never asks anything costs its TLS state only. Bytes that came with the
    // handshake's last flight are already decrypted and waiting.
    // (The hyper connection below is boxed for the same reason: the task of
    // an idle connection is not sized for a connection that is serving.)
    let waiting = stream.get_mut().1.process_new_packets().map(|s| s.plaintext_bytes_to_read()).unwrap_or(1);
    if waiting == 0 && !first_bytes(stream.get_ref().0, &mut dog, &mut stop, stats, permit).await {
        return;
    }
    let cx = RequestContext { peer, protocol };
    if protocol == Protocol::H2 {
        // h2 writes and flushes each frame alone (see coalesce.rs).
        let c = shared.h2.serve_connection(TokioIo::new(WriteCoalescer::new(stream)), service(&shared, &conn, cx));
        Box::pin(drive(c, &conn, dog, &mut stop, stats, permit, false)).await
    } else {
        conn.keep_alive_h1(&shared.limits);
        let c = shared.h1.serve_connection(TokioIo::new(stream), service(&shared, &conn, cx));
        Box::pin(drive(c, &conn, dog, &mut stop, stats, permit, true)).await
    }
}

/// Waits until the client has sent something (or the header deadline
/// passes: then counted, and a strike for its address). False: give up.
async fn first_bytes(
    sock: &TcpStream,
    dog: &mut Pin<Box<impl Future<Output = Close>>>,
    stop: &mut watch::Receiver<bool>,
    stats: &ServerStats,
    permit: &ConnPermit,
) -> bool {
    tokio::select! {
        r = sock.readable() => r.is_ok(),
        why = dog.as_mut() => {
            why.count(stats);
            if why == Close::HeaderTimeout {
                permit.slots.strike(permit.key, stats);
            }
            false
        }
        _ = stop.changed() => false,
    }
}

/// A TLS handshake whose CPU step, the ClientHello's key exchange and
/// signature (done inside `into_stream`, synchronously), holds one of the
/// server's `handshakes` permits (one per core) until the task's next turn.
/// A flood of new connections then gets at most that many such steps per
/// turn of the scheduler: the others wait parked, not in the run queue where
/// established connections' requests would queue behind thousands of them.
/// Waiting for the client's bytes holds no permit, so a slow network does
/// not slow other handshakes.
async fn tls_handshake(
    sock: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    gate: &Semaphore,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), sock).await?;
    let accept = {
        let _step = gate.acquire().await.map_err(std::io::Error::other)?;
        let accept = start.into_stream(cfg);
        // Held to the next turn: the steps waiting behind this one stay parked meanwhile.
        tokio::task::yield_now().await;
        accept
    };
    accept.await
}

/// The hyper service of one connection: every request through [`process`],
/// its guard riding on the response body.
fn service(
    shared: &Arc<Shared>,
    conn: &Arc<ConnState>,
    cx: RequestContext,
) -> impl hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send + 'static> + Send + 'static
{
    let (shared, conn) = (shared.clone(), conn.clone());
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let (shared, conn) = (shared.clone(), conn.clone());
        async move {
            let active = Active::new(&conn);
            let (parts, mut body) = req.into_parts();
            let (resp, guard) = process(&shared, &conn, parts, &mut body, cx, Some(active)).await;
            if !HttpBody::is_end_stream(&body) {
                // Refused on its head with its body unread. What is left, if
                // small and already here, is read: HTTP/2 would otherwise
                // reset the stream, and h2 counts such resets of its own
                // towards closing the connection (a busy client refused with
                // 429 a thousand times would be cut as a reset flood).
                let drain = async {
                    let mut left: usize = 64 << 10;
                    while let Some(Ok(c)) = body.next_chunk().await {
                        left = left.saturating_sub(c.len());
                        if left == 0 {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_millis(50), drain).await;
            }
            Ok::<_, Infallible>(resp.map(|body| Tracked { body, guard }.boxed_unsync()))
        }
    })
}

/// Runs a hyper connection until it ends, closing it gracefully when the
/// watchdog or the server says so.
async fn drive<C>(
    c: C,
    conn: &ConnState,
    mut dog: Pin<Box<impl Future<Output = Close>>>,
    stop: &mut watch::Receiver<bool>,
    stats: &ServerStats,
    permit: &ConnPermit,
    h1: bool,
) where
    C: GracefulConnection<Error = hyper::Error>,
{
    tokio::pin!(c);
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            r = c.as_mut() => {
                if let Err(e) = r {
                    if h2_calmed(&e) {
                        // h2's own checks (resets before a stream was
                        // accepted, too many error resets) ended it: a flood,
                        // its address serves the same penalty as ours.
                        stats.refuse(Refusal::CancelFlood);
                        permit.slots.penalize(permit.key, stats);
                    } else if e.is_timeout() {
                        // hyper's header timer: a head that stopped arriving (or, on
                        // HTTP/1.1 keep-alive, no next request in time).
                        if conn.requests.load(Ordering::Relaxed) == 0 {
                            Close::HeaderTimeout.count(stats);
                            permit.slots.strike(permit.key, stats);
                        } else {
                            Close::Idle.count(stats);
                        }
                    } else if e.is_parse_too_large() {
                        stats.refuse(Refusal::HeadersTooLarge);
                    } else if e.is_parse() {
                        stats.refuse(Refusal::Malformed);
                    }
                    tracing::debug!(error = %e, "connection ended");
                }
                return;
            }
            why = &mut dog, if grace.is_none() && !stopping => {
                why.count(stats);
                if why == Close::HeaderTimeout {
                    permit.slots.strike(permit.key, stats);
                }
                if why == Close::CancelFlood {
                    // Its address may open no connection for a while: a
                    // flood that reconnects at once would go on costing handshakes.
                    permit.slots.penalize(permit.key, stats);
                }
                if h1 && matches!(why, Close::HeaderTimeout | Close::Idle) {
                    // Nothing in hand, and a head may be half in: HTTP/1.1
                    // has no close to announce, and hyper would wait for it.
                    return;
                }
                c.as_mut().graceful_shutdown();
                grace = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                c.as_mut().graceful_shutdown();
            }
            () = async { if let Some(g) = grace.as_mut() { g.await } }, if grace.is_some() => return,
        }
    }
}

/// Whether an HTTP/2 connection ended because h2 told its peer to calm down
/// (GOAWAY with ENHANCE_YOUR_CALM: a reset or frame flood).
fn h2_calmed(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2e) = s.downcast_ref::<h2::Error>() {
            return h2e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
        }
        source = s.source();
    }
    false
}

/// What a connection task watches besides its own work.
#[derive(Clone)]
struct Stops {
    kill: watch::Receiver<bool>,
    freeze: watch::Receiver<bool>,
}

impl Stops {
    /// Runs `conn` until it ends (Some) or the server is killed (None, the
    /// connection dropped: its socket closes at once). Frozen, `conn` is kept
    /// but no longer polled: open, silent.
    async fn run<T>(mut self, conn: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(conn);
        let mut killed = self.kill.clone();
        tokio::select! {
            r = &mut conn => Some(r),
            () = until(&mut killed) => None,
            () = until(&mut self.freeze) => {
                until(&mut self.kill).await;
                None
            }
        }
    }
}

/// Resolves once the flag is set (or its sender is gone).
async fn until(flag: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across awaits.
    let _ = flag.wait_for(|v| *v).await;
}

// ---------------------------------------------------------------- HTTP/3

async fn accept_h3(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    max_connections: u32,
    mut stop: watch::Receiver<bool>,
    stops: Stops,
) {
    let mut freeze = stops.freeze.clone();
    let unproven = Arc::new(AtomicU32::new(0));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = stop.changed() => break,
            () = until(&mut freeze) => { let _ = stop.changed().await; break }
        };
        let peer = incoming.remote_address();
        // A QUIC Initial's source address may be spoofed: until the client
        // proves it (by completing the handshake, or a Retry round trip),
        // nothing is charged to that address (its rate, slots, strikes), or
        // anyone could get a victim refused by sending Initials in its name.
        // Unproven handshakes share a small pool; past it, when the server is
        // busy, or when the address is serving a penalty, the answer is a
        // stateless Retry, which a spoofer cannot complete.
        let validated = incoming.remote_address_validated();
        let penalized = slots.penalized(ClientKey::of(peer.ip()));
        let busy = slots.open_count() > max_connections / 2 || unproven.load(Ordering::Relaxed) >= UNPROVEN_MAX;
        if !validated && (busy || penalized) {
            let _ = incoming.retry();
            tokio::task::yield_now().await;
            continue;
        }
        let permit = if validated {
            match ConnPermit::take(&slots, peer) {
                Ok(p) => Some(p),
                Err(why) => {
                    shared.stats.refuse(why);
                    incoming.refuse();
                    tokio::task::yield_now().await;
                    continue;
                }
            }
        } else {
            None
        };
        let pending = (!validated).then(|| Unproven::new(&unproven));
        let (shared2, slots2, stop, stops) = (shared.clone(), slots.clone(), stop.clone(), stops.clone());
        TaskGuard::spawn(&shared.stats, async move {
            let run = serve_h3(incoming, peer, shared2, slots2, stop, stops.clone(), permit, pending);
            if stops.run(run).await.is_none() {
                tracing::debug!(%peer, "h3 connection cut (kill)");
            }
        });
        tokio::task::yield_now().await;
    }
}

/// Handshakes from addresses not yet proven, at most this many at once.
const UNPROVEN_MAX: u32 = 256;

/// An unproven QUIC handshake's place in the pool.
struct Unproven(Arc<AtomicU32>);

impl Unproven {
    fn new(n: &Arc<AtomicU32>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n.clone())
    }
}

impl Drop for Unproven {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_h3(
    incoming: quinn::Incoming,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
    stops: Stops,
    permit: Option<ConnPermit>,
    pending: Option<Unproven>,
) {
    let stats = &shared.stats;
    let setup = async {
        let connecting = {
            // quinn answers the client's Initial (key exchange, signature) in
            // accept(): one such step at a time per core (see tls_handshake).
            let _step = shared.handshakes.acquire().await.map_err(|e| e.to_string())?;
            let c = incoming.accept().map_err(|e| e.to_string())?;
            tokio::task::yield_now().await;
            c
        };
        let c = connecting.await.map_err(|e| e.to_string())?;
        let h: h3::server::Connection<h3_quinn::Connection, Bytes> =
            shared.h3.build(h3_quinn::Connection::new(c.clone())).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((c, h))
    };
    let (quic, mut h3conn) = tokio::select! {
        r = tokio::time::timeout(shared.limits.header_read_timeout.0, Box::pin(setup)) => match r {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "quic handshake failed");
                stats.refuse(Refusal::Handshake);
                return;
            }
            Err(_) => {
                stats.refuse(Refusal::Handshake);
                // Only a proven address is struck (see accept_h3).
                if let Some(p) = &permit {
                    p.slots.strike(p.key, stats);
                }
                return;
            }
        },
        _ = stop.changed() => return,
    };
    // The handshake proved the address: now it is charged.
    drop(pending);
    let permit = match permit {
        Some(p) => p,
        None => match ConnPermit::take(&slots, peer) {
            Ok(p) => p,
            Err(why) => {
                stats.refuse(why);
                quic.close(0u32.into(), b"refused");
                return;
            }
        },
    };
    let permit = &permit;
    let conn = ConnState::new(permit);
    let mut dog = Box::pin(watchdog(conn.clone(), shared.limits));
    let _gauge = ConnGauge::new(stats, Protocol::H3);
    let cx = RequestContext { peer, protocol: Protocol::H3 };
    let mut forced = false;
    loop {
        let resolver = tokio::select! {
            r = h3conn.accept() => match r {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => { tracing::debug!(error = %e, "h3 accept"); break; }
            },
            why = &mut dog => {
                why.count(stats);
                if why == Close::HeaderTimeout {
                    permit.slots.strike(permit.key, stats);
                }
                if why == Close::CancelFlood {
                    permit.slots.penalize(permit.key, stats);
                }
                forced = true;
                // GOAWAY goes out on the control stream, which waits for the
                // client's flow-control credit: a client that grants none
                // does not hold the close.
                let _ = tokio::time::timeout(CLOSE_GRACE, h3conn.shutdown(0)).await;
                break;
            }
            _ = stop.changed() => {
                let _ = tokio::time::timeout(CLOSE_GRACE, h3conn.shutdown(0)).await;
                break;
            }
        };
        let (shared2, conn2, stops2) = (shared.clone(), conn.clone(), stops.clone());
        TaskGuard::spawn(&shared.stats, async move {
            let _ = stops2.run(serve_h3_request(resolver, shared2, conn2, cx)).await;
        });
    }
    // The requests in hand keep their streams on this connection: let them
    // finish (the server's drain bounds a shutdown; a forced close waits a grace).
    let wait = async {
        while conn.active.load(Ordering::Acquire) > 0 {
            let woken = conn.wake.notified();
            if conn.active.load(Ordering::Acquire) == 0 {
                break;
            }
            woken.await;
        }
    };
    if forced {
        let _ = tokio::time::timeout(CLOSE_GRACE, wait).await;
        quic.close(0u32.into(), b"closed by server");
    } else {
        wait.await;
    }
}

async fn serve_h3_request(
    resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>,
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    cx: RequestContext,
) {
    let stats = &shared.stats;
    // A stream is a request once its head is in: one that never completes its
    // head (reset, malformed, too slow) keeps nothing in hand and counts as a
    // request cancelled before its answer.
    let (req, mut stream) = match tokio::time::timeout(shared.limits.header_read_timeout.0, resolver.resolve_request()).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            // h3 has answered 431 itself to a field section over its cap.
            let why = if matches!(e, h3::error::StreamError::HeaderTooBig { .. }) { Refusal::HeadersTooLarge } else { Refusal::Malformed };
            stats.refuse(why);
            conn.cancelled();
            tracing::debug!(error = %e, "h3 request");
            return;
        }
        Err(_) => {
            stats.refuse(Refusal::HeaderTimeout);
            conn.cancelled();
            return;
        }
    };
    let active = Active::new(&conn);
    let (parts, ()) = req.into_parts();
    let mut body = H3Body { stream: &mut stream, ended: false };
    let (resp, mut guard) = process(&shared, &conn, parts, &mut body, cx, Some(active)).await;
    let body_ended = body.ended;
    let (head, mut body) = resp.into_parts();
    let status = guard.status.take();
    if stream.send_response(Response::from_parts(head, ())).await.is_err() {
        // Reset before its answer went out: the guard counts a cancellation.
        return;
    }
    guard.status = status;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data()
                    && !data.is_empty()
                {
                    let n = data.len();
                    if stream.send_data(data).await.is_err() {
                        return;
                    }
                    guard.count_sent(n);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "h3 response body");
                return;
            }
        }
    }
    let _ = stream.finish().await;
    if !body_ended {
        // Answered without reading the body (a refusal on the head): a client
        // that has already sent it whole gets a clean end, not a reset, if
        // what is left is small and comes at once; anything else is cut.
        let drain = async {
            let mut left: usize = 64 << 10;
            while let Ok(Some(c)) = stream.recv_data().await {
                left = left.saturating_sub(c.remaining());
                if left == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
    }
}
