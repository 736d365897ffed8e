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

use crate::state::{IssuedCertificate, Member, Order, OrderKind, OrderOnce, ValidationEntry};
use crate::validation::{self, Context, Refusal};
use crate::{Inner, now_secs, random16};

mod members;
mod play;

/// Request counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    validations: Mutex<BTreeMap<String, u64>>,
    /// Response body bytes by route (what leaves the origin when asked).
    response_bytes: Mutex<BTreeMap<&'static str, u64>>,
    /// Blob bytes pushed to nodes (staging) and peers (pre-casts).
    pub(crate) pushed_bytes: std::sync::atomic::AtomicU64,
}

impl Metrics {
    fn request(&self, route: &str, proto: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), proto, status)).or_default() += 1;
        }
    }

    fn response_bytes(&self, route: &'static str, n: u64) {
        if let Ok(mut m) = self.response_bytes.lock() {
            *m.entry(route).or_default() += n;
        }
    }

    fn validation(&self, result: &str) {
        if let Ok(mut m) = self.validations.lock() {
            *m.entry(result.to_string()).or_default() += 1;
        }
    }

    fn render(&self, inner: &Inner) -> String {
        let mut out = String::new();
        out.push_str("# HELP origin_requests_total HTTP requests by route, protocol and status.\n# TYPE origin_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, proto, status), n) in m.iter() {
                let _ = writeln!(out, "origin_requests_total{{route=\"{route}\",protocol=\"{proto}\",status=\"{status}\"}} {n}");
            }
        }
        out.push_str("# HELP origin_validations_total Ticket validations by result.\n# TYPE origin_validations_total counter\n");
        if let Ok(m) = self.validations.lock() {
            for (result, n) in m.iter() {
                let _ = writeln!(out, "origin_validations_total{{result=\"{result}\"}} {n}");
            }
        }
        out.push_str("# HELP origin_response_bytes_total Response body bytes by route.\n# TYPE origin_response_bytes_total counter\n");
        if let Ok(m) = self.response_bytes.lock() {
            for (route, n) in m.iter() {
                let _ = writeln!(out, "origin_response_bytes_total{{route=\"{route}\"}} {n}");
            }
        }
        out.push_str("# HELP origin_pushed_bytes_total Blob bytes pushed to nodes (staging) and peers (pre-casts).\n# TYPE origin_pushed_bytes_total counter\n");
        let _ = writeln!(out, "origin_pushed_bytes_total {}", self.pushed_bytes.load(std::sync::atomic::Ordering::Relaxed));
        if let Ok(s) = inner.store.stats() {
            out.push_str("# TYPE origin_store_blobs gauge\n");
            let _ = writeln!(out, "origin_store_blobs {}", s.blobs);
            out.push_str("# TYPE origin_store_bytes gauge\n");
            let _ = writeln!(out, "origin_store_bytes {}", s.bytes);
        }
        inner.server.render("origin", &mut out);
        out
    }
}

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
            return match SignedToken::from_text(cert.trim()).ok().as_ref().map(|s| s.verify(&inner.signing.verifying_key())) {
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

/// Entry point: routing runs on the blocking pool (RocksDB and fsync).
pub async fn handle(inner: Arc<Inner>, req: Request<Bytes>, cx: RequestContext) -> Response<Body> {
    let route = route_label(req.method(), req.uri().path());
    let has_body = req.method() != Method::HEAD;
    let i2 = inner.clone();
    let resp = match tokio::task::spawn_blocking(move || route_request(&i2, &req, cx)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into(),
        Err(e) => ApiError::internal(e).into(),
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
    let cert = match SignedToken::from_text(text.trim()).ok().as_ref().map(|s| s.verify(&inner.signing.verifying_key()).cloned()) {
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

fn add_customer(inner: &Inner, req: &Request<Bytes>) -> ApiResult {
    let name = wire::new_customer(req.body()).map_err(ApiError::wire)?;
    let id = inner.state.add_customer(&name, now_secs()).map_err(ApiError::internal)?;
    Ok(json_response(StatusCode::CREATED, &tranzcast_proto::answers::CustomerCreated { customer: id }))
}

fn title_key(inner: &Inner, title: &TitleId) -> Result<Option<TitleKey>, ApiError> {
    Ok(inner.store.title_secret(title).map_err(ApiError::internal)?.map(TitleKey::from_bytes))
}

/// The `Idempotency-Key` header of an order or a play, if any: 1..=64 of
/// A-Z, a-z, 0-9, '-', '_', '.', ':'.
fn idempotency_key(req: &Request<Bytes>) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else { return Ok(None) };
    Ok(Some(wire::idempotency_key(v.as_bytes()).map_err(ApiError::wire)?.to_string()))
}

fn add_order(inner: &Inner, req: &Request<Bytes>) -> ApiResult {
    let o = wire::new_order(req.body()).map_err(ApiError::wire)?;
    let title = o.title.clone();
    if inner.state.customer(o.customer).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_customer", format!("no customer {}", o.customer)));
    }
    if inner.state.customer_revoked(o.customer).map_err(ApiError::internal)? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "customer_revoked", format!("customer {} was revoked", o.customer)));
    }
    let key =
        title_key(inner, &title)?.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_title", format!("no title {title}")))?;
    let now = now_secs();
    let (kind, plays, expires) = match o.terms {
        wire::OrderTerms::Buy => (OrderKind::Buy, UNLIMITED, 0),
        wire::OrderTerms::Rent { plays, seconds } => {
            (OrderKind::Rent { plays, hours: u32::try_from(seconds.div_ceil(3600)).unwrap_or(u32::MAX) }, plays, now + seconds)
        }
    };
    let serial = random16();
    let (t, record) =
        validation::issue(o.customer, &title, plays, expires, now, inner.state.peek_order(), &key, serial, tranzcast_proto::random_bytes());
    let order = Order { customer: o.customer, title: title.to_string(), kind, created: now, ticket: hex::encode(serial) };
    let Some(idempotency_key) = idempotency_key(req)? else {
        let id = inner.state.add_order(&order, &serial, &record).map_err(ApiError::internal)?;
        let text = ticket::to_text(&t.sign(&inner.signing));
        return Ok(json_response(StatusCode::CREATED, &OrderPlaced { ticket: text, order: id, serial: hex::encode(serial) }));
    };
    // The request's fingerprint: what it asked for, not what was computed from it (the time).
    let fingerprint = o.fingerprint;
    match inner.state.add_order_once(&idempotency_key, fingerprint, &order, &serial, &record).map_err(ApiError::internal)? {
        OrderOnce::Created(id) => {
            let text = ticket::to_text(&t.sign(&inner.signing));
            Ok(json_response(StatusCode::CREATED, &OrderPlaced { ticket: text, order: id, serial: hex::encode(serial) }))
        }
        OrderOnce::Existing(id) => {
            // The first ticket as issued: its record holds every field and
            // K1, and Ed25519 signs deterministically, so the text is the same.
            let o = inner.state.order(id).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal("keyed order missing"))?;
            let mut first = [0u8; 16];
            hex::decode_to_slice(&o.ticket, &mut first).map_err(ApiError::internal)?;
            let r = inner
                .state
                .ticket(&first)
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::internal("keyed order's ticket missing"))?;
            let t = tranzcast_proto::ticket::PlayTicket {
                serial: first,
                customer: r.customer,
                created: r.created,
                expires: r.expires,
                title: title.clone(),
                plays: r.plays,
                key_part: key.xor(&r.k1),
            };
            let mut resp = json_response(
                StatusCode::CREATED,
                &OrderPlaced { ticket: ticket::to_text(&t.sign(&inner.signing)), order: id, serial: o.ticket },
            );
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
        OrderOnce::KeyReused(id) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!("Idempotency-Key {idempotency_key:?} was used for another order request (order {id})"),
        )),
    }
}

