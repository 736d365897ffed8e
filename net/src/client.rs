//! Clients that trust a given CA: HTTPS over h1/h2 (reqwest) and HTTP/3 (quinn + h3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};

use crate::NetError;
use crate::tls::{ALPN_H3, client_config};

/// An HTTPS client (HTTP/2 when the server offers it, else HTTP/1.1).
pub fn https(ca_pem: &[u8]) -> Result<reqwest::Client, NetError> {
    let cfg = client_config(ca_pem, &[b"h2", b"http/1.1"])?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(64)
        // Below every server's idle timeout (60 s by default): a pooled
        // connection is dropped here before the server closes it under a request.
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| NetError::Http(e.to_string()))
}

/// An HTTPS client that speaks only HTTP/1.1.
pub fn https_h1(ca_pem: &[u8]) -> Result<reqwest::Client, NetError> {
    let cfg = client_config(ca_pem, &[b"http/1.1"])?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .http1_only()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| NetError::Http(e.to_string()))
}

/// Bounds of one call between our own servers (heartbeat, revocations, the
/// cluster view, keys, manifests): a server that accepts and then stalls,
/// drips, or answers without end must not hold the caller.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// The answer's head, and every piece of its body after, within this.
    pub answer: Duration,
    /// The whole call (connect, head, body) within this.
    pub total: Duration,
    /// The most body bytes read; more is an error.
    pub max_body: usize,
}

/// Sends `req` and reads its whole answer within `limits`: (status, body).
/// An error status is returned, not an error: the caller decides.
pub async fn call(req: reqwest::RequestBuilder, limits: CallLimits) -> Result<(http::StatusCode, Bytes), NetError> {
    let run = async {
        let mut r = tokio::time::timeout(limits.answer, req.send())
            .await
            .map_err(|_| NetError::Http(format!("no answer within {:?}", limits.answer)))?
            .map_err(|e| NetError::Http(e.to_string()))?;
        let status = r.status();
        Ok((status, read_body(&mut r, limits.max_body, limits.answer).await?))
    };
    tokio::time::timeout(limits.total, run).await.map_err(|_| NetError::Http(format!("answer not whole within {:?}", limits.total)))?
}

/// Reads an answer's body whole: at most `max_body` bytes (more is an
/// error, before it is read when the length is announced), each piece
/// within `stall` of the last. For answers whose head the caller looked at.
pub async fn read_body(r: &mut reqwest::Response, max_body: usize, stall: std::time::Duration) -> Result<Bytes, NetError> {
    if r.content_length().is_some_and(|n| n > max_body as u64) {
        return Err(NetError::Http(format!("answer over {max_body} bytes")));
    }
    let mut body = BytesMut::new();
    loop {
        let piece = tokio::time::timeout(stall, r.chunk())
            .await
            .map_err(|_| NetError::Http(format!("answer stalled for {stall:?}")))?
            .map_err(|e| NetError::Http(e.to_string()))?;
        let Some(piece) = piece else { break };
        if body.len() + piece.len() > max_body {
            return Err(NetError::Http(format!("answer over {max_body} bytes")));
        }
        body.extend_from_slice(&piece);
    }
    Ok(body.freeze())
}

/// One HTTP/3 connection; cheap to clone, requests run in parallel.
#[derive(Clone)]
pub struct H3Client {
    send: h3::client::SendRequest<crate::h3_transport::OpenStreams, Bytes>,
    endpoint: quinn::Endpoint,
    authority: String,
}

impl std::fmt::Debug for H3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Client").field("authority", &self.authority).finish_non_exhaustive()
    }
}

