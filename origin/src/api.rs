//! The HTTP API (`docs/api.md`). Errors become `{"error": {"code", "reason"}}`
//! with their status in one place, [`ApiError`]'s conversion.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use tranzcast_net::{Body, BodyLimit, Refusal as NetRefusal, Refused, RequestContext, full};
use tranzcast_proto::answers::{self, OrderPlaced};
use tranzcast_proto::api as wire;
use tranzcast_proto::keys::TitleKey;
use tranzcast_proto::manifest::SignedManifest;
use tranzcast_proto::ticket::{self, SignedToken, Token, UNLIMITED};
use tranzcast_proto::{BlobAddress, TitleId};

use crate::state::{GrantWrite, KeyedOrder, Member, Order, OrderKind, OrderOnce, ValidationEntry};
use crate::validation::{self, Context, Refusal};
use crate::{Inner, now_secs, random16};

mod catalog;
mod members;
mod metrics;
mod play;
mod storefront;

pub(crate) use catalog::TitleList;
use catalog::*;
pub use metrics::Metrics;
use storefront::*;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    reason: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self { status, code, reason: reason.into() }
    }
    fn bad(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the origin's log")
    }
    /// A request body or header that [`wire`] refused: 400 with its reason.
    fn wire(e: tranzcast_proto::ProtoError) -> Self {
        match e {
            tranzcast_proto::ProtoError::Invalid { reason, .. } => Self::bad(reason),
            other => Self::bad(other.to_string()),
        }
    }
    fn refused(r: Refusal) -> Self {
        Self::new(StatusCode::FORBIDDEN, r.code(), r.reason())
    }
}

fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_string(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

impl From<ApiError> for Response<Body> {
    fn from(e: ApiError) -> Self {
        tranzcast_net::error_response(e.status, e.code, &e.reason)
    }
}

type ApiResult = Result<Response<Body>, ApiError>;

/// Decides on the request head alone, before any body byte is read: the
/// per-address rate of plays and storefront calls, the storefront token,
/// a member's credential or a peer's certificate for joining, and the route's
/// body cap (uploads and publishing take large bodies, once authenticated).
/// The routes check their credentials again: this is the gate, not the only check.
pub(crate) fn admit(inner: &Inner, parts: &mut http::request::Parts, cx: &RequestContext) -> Result<BodyLimit, Refused> {
    let path = parts.uri.path().trim_end_matches('/');
    let m = &parts.method;
    let upload = (m == Method::PUT && path.starts_with("/v1/blobs/")) || (m == Method::POST && path == "/v1/titles");
    let storefront_route = upload
        || (m == Method::GET && path == "/v1/storefront")
        || (m == Method::POST && matches!(path, "/v1/customers" | "/v1/orders" | "/v1/revoke"))
        || (m == Method::POST && path.starts_with("/v1/cluster/members/"));
    let refused = |e: ApiError| {
        let why = match e.status {
            StatusCode::UNAUTHORIZED => NetRefusal::Unauthorized,
            StatusCode::FORBIDDEN => NetRefusal::Forbidden,
            _ => NetRefusal::Malformed,
        };
        Refused::new(e.status, why, e.code, e.reason)
    };
    if m == Method::POST && path == "/v1/cluster/peer-identity" {
        rate(&inner.peer_rate, cx, "peer certificate requests")?;
        return Ok(BodyLimit::Small);
    }
    if m == Method::POST && path == "/v1/play" {
        rate(&inner.play_rate, cx, "plays")?;
        return Ok(BodyLimit::Small);
    }
    if storefront_route {
        // The token first (a constant-time compare): the storefront's own
        // calls are never limited, so nobody sharing its address (a NAT, a
        // cloud /64) can spend its rate; failed attempts are limited per
        // address (guessing the token costs us nothing past the burst).
        let checked = bearer(
            &parts.headers,
            &inner.config.storefront_token,
            "this call needs the storefront's bearer token",
            "wrong storefront token",
        );
        if let Err(e) = checked {
            rate(&inner.storefront_rate, cx, "storefront calls without the storefront's token")?;
            return Err(refused(e));
        }
        return Ok(if upload { BodyLimit::Upload } else { BodyLimit::Small });
    }
    if m == Method::POST && matches!(path, "/v1/cluster/join" | "/v1/cluster/heartbeat") {
        let auth = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Some(cert) = auth.strip_prefix("Tranzcast ") {
            rate(&inner.peer_rate, cx, "peer joins")?;
            // A peer: a live certificate (the join checks it again with the role).
            return match SignedToken::from_text(cert.trim()).ok().as_ref().map(|s| s.verify_own(&inner.tokens)) {
                Some(Ok(Token::Certificate(c))) if !c.is_expired(now_secs()) => Ok(BodyLimit::Small),
                _ => Err(refused(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "the certificate is invalid or expired"))),
            };
        }
        members::credential(inner, &parts.headers).map_err(refused)?;
    }
    Ok(BodyLimit::Small)
}