/// Revokes a ticket (its whole order: every ticket, replacements to come
/// included, and every certificate issued from them), a serial (a ticket's,
/// as above, or a certificate's alone), an order or a customer (every order).
fn revoke(inner: &Inner, req: &Request<Bytes>) -> ApiResult {
    let r = wire::revoke(req.body()).map_err(ApiError::wire)?;
    let now = now_secs();
    let (what, done) = match r {
        wire::Revoke::Ticket(t) => {
            let st = SignedToken::from_text(&t).map_err(|e| ApiError::bad(format!("ticket: {e}")))?;
            let serial = match st.verify(&inner.signing.verifying_key()) {
                Ok(Token::Ticket(t)) => t.serial,
                _ => return Err(ApiError::refused(Refusal::Forged)),
            };
            (wire::RevokeBody { ticket: Some(hex::encode(serial)), ..Default::default() }, inner.state.revoke_serial(&serial, now))
        }
        wire::Revoke::Serial(serial) => {
            (wire::RevokeBody { serial: Some(hex::encode(serial)), ..Default::default() }, inner.state.revoke_serial(&serial, now))
        }
        wire::Revoke::Order(o) => (wire::RevokeBody { order: Some(o), ..Default::default() }, inner.state.revoke_order(o, now)),
        wire::Revoke::Customer(c) => (wire::RevokeBody { customer: Some(c), ..Default::default() }, inner.state.revoke_customer(c, now)),
    };
    let what_text = serde_json::to_string(&what).unwrap_or_default();
    let Some(done) = done.map_err(ApiError::internal)? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("nothing to revoke: no such {what_text}")));
    };
    tracing::info!(what = %what_text, orders = done.orders, tickets = done.tickets, certificates = done.certificates, "revoked");
    let answer = answers::Revoked { revoked: what, orders: done.orders, tickets: done.tickets, certificates: done.certificates };
    Ok(json_response(StatusCode::OK, &answer))
}

