//! What every request goes through, whatever its protocol: shedding, the
//! head checks, admission, the body within its limits, the handler.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::guards::{Active, BodyHold, ConnState, InFlight, LoadGuard};
use super::h3_streams::{ReadFail, RequestIn, close};
use super::{Body, BodyLimit, ClusterMember, EXEMPT_MAX, Protocol, RequestContext, Shared, error_response};
use crate::limits::body_deadline;
use crate::stats::{Refusal, ServerStats};

/// Where a request body comes from (hyper's incoming body, an h3 stream).
pub(super) trait ChunkSource: Send {
    /// The next piece; None at the end.
    fn next_chunk(&mut self) -> impl Future<Output = Option<Result<Bytes, String>>> + Send;
    /// Whether it is known to be empty already.
    fn known_empty(&self) -> bool;
}

impl ChunkSource for Incoming {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        loop {
            match self.frame().await? {
                Ok(f) => match f.into_data() {
                    Ok(d) => return Some(Ok(d)),
                    Err(_) => continue, // trailers: ignored
                },
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }

    fn known_empty(&self) -> bool {
        HttpBody::is_end_stream(self)
    }
}

/// An h3 request's body, and whether it was read to its end.
pub(super) struct H3Body<'a> {
    pub(super) input: &'a mut RequestIn,
    pub(super) ended: bool,
    /// A frame error in the body is the connection's: it is closed.
    pub(super) quic: &'a quinn::Connection,
}

impl ChunkSource for H3Body<'_> {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, String>> {
        match self.input.data().await {
            Ok(Some(chunk)) => Some(Ok(chunk)),
            Ok(None) => {
                self.ended = true;
                None
            }
            Err(ReadFail::Protocol(e)) => {
                if e.is_connection_error() {
                    close(self.quic, &e);
                }
                Some(Err(e.to_string()))
            }
            Err(ReadFail::Reset) => Some(Err("the stream was reset".into())),
            Err(ReadFail::Gone) => Some(Err("the connection is gone".into())),
        }
    }

    fn known_empty(&self) -> bool {
        false
    }
}

