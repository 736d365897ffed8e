//! The service stack every request passes, whichever listener (HTTP/3,
//! HTTP/1.1 or HTTP/2 over TLS, plain) it came in on:
//!
//! ```text
//! net::HttpServer   connection and header limits, shedding (503 past
//!                   limits.max_concurrent_requests), then `admit` on the head
//!   admit           credentials for blob reads, tokens for writes, the body cap
//!                   of the route: decided before any body byte is read
//!                   body within its cap and deadline; 504 past limits.request_timeout
//!   observe         span, requests, the byte throttle (rate_limit)
//!     routes        api.rs
//! ```
//!
//! Load is shed rather than queued: a CDN client has other sources, and an
//! immediate 503 lets it go to one (the smart client demotes us) instead of
//! waiting in a queue it cannot see. Requests, bytes and latency by protocol
//! and status, and refusals by reason, are counted by the server
//! (`tranzcast_net::ServerStats`) for every answer, refusals included.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tranzcast_net::{Body, BodyLimit, ClusterMember, Protocol, Refusal, Refused, RequestContext};

use crate::Inner;
use crate::access::{self, Credentials};

/// Builds the stack over the routes and wraps it as the server's handler.
pub(crate) fn handler(inner: Arc<Inner>) -> tranzcast_net::Handler {
    let state = inner.clone();
    tranzcast_net::handler(move |mut req: Request<Bytes>, cx: RequestContext| {
        req.extensions_mut().insert(cx);
        observe(state.clone(), req)
    })
    .admit_with(move |parts, _cx| admit(&inner, parts))
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
        let mut next = crate::lock(&self.next_free);
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(n as f64 / rate);
        start - now
    }
}

/// Pieces a throttled body is cut into, so the rate is smooth.
const THROTTLE_PIECE: usize = 16 << 10;

// ---------------------------------------------------------------- observe

/// A span per request, the request count, and the outgoing byte throttle,
/// around the routes. A plain function, not a tower layer: as a layer it
/// cloned the stack and boxed every request's future once more.
fn observe(state: Arc<Inner>, req: Request<Bytes>) -> impl Future<Output = Response<Body>> + Send + 'static {
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
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    async move {
        let resp = crate::api::handle(state.clone(), req).await;
        let status = resp.status();
        // The body's length when known up front (a streamed miss: absent).
        let bytes = http_body::Body::size_hint(resp.body()).exact();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), bytes, "answered");
        } else {
            tracing::debug!(status = status.as_u16(), bytes, "answered");
        }
        match &state.throttle {
            None => resp,
            Some(t) => {
                let throttle = t.clone();
                resp.map(|body| Throttled { body, throttle, held: None, ready: None, wait: None }.boxed_unsync())
            }
        }
    }
    .instrument(span)
}

/// A response body paced under the shared throttle.
struct Throttled {
    body: Body,
    throttle: Arc<Throttle>,
    /// Data taken from `body`, not yet sent (cut into pieces).
    held: Option<Bytes>,
    /// A piece whose airtime is reserved, sent when `wait` is over.
    ready: Option<Bytes>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpBody for Throttled {
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
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if let Some(held) = this.held.as_mut().filter(|h| !h.is_empty()) {
                let piece = held.split_to(held.len().min(THROTTLE_PIECE));
                let d = this.throttle.reserve(piece.len());
                if !d.is_zero() {
                    this.wait = Some(Box::pin(tokio::time::sleep(d)));
                }
                this.ready = Some(piece);
                continue;
            }
            this.held = None;
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.held = Some(data),
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
        // Cut at a character boundary: a path may hold any UTF-8.
        Some((token, name)) => format!("/v1/play/{}…/{name}", token.chars().take(12).collect::<String>()).into(),
        None => path.into(),
    }
}

fn needs(method: &http::Method, path: &str) -> Needs {
    use http::Method;
    match *method {
        Method::GET | Method::HEAD if path.starts_with("/v1/blobs/") || path.starts_with("/v1/outboards/") => Needs::Read,
        Method::PUT | Method::POST
            if path.starts_with("/v1/blobs/") || path.starts_with("/v1/staging/") || path.starts_with("/v1/titles/") =>
        {
            Needs::Write
        }
        _ => Needs::Nothing,
    }
}