fn manifest_summary(inner: &Inner, title: &TitleId, addr: &BlobAddress) -> Result<(answers::TitleSummary, Option<Bytes>), ApiError> {
    let bytes = inner.store.get(addr).map_err(ApiError::internal)?;
    let bare = answers::TitleSummary { title: title.as_str().to_string(), manifest: addr.to_hex(), ..Default::default() };
    let Some(b) = bytes else { return Ok((bare, None)) };
    let sm = SignedManifest::decode(&b).map_err(ApiError::internal)?;
    let m = &sm.manifest;
    let chapters =
        m.chapters.iter().map(|c| answers::Chapter { start_ms: c.start_ms, byte_offset: c.byte_offset, name: c.name.clone() }).collect();
    let summary = answers::TitleSummary {
        segments: Some(m.segments.len()),
        segment_size: Some(m.segment_size),
        bytes: Some(m.plaintext_len),
        running_time_s: Some(m.running_time_ms as f64 / 1000.0),
        media_type: Some(m.media_type.clone()),
        chapters: Some(chapters),
        ..bare
    };
    Ok((summary, Some(b)))
}

fn titles(inner: &Inner) -> ApiResult {
    let mut out = Vec::new();
    for (t, a) in inner.store.titles().map_err(ApiError::internal)? {
        out.push(manifest_summary(inner, &t, &a)?.0);
    }
    Ok(json_response(StatusCode::OK, &answers::Titles { titles: out }))
}

fn title(inner: &Inner, id: &str) -> ApiResult {
    let t = TitleId::new(id).map_err(|e| ApiError::bad(e.to_string()))?;
    let a = inner
        .store
        .title_manifest(&t)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_title", format!("no title {t}")))?;
    let (mut summary, bytes) = manifest_summary(inner, &t, &a)?;
    summary.manifest_blob = bytes.map(|b| URL_SAFE_NO_PAD.encode(b));
    Ok(json_response(StatusCode::OK, &summary))
}

