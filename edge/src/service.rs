//! The tower service stack every request passes, whichever listener (HTTP/3,
//! HTTP/1.1 or HTTP/2 over TLS, plain) it came in on:
//!
//! ```text
//! Observe       span, metrics by protocol and status, latency, bytes out, throttle
//!   Shed        503 at once when `limits.max_concurrent_requests` are in hand
//!               (bodies still streaming count; health and metrics are exempt)
//!   Timeout     504 when no response head within `limits.request_timeout`
//!   Authenticate  credentials for blob reads, tokens for writes
//!     routes    api.rs
//! ```
//!
//! Load is shed rather than queued: a CDN client has other sources, and an
//! immediate 503 lets it go to one (the smart client demotes us) instead of
//! waiting in a queue it cannot see.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tranzcast_net::{Body, Protocol, RequestContext};

use crate::Inner;
use crate::access::{self, Credentials};

/// Builds the stack over the routes and wraps it as the server's handler.
pub(crate) fn handler(inner: Arc<Inner>) -> tranzcast_net::Handler {
    let limits = inner.config.limits;
    let routes = tower::service_fn({
        let inner = inner.clone();
        move |req: Request<Bytes>| {
            let inner = inner.clone();
            async move { Ok::<_, Infallible>(crate::api::handle(inner, req).await) }
        }
    });
    let stack = ServiceBuilder::new()
        .layer(ObserveLayer(inner.clone()))
        .layer(ShedLayer(inner.clone()))
        .timeout(limits.request_timeout.0)
        .layer(AuthenticateLayer(inner))
        .service(routes);
    tranzcast_net::handler(move |mut req: Request<Bytes>, cx: RequestContext| {
        req.extensions_mut().insert(cx);
        let svc = stack.clone();
        async move {
            match overload_answer(svc.oneshot(req).await) {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    })
}

fn error_response(status: StatusCode, code: &str, reason: &str) -> Response<Body> {
    let v = serde_json::json!({"error": {"code": code, "reason": reason}});
    let mut r = Response::new(tranzcast_net::full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Turns the stack's refusals into answers: shed load is 503 with a short
/// Retry-After, a missed deadline 504.
fn overload_answer(r: Result<Response<Body>, BoxError>) -> Result<Response<Body>, Infallible> {
    Ok(match r {
        Ok(r) => r,
        Err(e) if e.is::<tower::timeout::error::Elapsed>() => {
            error_response(StatusCode::GATEWAY_TIMEOUT, "timeout", "no answer within the request timeout")
        }
        Err(e) => {
            tracing::error!(error = %e, "service error");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server's log")
        }
    })
}

// ---------------------------------------------------------------- metrics

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const PROTOCOLS: [Protocol; 4] = [Protocol::H1, Protocol::H2, Protocol::H3, Protocol::Plain];

fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::H1 => 0,
        Protocol::H2 => 1,
        Protocol::H3 => 2,
        Protocol::Plain => 3,
    }
}

/// A lock-free histogram (Prometheus cumulative buckets are computed when rendered).
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|b| s <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            out.push_str(&format!("{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}\n"));
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        out.push_str(&format!("{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}\n"));
        out.push_str(&format!("{name}_sum{{{labels}}} {}\n", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6));
        out.push_str(&format!("{name}_count{{{labels}}} {cumulative}\n"));
    }
}

/// Requests and bytes by protocol and status, latency by protocol.
/// Indexed tables of atomics: no lock on the request path.
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    /// [protocol][status - 100]
    requests: Vec<AtomicU64>,
    bytes: Vec<AtomicU64>,
    head: [Histogram; 4],
    whole: [Histogram; 4],
}

impl Default for HttpMetrics {
    fn default() -> Self {
        let table = || (0..4 * 500).map(|_| AtomicU64::new(0)).collect();
        Self { requests: table(), bytes: table(), head: Default::default(), whole: Default::default() }
    }
}

