//! One handler behind three listeners: HTTP/1.1 + HTTP/2 over TLS (TCP),
//! HTTP/3 (UDP, same port number) and optional plain HTTP (TCP).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::coalesce::WriteCoalescer;
use crate::tls::ALPN_H3;
use crate::{NetError, TlsIdentity};

/// A response body: streamed, errors as I/O errors.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A whole body from bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never: Infallible| match never {}).boxed_unsync()
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
    /// Plain HTTP (local use).
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
}

/// Who asked, and how.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    /// The client's address.
    pub peer: SocketAddr,
    /// The protocol.
    pub protocol: Protocol,
}

/// The application: a request (body collected, size-limited) in, a response out.
pub type Handler = Arc<dyn Fn(Request<Bytes>, RequestContext) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// Wraps an async function as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Bytes>, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    Arc::new(move |req, cx| Box::pin(f(req, cx)))
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
    /// Largest request body accepted (413 above it).
    pub max_body: usize,
    /// How long shutdown waits for requests in flight.
    pub drain: Duration,
}

/// A running server. Dropping it does not stop it: call [`HttpServer::shutdown`].
#[derive(Debug)]
pub struct HttpServer {
    /// Bound TLS address (TCP and UDP).
    pub https_addr: SocketAddr,
    /// Bound plain address.
    pub plain_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    /// Cuts every TCP connection (see [`HttpServer::kill`]).
    kill: watch::Sender<bool>,
    /// Stops answering (see [`HttpServer::freeze`]).
    freeze: watch::Sender<bool>,
    tasks: JoinSet<()>,
    endpoint: quinn::Endpoint,
    drain: Duration,
}

fn status(code: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(full(format!("{{\"error\":{{\"code\":\"{}\",\"reason\":\"{msg}\"}}}}", code.as_u16())));
    *r.status_mut() = code;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

impl HttpServer {
    /// Binds every listener and starts serving with `handler`.
    pub async fn bind(opts: ServerOptions, handler: Handler) -> Result<Self, NetError> {
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
            transport.max_concurrent_bidi_streams(1024u32.into());
            transport.stream_receive_window((8u32 << 20).into());
            transport.receive_window((64u32 << 20).into());
            transport.send_window(64 << 20);
            transport.max_idle_timeout(Some(Duration::from_secs(30).try_into().map_err(|_| NetError::H3("idle timeout".into()))?));
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
        let mut tasks = JoinSet::new();
        let tls_cfg = Arc::new(opts.identity.server_config(&[b"h2", b"http/1.1"])?);
        let alt_svc = HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", https_addr.port())).ok();
        tasks.spawn(accept_tcp(
            tcp,
            Some(tokio_rustls::TlsAcceptor::from(tls_cfg)),
            handler.clone(),
            opts.max_body,
            alt_svc,
            stop_rx.clone(),
            Stops { kill: kill_rx.clone(), freeze: freeze_rx.clone() },
        ));
        let plain_addr = match opts.plain {
            Some(a) => {
                let l = TcpListener::bind(a).await.map_err(NetError::io(format!("bind tcp {a}")))?;
                let bound = l.local_addr().map_err(NetError::io("local addr"))?;
                let stops = Stops { kill: kill_rx.clone(), freeze: freeze_rx.clone() };
                tasks.spawn(accept_tcp(l, None, handler.clone(), opts.max_body, None, stop_rx.clone(), stops));
                Some(bound)
            }
            None => None,
        };
        tasks.spawn(accept_h3(endpoint.clone(), handler, opts.max_body, stop_rx, Stops { kill: kill_rx, freeze: freeze_rx }));
        tracing::info!(%https_addr, ?plain_addr, "listening (h1, h2, h3)");
        Ok(Self { https_addr, plain_addr, stop, kill, freeze, tasks, endpoint, drain: opts.drain })
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
        let drain = self.drain;
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(drain, all).await.is_err() {
            tracing::warn!("drain timed out; closing remaining connections");
            self.tasks.abort_all();
            // Wait for the aborted tasks to unwind: they hold the handler (and its state).
            while self.tasks.join_next().await.is_some() {}
        }
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Bytes a TCP connection may hold written but not yet sent. Past this the
/// response bodies wait in the server, where a cancelled HTTP/2 stream's
/// bytes are dropped: in the kernel's buffer (megabytes, autotuned) they
/// would still go out, and a client that cancels (a lost race, a segment
/// moved to a faster source) would pay for them on a slow link.
const NOTSENT_LOWAT: u32 = 128 << 10;

async fn accept_tcp(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Handler,
    max_body: usize,
    alt_svc: Option<HeaderValue>,
    mut stop: watch::Receiver<bool>,
    stops: Stops,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut freeze = stops.freeze.clone();
    loop {
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "accept"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = stop.changed() => break,
            // Frozen: accept nothing more (the kernel's backlog still
            // completes handshakes, as on a hung machine), until stopped.
            () = until(&mut freeze) => { let _ = stop.changed().await; break }
        };
        let _ = sock.set_nodelay(true);
        let _ = socket2::SockRef::from(&sock).set_tcp_notsent_lowat(NOTSENT_LOWAT);
        let (handler, tls, alt_svc) = (handler.clone(), tls.clone(), alt_svc.clone());
        let watcher = graceful.watcher();
        let stops = stops.clone();
        tokio::spawn(async move {
            let conn = serve_tcp(sock, peer, tls, handler, max_body, alt_svc, watcher);
            match stops.run(conn).await {
                Some(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
                Some(Ok(())) => {}
                None => tracing::debug!(%peer, "connection cut (kill)"),
            }
        });
    }
    graceful.shutdown().await;
}

async fn serve_tcp(
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Handler,
    max_body: usize,
    alt_svc: Option<HeaderValue>,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let builder = auto::Builder::new(TokioExecutor::new());
    match tls {
        Some(acceptor) => {
            let stream = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await??;
            let protocol = if stream.get_ref().1.alpn_protocol() == Some(b"h2") { Protocol::H2 } else { Protocol::H1 };
            let cx = RequestContext { peer, protocol };
            let svc = hyper::service::service_fn(move |req| respond(req, cx, handler.clone(), max_body, alt_svc.clone()));
            if protocol == Protocol::H2 {
                // h2 writes and flushes each frame alone (see coalesce.rs).
                let io = TokioIo::new(WriteCoalescer::new(stream));
                watcher.watch(builder.serve_connection(io, svc).into_owned()).await
            } else {
                watcher.watch(builder.serve_connection(TokioIo::new(stream), svc).into_owned()).await
            }
        }
        None => {
            let cx = RequestContext { peer, protocol: Protocol::Plain };
            let svc = hyper::service::service_fn(move |req| respond(req, cx, handler.clone(), max_body, None));
            watcher.watch(builder.serve_connection(TokioIo::new(sock), svc).into_owned()).await
        }
    }
}

async fn respond(
    req: Request<Incoming>,
    cx: RequestContext,
    handler: Handler,
    max_body: usize,
    alt_svc: Option<HeaderValue>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, max_body).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            let too_big = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            return Ok(if too_big {
                status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            } else {
                status(StatusCode::BAD_REQUEST, "request body could not be read")
            });
        }
    };
    let mut resp = handler(Request::from_parts(parts, bytes), cx).await;
    if let Some(v) = alt_svc {
        resp.headers_mut().insert(http::header::ALT_SVC, v);
    }
    Ok(resp)
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

async fn accept_h3(endpoint: quinn::Endpoint, handler: Handler, max_body: usize, mut stop: watch::Receiver<bool>, stops: Stops) {
    let mut conns = JoinSet::new();
    let mut freeze = stops.freeze.clone();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = stop.changed() => break,
            () = until(&mut freeze) => { let _ = stop.changed().await; break }
        };
        let (handler, stop, stops) = (handler.clone(), stop.clone(), stops.clone());
        conns.spawn(async move {
            let peer = incoming.remote_address();
            if let Some(Err(e)) = stops.run(serve_h3(incoming, peer, handler, max_body, stop)).await {
                tracing::debug!(%peer, error = %e, "h3 connection ended");
            }
        });
    }
    while conns.join_next().await.is_some() {}
}