/// Counts a request from the caller's address against `limiter`: 429 with Retry-After above its rate.
fn rate(limiter: &Mutex<tranzcast_net::limits::RateLimiter>, cx: &RequestContext, what: &str) -> Result<(), Refused> {
    let key = tranzcast_net::limits::ClientKey::of(cx.peer.ip());
    let verdict = limiter.lock().map(|mut l| l.check(key, std::time::Instant::now())).unwrap_or(Ok(()));
    verdict.map_err(|wait| {
        let message = format!("too many {what} from this address; retry later");
        Refused::new(StatusCode::TOO_MANY_REQUESTS, NetRefusal::RateLimited, "rate_limited", message)
            .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64)
    })
}

/// Entry point: routing runs on the blocking pool (RocksDB and fsync),
/// but for plays on the embedded engine (group commit, awaited).
pub async fn handle(inner: Arc<Inner>, req: Request<Bytes>, cx: RequestContext) -> Response<Body> {
    let route = route_label(req.method(), req.uri().path());
    let has_body = req.method() != Method::HEAD;
    let i2 = inner.clone();
    // Plays on the embedded engine stay on the runtime: they wait for their
    // group commit without a thread (the hop to the blocking pool and back,
    // and a thread parked per play in flight, cost more than the play).
    let resp = match (&inner.state, req.method() == Method::POST && req.uri().path() == "/v1/play") {
        (crate::ledger::Ledger::Embedded(state), true) => play::play_async(&inner, state, &req, cx).await.unwrap_or_else(Into::into),
        _ => match tokio::task::spawn_blocking(move || route_request(&i2, &req, cx)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => e.into(),
            Err(e) => ApiError::internal(e).into(),
        },
    };
    inner.metrics.request(route, cx.protocol.label(), resp.status().as_u16());
    if has_body {
        // Bodies are sized up front (full bytes, or a range with its length).
        let n = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        let n = n.or_else(|| http_body::Body::size_hint(resp.body()).exact()).unwrap_or(0);
        inner.metrics.response_bytes(route, n);
    }
    resp
}

fn route_label(method: &Method, path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (_, ["", "v1", "customers"]) => "customers",
        (_, ["", "v1", "orders"]) => "orders",
        (_, ["", "v1", "play"]) => "play",
        (_, ["", "v1", "titles"]) => "titles",
        (_, ["", "v1", "titles", _]) => "title",
        (_, ["", "v1", "titles", _, "manifest"]) => "manifest",
        (_, ["", "v1", "blobs", _]) => "blob",
        (_, ["", "v1", "revoke"]) => "revoke",
        (_, ["", "v1", "revocations"]) => "revocations",
        (_, ["", "v1", "cluster", ..]) => "cluster",
        (_, ["", "v1", "staging"]) => "staging",
        (_, ["", "v1", "origin-key"]) => "origin_key",
        (_, ["", "healthz"]) => "healthz",
        (_, ["", "metrics"]) => "metrics",
        _ => "other",
    }
}