fn slot(p: Protocol, status: StatusCode) -> usize {
    proto_index(p) * 500 + (status.as_u16().clamp(100, 599) - 100) as usize
}

impl HttpMetrics {
    /// Appends the Prometheus text of these metrics.
    pub(crate) fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP edge_http_requests_total Requests answered, by protocol and status.\n# TYPE edge_http_requests_total counter\n",
        );
        let mut bytes = String::from(
            "# HELP edge_http_response_bytes_total Body bytes sent, by protocol and status.\n# TYPE edge_http_response_bytes_total counter\n",
        );
        for p in PROTOCOLS {
            for status in 100..600u16 {
                let Ok(s) = StatusCode::from_u16(status) else { continue };
                let i = slot(p, s);
                let n = self.requests[i].load(Ordering::Relaxed);
                if n > 0 {
                    out.push_str(&format!("edge_http_requests_total{{protocol=\"{}\",status=\"{status}\"}} {n}\n", p.label()));
                    let b = self.bytes[i].load(Ordering::Relaxed);
                    bytes.push_str(&format!("edge_http_response_bytes_total{{protocol=\"{}\",status=\"{status}\"}} {b}\n", p.label()));
                }
            }
        }
        out.push_str(&bytes);
        out.push_str(
            "# HELP edge_http_response_head_seconds Time to the response head.\n# TYPE edge_http_response_head_seconds histogram\n",
        );
        for p in PROTOCOLS {
            self.head[proto_index(p)].render(out, "edge_http_response_head_seconds", &format!("protocol=\"{}\"", p.label()));
        }
        out.push_str(
            "# HELP edge_http_response_seconds Time to the end of the response body.\n# TYPE edge_http_response_seconds histogram\n",
        );
        for p in PROTOCOLS {
            self.whole[proto_index(p)].render(out, "edge_http_response_seconds", &format!("protocol=\"{}\"", p.label()));
        }
    }
}

// ---------------------------------------------------------------- throttle

/// A shared outgoing byte rate (`rate_limit`): each piece of a body reserves
/// its airtime on one virtual clock, so all responses together stay under the
/// rate however many there are.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// Bytes per second; changed at run time by [`crate::EdgeServer::set_rate_limit`].
    bytes_per_sec: std::sync::atomic::AtomicU64,
    next_free: std::sync::Mutex<Instant>,
}

impl Throttle {
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        Self { bytes_per_sec: bytes_per_sec.max(1).into(), next_free: std::sync::Mutex::new(Instant::now()) }
    }

    /// The rate now, bytes per second.
    pub(crate) fn rate(&self) -> u64 {
        self.bytes_per_sec.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new rate, for the bytes not yet reserved.
    pub(crate) fn set_rate(&self, bytes_per_sec: u64) {
        self.bytes_per_sec.store(bytes_per_sec.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// How long to wait before sending `n` more bytes.
    fn reserve(&self, n: usize) -> Duration {
        let now = Instant::now();
        let rate = self.rate() as f64;
        let Ok(mut next) = self.next_free.lock() else { return Duration::ZERO };
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(n as f64 / rate);
        start - now
    }
}

/// Pieces a throttled body is cut into, so the rate is smooth.
const THROTTLE_PIECE: usize = 16 << 10;

// ---------------------------------------------------------------- observe

#[derive(Clone)]
struct ObserveLayer(Arc<Inner>);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner, state: self.0.clone() }
    }
}