async fn serve_h3(
    incoming: quinn::Incoming,
    peer: SocketAddr,
    handler: Handler,
    max_body: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<(), NetError> {
    let conn = incoming.await.map_err(|e| NetError::H3(e.to_string()))?;
    let mut h3conn: h3::server::Connection<h3_quinn::Connection, Bytes> =
        h3::server::Connection::new(h3_quinn::Connection::new(conn)).await.map_err(|e| NetError::H3(e.to_string()))?;
    let mut requests = JoinSet::new();
    loop {
        let resolver = tokio::select! {
            r = h3conn.accept() => match r {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => { tracing::debug!(error = %e, "h3 accept"); break; }
            },
            _ = stop.changed() => {
                let _ = h3conn.shutdown(0).await;
                break;
            }
        };
        let handler = handler.clone();
        requests.spawn(async move {
            let (req, mut stream) = match resolver.resolve_request().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "h3 request");
                    return;
                }
            };
            let mut body = BytesMut::new();
            let mut too_big = false;
            loop {
                match stream.recv_data().await {
                    Ok(Some(mut chunk)) => {
                        if body.len() + chunk.remaining() > max_body {
                            too_big = true;
                            break;
                        }
                        while chunk.has_remaining() {
                            let c = chunk.chunk();
                            body.extend_from_slice(c);
                            let n = c.len();
                            chunk.advance(n);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "h3 body");
                        return;
                    }
                }
            }
            let resp = if too_big {
                status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            } else {
                let (parts, ()) = req.into_parts();
                handler(Request::from_parts(parts, body.freeze()), RequestContext { peer, protocol: Protocol::H3 }).await
            };
            let (parts, mut body) = resp.into_parts();
            if stream.send_response(Response::from_parts(parts, ())).await.is_err() {
                return;
            }
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Ok(data) = f.into_data()
                            && !data.is_empty()
                            && stream.send_data(data).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "h3 response body");
                        return;
                    }
                }
            }
            let _ = stream.finish().await;
        });
    }
    while requests.join_next().await.is_some() {}
    Ok(())
}