impl H3Client {
    /// Connects to `addr`, checking its certificate for `server_name` against `ca_pem`.
    pub async fn connect(addr: SocketAddr, server_name: &str, ca_pem: &[u8]) -> Result<Self, NetError> {
        let tls = client_config(ca_pem, &[ALPN_H3])?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| NetError::Tls(e.to_string()))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport.stream_receive_window((8u32 << 20).into());
        transport.receive_window((64u32 << 20).into());
        cfg.transport_config(Arc::new(transport));
        let bind: SocketAddr =
            if addr.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }.map_err(|_| NetError::H3("bind address".into()))?;
        let mut endpoint = quinn::Endpoint::client(bind).map_err(NetError::io("bind udp"))?;
        endpoint.set_default_client_config(cfg);
        let conn = endpoint
            .connect(addr, server_name)
            .map_err(|e| NetError::H3(e.to_string()))?
            .await
            .map_err(|e| NetError::H3(format!("connect {addr}: {e}")))?;
        let (mut driver, send) =
            h3::client::new(crate::h3_transport::Connection::new(conn)).await.map_err(|e| NetError::H3(e.to_string()))?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Self { send, endpoint, authority: format!("{server_name}:{}", addr.port()) })
    }

    /// Moves the connection to a fresh local UDP port, as a NAT rebinding or
    /// a change of network does: the next packets leave from it. The new
    /// local address.
    pub fn rebind(&self) -> Result<SocketAddr, NetError> {
        let old = self.endpoint.local_addr().map_err(NetError::io("local addr"))?;
        let bind = SocketAddr::new(old.ip(), 0);
        let socket = std::net::UdpSocket::bind(bind).map_err(NetError::io(format!("bind udp {bind}")))?;
        let new = socket.local_addr().map_err(NetError::io("local addr"))?;
        self.endpoint.rebind(socket).map_err(NetError::io("rebind"))?;
        Ok(new)
    }

    /// Closes the connection (and its endpoint) now, rather than when the
    /// server's idle timeout ends it.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"done");
    }

    /// The `host:port` requests go to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends a request and collects the whole response.
    pub async fn request(&self, req: Request<Bytes>) -> Result<Response<Bytes>, NetError> {
        let mut send = self.send.clone();
        let (parts, body) = req.into_parts();
        let mut stream = send.send_request(Request::from_parts(parts, ())).await.map_err(|e| NetError::H3(e.to_string()))?;
        // A server may stop reading the request (H3_NO_ERROR) once its
        // answer is complete, and a client must then still read the answer
        // (RFC 9114, 4.1.1): a failed send is the error only if no answer follows.
        let mut sent = Ok(());
        if !body.is_empty() {
            sent = stream.send_data(body).await;
        }
        if sent.is_ok() {
            sent = stream.finish().await;
        }
        let resp = match &sent {
            Ok(()) => stream.recv_response().await.map_err(|e| NetError::H3(e.to_string()))?,
            // Stopped: an answer is already on its way, or none will come.
            Err(stopped) => match tokio::time::timeout(Duration::from_secs(5), stream.recv_response()).await {
                Ok(Ok(r)) => r,
                _ => return Err(NetError::H3(stopped.to_string())),
            },
        };
        let mut out = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| NetError::H3(e.to_string()))? {
            while chunk.has_remaining() {
                let c = chunk.chunk();
                out.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
        }
        let (parts, ()) = resp.into_parts();
        Ok(Response::from_parts(parts, out.freeze()))
    }
}

/// A QUIC client endpoint bound to `bind` whose sending can be switched
/// off: once the returned flag is set it drops every datagram it would
/// send (no request, no acknowledgement, no close) and still receives. To
/// a server it is a client that went silent with answers in hand; the
/// hostile bench's silent attack and the wire tests are built on it.
pub fn silenceable_endpoint(
    bind: SocketAddr,
    config: quinn::ClientConfig,
) -> Result<(quinn::Endpoint, Arc<std::sync::atomic::AtomicBool>), NetError> {
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let socket = std::net::UdpSocket::bind(bind).map_err(NetError::io(format!("bind udp {bind}")))?;
    let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
    let inner = runtime.wrap_udp_socket(socket).map_err(NetError::io("wrap udp socket"))?;
    let socket = Arc::new(Silenceable { inner, silent: silent.clone() });
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(quinn::EndpointConfig::default(), None, socket, runtime)
        .map_err(NetError::io("quic endpoint"))?;
    endpoint.set_default_client_config(config);
    Ok((endpoint, silent))
}

#[derive(Debug)]
struct Silenceable {
    inner: Arc<dyn quinn::AsyncUdpSocket>,
    silent: Arc<std::sync::atomic::AtomicBool>,
}

impl quinn::AsyncUdpSocket for Silenceable {
    fn create_io_poller(self: Arc<Self>) -> std::pin::Pin<Box<dyn quinn::UdpPoller>> {
        self.inner.clone().create_io_poller()
    }
    fn try_send(&self, t: &quinn::udp::Transmit) -> std::io::Result<()> {
        if self.silent.load(std::sync::atomic::Ordering::Relaxed) { Ok(()) } else { self.inner.try_send(t) }
    }
    fn poll_recv(
        &self,
        cx: &mut std::task::Context,
        bufs: &mut [std::io::IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }
    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }
    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