#[derive(Clone)]
struct Observe<S> {
    inner: S,
    state: Arc<Inner>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<Request<Bytes>> for Observe<S>
where
    S: Service<Request<Bytes>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        use tracing::Instrument;
        let rcx = req.extensions().get::<RequestContext>().copied();
        let protocol = rcx.map(|c| c.protocol).unwrap_or(Protocol::Plain);
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            path = %logged_path(req.uri().path()),
            range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or(""),
            protocol = protocol.label(),
            peer = %rcx.map(|c| c.peer.to_string()).unwrap_or_default(),
        );
        let state = self.state.clone();
        state.requests.fetch_add(1, Ordering::Relaxed);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        // The clone that was made ready is the one to call (tower's contract).
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                // Refusals of the layers below (shed, timeout) are answers too, and counted.
                let resp = match overload_answer(ready.call(req).await.map_err(Into::into)) {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                let status = resp.status();
                state.http_metrics.head[proto_index(protocol)].observe(started.elapsed());
                if status.is_server_error() {
                    tracing::warn!(status = status.as_u16(), "answered");
                } else {
                    tracing::debug!(status = status.as_u16(), "answered");
                }
                let (parts, body) = resp.into_parts();
                let metered = Metered {
                    body,
                    slot: slot(protocol, status),
                    protocol,
                    sent: 0,
                    started,
                    throttle: state.throttle.clone(),
                    held: None,
                    ready: None,
                    wait: None,
                    state,
                };
                Ok(Response::from_parts(parts, metered.boxed_unsync()))
            }
            .instrument(span),
        )
    }
}

/// A response body that counts what it sends, paces it under the throttle,
/// and records the request as finished when it is dropped (sent or abandoned).
struct Metered {
    body: Body,
    slot: usize,
    protocol: Protocol,
    sent: u64,
    started: Instant,
    throttle: Option<Arc<Throttle>>,
    /// Data taken from `body`, not yet sent (throttled bodies are cut into pieces).
    held: Option<Bytes>,
    /// A piece whose airtime is reserved, sent when `wait` is over.
    ready: Option<Bytes>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    state: Arc<Inner>,
}

impl Metered {
    fn count(&mut self, n: usize) {
        self.sent += n as u64;
        self.state.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(w) = this.wait.as_mut() {
                ready!(w.as_mut().poll(cx));
                this.wait = None;
            }
            if let Some(piece) = this.ready.take() {
                this.count(piece.len());
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if let Some(held) = this.held.as_mut().filter(|h| !h.is_empty()) {
                let piece = held.split_to(held.len().min(THROTTLE_PIECE));
                if let Some(t) = &this.throttle {
                    let d = t.reserve(piece.len());
                    if !d.is_zero() {
                        this.wait = Some(Box::pin(tokio::time::sleep(d)));
                    }
                }
                this.ready = Some(piece);
                continue;
            }
            this.held = None;
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if this.throttle.is_some() => this.held = Some(data),
                    Ok(data) => {
                        this.count(data.len());
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.as_ref().is_none_or(Bytes::is_empty) && self.ready.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let pending = self.held.as_ref().map_or(0, Bytes::len) + self.ready.as_ref().map_or(0, Bytes::len);
        let inner = self.body.size_hint();
        let mut h = SizeHint::new();
        h.set_lower(inner.lower() + pending as u64);
        if let Some(u) = inner.upper() {
            h.set_upper(u + pending as u64);
        }
        h
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let m = &self.state.http_metrics;
        m.requests[self.slot].fetch_add(1, Ordering::Relaxed);
        m.bytes[self.slot].fetch_add(self.sent, Ordering::Relaxed);
        m.whole[proto_index(self.protocol)].observe(self.started.elapsed());
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------- shed

#[derive(Clone)]
struct ShedLayer(Arc<Inner>);

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Shed { inner, state: self.0.clone() }
    }
}

/// Refuses work beyond `limits.max_concurrent_requests` requests in hand,
/// counted by [`Observe`] from arrival to the end of the body (a slow body
/// holds its place as much as a slow head does).
#[derive(Clone)]
struct Shed<S> {
    inner: S,
    state: Arc<Inner>,
}

impl<S> Service<Request<Bytes>> for Shed<S>
where
    S: Service<Request<Bytes>, Response = Response<Body>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let exempt = matches!(req.uri().path(), "/healthz" | "/metrics");
        let max = i64::from(self.state.config.limits.max_concurrent_requests);
        // Observe has counted this request already.
        if !exempt && self.state.in_flight.load(Ordering::Relaxed) > max {
            self.state.shed.fetch_add(1, Ordering::Relaxed);
            let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests in hand; try another source");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Box::pin(async move { Ok(r) });
        }
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { ready.call(req).await.map_err(Into::into) })
    }
}