/// Decides on the request head alone, before any body byte is read: the
/// credentials the route needs (a blob read goes on with its
/// [`Credentials`] in the request's extensions, for the title check once
/// the blob's first bytes are known) and the route's body cap.
fn admit(inner: &Inner, parts: &mut http::request::Parts) -> Result<BodyLimit, Refused> {
    let auth = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // The cluster's own servers (an edge fetching for all its viewers from
    // one address) are not held to an address's share of the places free.
    let decision = match needs(&parts.method, parts.uri.path()) {
        Needs::Read if inner.config.require_certificate => inner.read_credentials(auth).map(|c| {
            if *c == Credentials::Cluster {
                parts.extensions.insert(ClusterMember);
            }
            parts.extensions.insert(c);
            BodyLimit::Small
        }),
        Needs::Read | Needs::Nothing => {
            if access::is_cluster(auth, &inner.config.cluster_token) {
                parts.extensions.insert(ClusterMember);
            }
            Ok(BodyLimit::Small)
        }
        Needs::Write => {
            let push = crate::lock(&inner.push_token).clone();
            access::authorize_write(auth, &inner.config.cluster_token, push.as_deref()).map(|()| {
                parts.extensions.insert(ClusterMember);
                BodyLimit::Upload
            })
        }
    };
    decision.map_err(|(status, code, reason)| {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let why = match status {
            StatusCode::UNAUTHORIZED => Refusal::Unauthorized,
            StatusCode::FORBIDDEN => Refusal::Forbidden,
            // No revocation list read yet: another source may be ready.
            StatusCode::SERVICE_UNAVAILABLE => return Refused::new(status, Refusal::NotReady, code, reason).retry_after(1),
            _ => Refusal::Malformed,
        };
        Refused::new(status, why, code, reason)
    })
}

impl Inner {
    /// Credentials for a read, with the signature check cached per distinct
    /// header value (only genuine ones are cached); expiry and revocation are
    /// checked on every call.
    pub(crate) fn read_credentials(&self, auth: Option<&str>) -> Result<Arc<Credentials>, access::Denial> {
        let creds = match auth.and_then(|a| recent::get(self.id, a.as_bytes())) {
            Some(c) => c,
            None => {
                let key = auth.map(|a| *blake3::hash(a.as_bytes()).as_bytes());
                let c = match key.and_then(|k| self.caches.verified.get(&k)) {
                    Some(c) => c,
                    None => {
                        // Shared, not cloned, on every hit: a certificate holds its title as a String.
                        let c = Arc::new(access::credentials(auth, &self.config.cluster_token, &self.origin_key)?);
                        if let Some(k) = key {
                            self.caches.verified.insert(k, c.clone());
                        }
                        c
                    }
                };
                if let Some(a) = auth {
                    recent::put(self.id, a.as_bytes(), &c);
                }
                c
            }
        };
        let revoked = crate::read(&self.revoked);
        access::admit(&creds, &revoked, crate::now_secs())?;
        Ok(creds)
    }
}

/// The last few `Authorization` values each worker thread found genuine,
/// compared byte for byte: a keep-alive connection repeats its header on
/// every request, so most requests skip the hash and the shared cache. Exact
/// comparison, so nothing but the very same header reuses an answer; keyed
/// by server (one process may run several, with other keys); a handful per
/// thread, oldest out.
mod recent {
    use std::cell::RefCell;
    use std::sync::Arc;

    use crate::access::Credentials;

    const SLOTS: usize = 8;

    type Entry = (u64, Box<[u8]>, Arc<Credentials>);

    thread_local! {
        static RECENT: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn get(server: u64, header: &[u8]) -> Option<Arc<Credentials>> {
        RECENT.with_borrow(|r| r.iter().rev().find(|(s, h, _)| *s == server && same(h, header)).map(|(_, _, c)| c.clone()))
    }

    /// Byte equality in time that does not depend on where the bytes differ:
    /// a memoised header may be the cluster token, which must not be
    /// guessable a byte at a time.
    fn same(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    pub(super) fn put(server: u64, header: &[u8], creds: &Arc<Credentials>) {
        // Headers past a certificate's size are not worth keeping here.
        if header.len() > 2048 {
            return;
        }
        RECENT.with_borrow_mut(|r| {
            if r.len() == SLOTS {
                r.remove(0);
            }
            r.push((server, header.into(), creds.clone()));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::logged_path;

    #[test]
    fn logged_paths_keep_a_token_prefix_whatever_its_characters() {
        assert_eq!(logged_path("/v1/play/abcdefghijklmnop/film.mp4"), "/v1/play/abcdefghijkl…/film.mp4");
        // Multi-byte characters around the cut: no panic, whole characters kept.
        assert_eq!(logged_path("/v1/play/aéééééééééééééé/x"), "/v1/play/aééééééééééé…/x");
        assert_eq!(logged_path("/v1/blobs/ab"), "/v1/blobs/ab");
    }
}