/// Reads and drops what is left of a body the answer did not need (a
/// refusal on the head), if it is small and comes within `wait`: at most
/// 64 KiB, then it stops.
pub(super) async fn drain_unread(src: &mut impl ChunkSource, wait: std::time::Duration) {
    let drain = async {
        let mut left: usize = 64 << 10;
        while let Some(Ok(c)) = src.next_chunk().await {
            left = left.saturating_sub(c.len());
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(wait, drain).await;
}

pub(super) enum BodyFail {
    TooLarge,
    Memory,
    Broken,
}

/// Reads a whole body of at most `cap` bytes, holding its bytes in the server's body memory.
pub(super) async fn read_body(
    src: &mut impl ChunkSource,
    cap: u64,
    declared: Option<u64>,
    shared: &Shared,
    hold: &mut BodyHold,
) -> Result<Bytes, BodyFail> {
    // Memory is taken as bytes arrive, not as declared: a length declared
    // and never sent holds nothing.
    let mut out = BytesMut::with_capacity(declared.unwrap_or(0).min(64 << 10) as usize);
    while let Some(chunk) = src.next_chunk().await {
        let chunk = chunk.map_err(|_| BodyFail::Broken)?;
        let len = out.len() as u64 + chunk.len() as u64;
        if len > cap || declared.is_some_and(|d| len > d) {
            return Err(BodyFail::TooLarge);
        }
        if !hold.take(&shared.body_memory, &shared.stats, chunk.len()) {
            return Err(BodyFail::Memory);
        }
        out.extend_from_slice(&chunk);
    }
    // A body that ends short of its declared length is malformed (RFC 9114,
    // 4.1.2; hyper checks it itself on HTTP/1.1 and HTTP/2).
    if declared.is_some_and(|d| out.len() as u64 != d) {
        return Err(BodyFail::Broken);
    }
    Ok(out.freeze())
}

/// The answer to a request whose handler panicked: 500, counted and logged.
fn panicked(
    mut guard: InFlight,
    stats: &ServerStats,
    cx: RequestContext,
    what: &str,
    payload: &(dyn std::any::Any + Send),
) -> (Response<Body>, InFlight) {
    stats.panicked(cx.protocol, what, payload);
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    guard.answered(status);
    (error_response(status, "internal_error", "the server failed on this request"), guard)
}

/// What every request goes through, whatever its protocol: the shedding
/// check, the head checks and the application's admission, then the body
/// within its cap, deadline and the body memory, then the handler within
/// the request timeout. Returns the answer and the request's guard, which
/// the caller keeps until the response body is done.
pub(super) async fn process(
    shared: &Shared,
    conn: &Arc<ConnState>,
    mut parts: http::request::Parts,
    body: &mut impl ChunkSource,
    cx: RequestContext,
    active: Option<Active>,
) -> (Response<Body>, InFlight) {
    let stats = &shared.stats;
    let limits = &shared.limits;
    let exempt = matches!(parts.uri.path(), "/healthz" | "/metrics");
    let mut guard = InFlight::new(stats, conn, cx.protocol, exempt, active);
    // A request refused before it has its address's place gives its
    // server-wide place back at once: its answer may wait on a client that
    // grants no flow-control credit for as long as it likes, and such
    // refusals kept in hand, counted against no address, would fill the
    // server (with every place gone, everyone is refused). What is left of
    // them is bounded by the connection's streams (docs/loadtest.md, fifteenth session).
    let refuse = |mut guard: InFlight, why: Refusal, status: StatusCode, code: &str, reason: &str| {
        if guard._load.is_none() {
            guard.leave();
        }
        stats.refuse(why);
        let mut r = error_response(status, code, reason);
        if matches!(why, Refusal::Overloaded | Refusal::BodyMemory) {
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        guard.answered(status);
        (r, guard)
    };
    let shed = |guard: InFlight, reason: &str| refuse(guard, Refusal::Overloaded, StatusCode::SERVICE_UNAVAILABLE, "overloaded", reason);
    // This request is among those in hand already (its guard counted it).
    let (over, free) = if exempt {
        (stats.exempt_in_flight.load(Ordering::Relaxed) > EXEMPT_MAX, u64::MAX)
    } else {
        let others = u64::try_from(stats.in_flight.load(Ordering::Relaxed).saturating_sub(1)).unwrap_or(0);
        let limit = u64::from(limits.max_concurrent_requests);
        (others >= limit, limit.saturating_sub(others))
    };
    if over {
        return shed(guard, "too many requests in hand; try another source");
    }
    if parts.headers.len() > limits.max_headers as usize {
        let reason = format!("more than {} header fields", limits.max_headers);
        return refuse(guard, Refusal::TooManyHeaders, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", &reason);
    }
    // A handler that panics fails its request alone (500): not its
    // connection's other requests, nor the thread's other connections.
    let admitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (shared.handler.admit)(&mut parts, &cx)));
    let cap = match admitted {
        Ok(Ok(BodyLimit::Small)) => limits.max_body.0,
        Ok(Ok(BodyLimit::Upload)) => limits.max_upload_body.0,
        Err(payload) => {
            guard.leave();
            return panicked(guard, stats, cx, "admit", &*payload);
        }
        Ok(Err(refused)) => {
            guard.leave();
            stats.refuse(refused.reason);
            guard.answered(refused.status);
            return (refused.response(), guard);
        }
    };
    // One address's share, once `admit` has said who is asking: a client
    // with many connections and slow reads cannot take every place (nor
    // every health check's), nor, with a few other addresses, all of them
    // (`limits::may_start`); the operator's own servers are held to their
    // address's cap only.
    let free = if parts.extensions.get::<ClusterMember>().is_some() { u64::MAX } else { free };
    guard._load = LoadGuard::take(&conn.slots, conn.key, exempt, free);
    if guard._load.is_none() {
        return shed(guard, "too many requests in hand from this address");
    }
    let declared = match parts.headers.get(http::header::CONTENT_LENGTH).map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()))
    {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => return refuse(guard, Refusal::Malformed, StatusCode::BAD_REQUEST, "bad_request", "Content-Length is not a number"),
    };
    if declared.is_some_and(|n| n > cap) {
        let reason = format!("the body is over {cap} bytes");
        return refuse(guard, Refusal::BodyTooLarge, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", &reason);
    }
    // A GET or HEAD without Content-Length has no body to wait for (its
    // content would have no defined meaning: RFC 9110, 9.3.1): a stream left
    // open after its head would otherwise hold a request in hand, and its
    // address's share, until the body deadline. What comes anyway is
    // drained (briefly) or stopped after the answer.
    let bodiless = declared.is_none() && matches!(parts.method, http::Method::GET | http::Method::HEAD);
    let bytes = if body.known_empty() || declared == Some(0) || bodiless {
        Bytes::new()
    } else {
        let deadline = body_deadline(declared.unwrap_or(cap), limits.header_read_timeout.0, limits.body_min_rate.0);
        let mut hold = BodyHold::default();
        let read = tokio::time::timeout(deadline, read_body(body, cap, declared, shared, &mut hold)).await;
        guard._body = hold;
        match read {
            Ok(Ok(b)) => b,
            Ok(Err(BodyFail::TooLarge)) => {
                let reason = format!("the body is over {cap} bytes (or its declared length)");
                return refuse(guard, Refusal::BodyTooLarge, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", &reason);
            }
            Ok(Err(BodyFail::Memory)) => {
                return refuse(
                    guard,
                    Refusal::BodyMemory,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many request bodies in hand; try again",
                );
            }
            Ok(Err(BodyFail::Broken)) => {
                return refuse(guard, Refusal::Malformed, StatusCode::BAD_REQUEST, "bad_request", "the request body could not be read");
            }
            Err(_) => {
                return refuse(
                    guard,
                    Refusal::BodyTimeout,
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body arrived too slowly",
                );
            }
        }
    };
    let req = Request::from_parts(parts, bytes);
    let call = std::panic::AssertUnwindSafe((shared.handler.call)(req, cx)).catch_unwind();
    let mut resp = match tokio::time::timeout(limits.request_timeout.0, call).await {
        Ok(Ok(r)) => r,
        Ok(Err(payload)) => return panicked(guard, stats, cx, "handler", &*payload),
        Err(_) => {
            return refuse(guard, Refusal::RequestTimeout, StatusCode::GATEWAY_TIMEOUT, "timeout", "no answer within the request timeout");
        }
    };
    if matches!(cx.protocol, Protocol::H1 | Protocol::H2)
        && let Some(v) = &shared.alt_svc
    {
        resp.headers_mut().insert(http::header::ALT_SVC, v.clone());
    }
    guard.answered(resp.status());
    (resp, guard)
}
