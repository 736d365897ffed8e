//! The edge's one error type for its routes: every refusal and failure
//! becomes `{"error": {"code", "reason"}}` (proto's `ErrorBody`) with its
//! status, and a 503 carries `Retry-After`.

use http::{HeaderValue, Response, StatusCode, header};
use tranzcast_net::{Body, full};

/// An error answer.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) reason: String,
}

impl From<Fail> for Response<Body> {
    fn from(f: Fail) -> Self {
        let mut r = tranzcast_net::error_response(f.status, f.code, &f.reason);
        if f.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// A route's answer.
pub(crate) type Reply = Result<Response<Body>, Fail>;

pub(crate) fn error(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Fail {
    Fail { status, code, reason: reason.into() }
}

/// A refusal (`access`'s and `revocation`'s decisions: status, code, reason).
pub(crate) fn denied((status, code, reason): tranzcast_proto::access::Denial) -> Fail {
    error(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN), code, reason)
}

/// A failure of our own: logged in full, answered without detail.
pub(crate) fn internal(e: impl std::fmt::Display) -> Fail {
    tracing::error!(error = %e, "internal error");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server's log")
}

pub(crate) fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_string(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
