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

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tranzcast_config::LimitsConfig;

use self::guards::{Active, Close, ConnGauge, ConnPermit, ConnState, Slots, TaskGuard, Tracked, watchdog};
use self::quic::accept_h3;
use self::request::{H3Body, drain_unread, process};
use self::tcp::accept_tcp;
use crate::coalesce::WriteCoalescer;
use crate::limits::ClientKey;
use crate::stats::{Refusal, ServerStats};
use crate::tls::ALPN_H3;
use crate::{NetError, TlsIdentity};

mod endpoints;
mod guards;
mod h2_local;
mod h3_streams;
mod penalty_filter;
mod quic;
mod request;
mod send_windows;
mod settle;
mod tcp;

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

/// Put in a request's extensions by the handler's `admit` when the request
/// proved it comes from one of the operator's own servers (a cluster
/// credential): it is then not held to its address's share of the places
/// still free (`limits::may_start`), since a node's edges each come from one
/// address and fetch for all their viewers. Its address's cap still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterMember;

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
    /// QUIC endpoints for HTTP/3, each on a thread of its own (0: one per core).
    pub h3_endpoints: usize,
}

/// A running server. Stop it with [`HttpServer::shutdown`] (or `kill`):
/// dropping it stops accepting and ends the HTTP/3 endpoints' threads,
/// cutting their connections without a close.
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
    /// The HTTP/3 endpoints, one per core, each on a thread of its own.
    h3: endpoints::H3Endpoints,
    drain: Duration,
    stats: Arc<ServerStats>,
}

/// Requests to `/healthz` and `/metrics` in hand at once: they skip load
/// shedding (an overloaded server still says so) but have this budget.
const EXEMPT_MAX: i64 = 64;

/// After a connection is told to close (idle, cancel flood), how long its
/// requests in hand may take to finish before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Bytes all HTTP/3 endpoints together buffer for connections not yet accepted (quinn's default for one).
const INCOMING_BUFFER_TOTAL: u64 = 100 << 20;

/// Descriptors kept for everything but client connections (the store, upstream calls, logs).
const FD_RESERVE: u64 = 256;

impl HttpServer {
    /// Binds every listener and starts serving with `handler`.
    pub async fn bind(opts: ServerOptions, handler: Handler) -> Result<Self, NetError> {
        let limits = opts.limits;
        // TCP and UDP on the same port number: bind TCP (maybe port 0), then
        // UDP on the port it got; retry if that UDP port is taken.
        let mut attempt = 0;
        let h3_endpoints = endpoints::endpoint_count(opts.h3_endpoints);
        let (tcp, udp) = loop {
            let tcp = TcpListener::bind(opts.https).await.map_err(NetError::io(format!("bind tcp {}", opts.https)))?;
            let addr = tcp.local_addr().map_err(NetError::io("local addr"))?;
            match endpoints::bind_udp(addr, h3_endpoints) {
                Ok(socks) => break (tcp, socks),
                Err(e) if opts.https.port() == 0 && attempt < 10 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "udp port taken, retrying");
                }
                Err(e) => return Err(NetError::io(format!("bind udp {addr}"))(e)),
            }
        };
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
        // What quinn takes of a connection's answers before the client
        // acknowledges them: a client that stops acknowledging (or gives huge
        // stream credit and reads nothing) pins this much of our memory per
        // connection until the idle timeout. TCP holds a few hundred KiB in
        // the same case (cwnd plus NOTSENT_LOWAT); 2 MiB is 330 Mbit/s per
        // connection at 50 ms, ten times a 4K stream. Each connection's
        // comes out of limits.h3_send_memory once it is proven (send_windows.rs).
        transport.send_window(send_windows::FULL);
        transport.max_idle_timeout(Some(limits.idle_timeout.0.try_into().map_err(|_| NetError::H3("idle timeout".into()))?));
        qcfg.transport_config(Arc::new(transport));
        // What connections not yet accepted may buffer, for the whole server.
        qcfg.incoming_buffer_size_total(INCOMING_BUFFER_TOTAL / u64::from(h3_endpoints));
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
        opts.stats.main_runtime(tokio::runtime::Handle::current());
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
        let h3 =
            endpoints::H3Endpoints::start(udp, qcfg, endpoints::Serving { shared, slots, max_connections, stop: stop_rx, stops }).await?;
        tracing::info!(%https_addr, ?plain_addr, max_connections, h3_endpoints = h3.len(), "listening (h1, h2, h3)");
        Ok(Self { https_addr, plain_addr, stop, kill, freeze, accepts, h3, drain: opts.drain, stats: opts.stats })
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
        self.h3.stopped_accepting().await;
        if tokio::time::timeout(self.drain, tasks_done(&self.stats)).await.is_err() {
            tracing::warn!("drain timed out; closing remaining connections");
            let _ = self.kill.send(true);
            // Cut connections unwind at once: they hold the handler (and its state).
            let _ = tokio::time::timeout(Duration::from_secs(5), tasks_done(&self.stats)).await;
        }
        self.h3.close().await;
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
    /// Handshake steps that may be runnable at once (see `tcp::tls_handshake`).
    handshakes: Semaphore,
    /// HTTP/3 connections' send windows, out of `limits.h3_send_memory`.
    send_windows: send_windows::SendWindows,
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
        let send_windows =
            send_windows::SendWindows::new(limits.h3_send_memory.0, stats.h3_send_reserved.clone(), stats.h3_send_capped.clone());
        Self {
            handler,
            limits,
            stats,
            body_memory: Arc::new(Semaphore::new(limits.max_body_memory.0.min(Semaphore::MAX_PERMITS as u64) as usize)),
            alt_svc: HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).ok(),
            h1,
            handshakes: Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
            send_windows,
        }
    }

    /// HTTP/2 for one connection, its streams run by `exec` (h2_local.rs).
    fn h2(&self, exec: h2_local::StreamExec) -> hyper::server::conn::http2::Builder<h2_local::StreamExec> {
        let mut h2 = hyper::server::conn::http2::Builder::new(exec);
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(self.limits.h2_max_concurrent_streams)
            .max_header_list_size(self.limits.max_header_bytes.0 as u32);
        h2
    }
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