fn route_request(inner: &Inner, req: &Request<Bytes>, cx: RequestContext) -> ApiResult {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let parts: Vec<&str> = path.split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["", "healthz"]) => {
            Ok(json_response(StatusCode::OK, &answers::Health { status: "ok".into(), role: "origin".into(), name: None }))
        }
        (&Method::GET, ["", "metrics"]) => {
            let mut r = Response::new(full(inner.metrics.render(inner)));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            Ok(r)
        }
        (&Method::GET, ["", "v1", "origin-key"]) => {
            let key = tranzcast_proto::answers::OriginKey { ed25519: hex::encode(inner.signing.verifying_key().as_bytes()) };
            Ok(json_response(StatusCode::OK, &key))
        }
        (&Method::GET, ["", "v1", "storefront"]) => {
            storefront(inner, req)?;
            Ok(json_response(StatusCode::OK, &answers::StorefrontCheck { storefront: "ok".into() }))
        }
        (&Method::POST, ["", "v1", "customers"]) => {
            storefront(inner, req)?;
            add_customer(inner, req)
        }
        (&Method::POST, ["", "v1", "orders"]) => {
            storefront(inner, req)?;
            add_order(inner, req)
        }
        (&Method::POST, ["", "v1", "play"]) => play::play(inner, req, cx),
        (&Method::POST, ["", "v1", "revoke"]) => {
            storefront(inner, req)?;
            revoke(inner, req)
        }
        (&Method::GET, ["", "v1", "revocations"]) => {
            let list = inner.state.revocations().map_err(ApiError::internal)?;
            let mut r = Response::new(full(tranzcast_proto::revocations::to_json(&list)));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(r)
        }
        (&Method::GET, ["", "v1", "titles"]) => titles(inner),
        (&Method::GET, ["", "v1", "titles", id]) => title(inner, id),
        (&Method::GET, ["", "v1", "titles", id, "manifest"]) => title_manifest(inner, id),
        (&Method::GET | &Method::HEAD, ["", "v1", "blobs", hash]) => blob(inner, hash, req),
        (&Method::GET, ["", "v1", "outboards", hash]) => {
            let a = parse_address(hash)?;
            let unknown = || ApiError::new(StatusCode::NOT_FOUND, "unknown_blob", format!("no blob {a}"));
            blob_reader(inner, req, || inner.store.get(&a).map_err(ApiError::internal)?.ok_or_else(unknown))?;
            let ob = inner
                .store
                .outboard(&a)
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_blob", format!("no blob {a}")))?;
            let mut r = Response::new(full(ob.encode()));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            Ok(r)
        }
        (&Method::PUT, ["", "v1", "blobs", hash]) => {
            storefront(inner, req)?;
            upload_blob(inner, hash, req.body())
        }
        (&Method::POST, ["", "v1", "titles"]) => {
            storefront(inner, req)?;
            publish_title(inner, req)
        }
        (&Method::POST, ["", "v1", "cluster", "join"]) | (&Method::POST, ["", "v1", "cluster", "heartbeat"]) => members::join(inner, req),
        (&Method::POST, ["", "v1", "cluster", "peer-identity"]) => members::peer_identity(inner, req, &cx),
        (&Method::POST, ["", "v1", "cluster", "members", name, "retire"]) => {
            storefront(inner, req)?;
            members::retire(inner, name)
        }
        (&Method::GET, ["", "v1", "staging"]) => {
            let nodes = inner.staging.lock().map(|s| s.clone()).unwrap_or_default();
            let peers = inner.precast.lock().map(|s| s.clone()).unwrap_or_default();
            Ok(json_response(StatusCode::OK, &answers::StagingView { nodes, peers }))
        }
        (&Method::GET, ["", "v1", "cluster"]) => {
            use tranzcast_proto::answers::{ClusterMember, ClusterView};
            let members = inner
                .live_members()
                .map_err(ApiError::internal)?
                .into_iter()
                .filter_map(|m| Some(ClusterMember { last_seen_ms: m.last_seen_ms, entry: play::source_entry(m)? }))
                .collect();
            Ok(json_response(StatusCode::OK, &ClusterView { members }))
        }
        (_, ["", "v1", ..]) | (_, ["", "healthz"]) | (_, ["", "metrics"]) => {
            Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{} is not allowed on {path}", req.method())))
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such resource: {path}"))),
    }
}

/// Checks `Authorization: Bearer <secret>`: 401 without it, 403 with another.
fn bearer(headers: &http::HeaderMap, secret: &str, missing: &str, wrong: &str) -> Result<(), ApiError> {
    let got = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match got {
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", missing)),
        Some(t) if constant_time_eq(t.trim().as_bytes(), secret.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", wrong)),
    }
}

fn storefront(inner: &Inner, req: &Request<Bytes>) -> Result<(), ApiError> {
    bearer(req.headers(), &inner.config.storefront_token, "this call needs the storefront's bearer token", "wrong storefront token")
}

/// Who may read a blob or its outboard at the origin: the operator's own
/// servers (the cluster token, or the storefront's), or a viewer with a live,
/// unrevoked certificate for the title written in the blob itself. Nobody
/// else: the manifests are public, so every address is known, and an open
/// read would hand the whole catalog's ciphertext to anyone, past the edges.
///
/// Decided on the credentials first: only a certificate needs the blob's
/// first bytes (its title), so nothing is read from disk for a request
/// without credentials or with a wrong token.
fn blob_reader(inner: &Inner, req: &Request<Bytes>, blob: impl FnOnce() -> Result<Bytes, ApiError>) -> Result<(), ApiError> {
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let missing = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "blob reads need the cluster token or Authorization: Tranzcast <certificate for the blob's title>",
        )
    };
    let auth = auth.ok_or_else(missing)?;
    if let Some(t) = auth.strip_prefix("Bearer ") {
        let t = t.trim().as_bytes();
        return if constant_time_eq(t, inner.config.cluster_token.as_bytes())
            || constant_time_eq(t, inner.config.storefront_token.as_bytes())
        {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "wrong token"))
        };
    }
    let text = auth.strip_prefix("Tranzcast ").ok_or_else(missing)?;
    let cert = match SignedToken::from_text(text.trim()).ok().as_ref().map(|s| s.verify_own(&inner.tokens).cloned()) {
        Some(Ok(Token::Certificate(c))) => c,
        _ => return Err(ApiError::new(StatusCode::FORBIDDEN, "forged", "not a validation certificate signed by this origin")),
    };
    if cert.is_expired(now_secs()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "expired", "the certificate has expired"));
    }
    if inner.state.is_revoked(&cert.serial).map_err(ApiError::internal)? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "revoked", "the certificate was revoked"));
    }
    match tranzcast_proto::owner::blob_title(&blob()?) {
        Some(t) if t == cert.title => Ok(()),
        _ => Err(ApiError::new(StatusCode::FORBIDDEN, "wrong_title", "this blob does not belong to the certificate's title")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