/// The signed manifest itself (public: it names blobs and is signed; the key is elsewhere).
fn title_manifest(inner: &Inner, id: &str) -> ApiResult {
    let t = TitleId::new(id).map_err(|e| ApiError::bad(e.to_string()))?;
    let bytes = inner
        .store
        .title_manifest(&t)
        .map_err(ApiError::internal)?
        .and_then(|a| inner.store.get(&a).transpose())
        .transpose()
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_title", format!("no title {t}")))?;
    let mut r = Response::new(full(bytes));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    Ok(r)
}

fn parse_address(hash: &str) -> Result<BlobAddress, ApiError> {
    hash.parse().map_err(|e: tranzcast_proto::ProtoError| ApiError::bad(e.to_string()))
}

fn blob(inner: &Inner, hash: &str, req: &Request<Bytes>) -> ApiResult {
    let a = parse_address(hash)?;
    let load = || {
        inner
            .store
            .get(&a)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_blob", format!("no blob {a}")))
    };
    // Read once: by the credentials check when it needs the title, else here.
    let mut held = None;
    blob_reader(inner, req, || load().inspect(|b| held = Some(b.clone())))?;
    let b = match held {
        Some(b) => b,
        None => load()?,
    };
    let etag = a.etag();
    let rep = tranzcast_net::ranged::Representation {
        etag: &etag,
        content_type: "application/octet-stream",
        max_ranges: inner.config.limits.max_ranges as usize,
    };
    Ok(tranzcast_net::ranged::respond(req.method(), req.headers(), b, &rep))
}

fn upload_blob(inner: &Inner, hash: &str, body: &Bytes) -> ApiResult {
    let a = parse_address(hash)?;
    a.verify(body).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch", e.to_string()))?;
    inner.store.put(body).map_err(ApiError::internal)?;
    Ok(json_response(StatusCode::CREATED, &answers::Stored { stored: a.to_hex() }))
}

/// Publishes an uploaded title: every segment must be here, decrypt under
/// the given key at its position and hold a whole segment (every segment is
/// padded to `segment_size`: an edge slices a decrypted segment by the
/// manifest's lengths); the manifest is re-signed by the origin. The check
/// that the title is free and the commit are one step under a lock.
fn publish_title(inner: &Inner, req: &Request<Bytes>) -> ApiResult {
    use tranzcast_proto::frame::FrameKind;
    use tranzcast_proto::keys::{self, Expected};
    let p = wire::publish(req.body()).map_err(ApiError::wire)?;
    let title = p.title;
    if inner.store.title_manifest(&title).map_err(ApiError::internal)?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "title_exists", format!("title {title} already exists")));
    }
    let key = TitleKey::from_bytes(p.key);
    let mut m = SignedManifest::decode(&p.manifest).map_err(|e| ApiError::bad(format!("manifest: {e}")))?.manifest;
    if m.title != title {
        return Err(ApiError::bad(format!("manifest is for {}, not {title}", m.title)));
    }
    for (i, a) in m.segments.iter().enumerate() {
        let frame = inner
            .store
            .get(a)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "incomplete", format!("segment {i} ({a}) has not been uploaded")))?;
        let plain = keys::open(&key, &frame, &Expected { title: &title, kind: FrameKind::Media, sequence: i as u64 })
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_segment", format!("segment {i}: {e}")))?;
        if plain.len() as u64 != u64::from(m.segment_size) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_segment",
                format!("segment {i} holds {} bytes; the manifest's segments are {} bytes", plain.len(), m.segment_size),
            ));
        }
    }
    m.created = now_secs();
    let signed = m.sign(&inner.signing).map_err(|e| ApiError::bad(e.to_string()))?;
    let _one_at_a_time = inner.publishing.lock().unwrap_or_else(|p| p.into_inner());
    if inner.store.title_manifest(&title).map_err(ApiError::internal)?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "title_exists", format!("title {title} already exists")));
    }
    let addr = inner.store.commit_title(&title, &signed, key.expose()).map_err(ApiError::internal)?;
    let answer = answers::Published { title: title.as_str().to_string(), manifest: addr.to_hex(), segments: Some(m.segments.len()) };
    Ok(json_response(StatusCode::CREATED, &answer))
}