// ---------------------------------------------------------------- authenticate

/// What a route needs from the `Authorization` header.
enum Needs {
    /// Blob and outboard reads: a certificate or the cluster token (when certificates are required).
    Read,
    /// Staging writes: the cluster token or a peer's push token.
    Write,
    /// Health, metrics, pulse, manifests (signed and public).
    Nothing,
}

/// The path as logged: a playback token is a credential for its lifetime, so
/// logs keep only its first characters (enough to tell sessions apart).
fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/v1/play/").and_then(|rest| rest.split_once('/')) {
        Some((token, name)) => format!("/v1/play/{}…/{name}", &token[..token.len().min(12)]).into(),
        None => path.into(),
    }
}

fn needs(req: &Request<Bytes>) -> Needs {
    use http::Method;
    let path = req.uri().path();
    match *req.method() {
        Method::GET | Method::HEAD if path.starts_with("/v1/blobs/") || path.starts_with("/v1/outboards/") => Needs::Read,
        Method::PUT | Method::POST
            if path.starts_with("/v1/blobs/") || path.starts_with("/v1/staging/") || path.starts_with("/v1/titles/") =>
        {
            Needs::Write
        }
        _ => Needs::Nothing,
    }
}

#[derive(Clone)]
struct AuthenticateLayer(Arc<Inner>);

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticate { inner, state: self.0.clone() }
    }
}

/// Checks credentials before any route runs; a blob read goes on with the
/// [`Credentials`] in the request's extensions, for the title check once the
/// blob's first bytes are known.
#[derive(Clone)]
struct Authenticate<S> {
    inner: S,
    state: Arc<Inner>,
}

impl<S> Service<Request<Bytes>> for Authenticate<S>
where
    S: Service<Request<Bytes>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(|never| match never {})
    }

    fn call(&mut self, mut req: Request<Bytes>) -> Self::Future {
        let state = &self.state;
        let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let decision = match needs(&req) {
            Needs::Read if state.config.require_certificate => state.read_credentials(auth).map(Some),
            Needs::Read | Needs::Nothing => Ok(None),
            Needs::Write => {
                let push = state.push_token.lock().ok().and_then(|t| t.clone());
                access::authorize_write(auth, &state.config.cluster_token, push.as_deref()).map(|()| None)
            }
        };
        match decision {
            Err((status, code, reason)) => {
                let r = error_response(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN), code, &reason);
                Box::pin(async move { Ok(r) })
            }
            Ok(creds) => {
                if let Some(c) = creds {
                    req.extensions_mut().insert(c);
                }
                let clone = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { ready.call(req).await.map_err(|never| match never {}) })
            }
        }
    }
}

impl Inner {
    /// Credentials for a read, with the signature check cached per distinct
    /// header value (only genuine ones are cached); expiry and revocation are
    /// checked on every call.
    pub(crate) fn read_credentials(&self, auth: Option<&str>) -> Result<Arc<Credentials>, access::Denial> {
        let key = auth.map(|a| *blake3::hash(a.as_bytes()).as_bytes());
        let creds = match key.and_then(|k| self.verified.get(&k)) {
            Some(c) => c,
            None => {
                // Shared, not cloned, on every hit: a certificate holds its title as a String.
                let c = Arc::new(access::credentials(auth, &self.config.cluster_token, &self.origin_key)?);
                if let Some(k) = key {
                    self.verified.insert(k, c.clone());
                }
                c
            }
        };
        let revoked = self.revoked.read().map_err(|_| (500, "internal", "revocation list poisoned".to_string()))?;
        access::admit(&creds, &revoked, crate::now_secs())?;
        Ok(creds)
    }
}
