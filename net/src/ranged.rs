//! Immutable representations answered with full RFC 9110 range semantics:
//! the decision comes from `tranzcast_proto::range` (pure), this module turns
//! it into a response whose body streams zero-copy slices of the bytes.

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tranzcast_proto::range::{Conditions, Decision, evaluate};

use crate::Body;

/// Bytes per body frame: large enough for throughput, small enough that
/// HTTP/2 and HTTP/3 flow control interleave streams.
pub const FRAME: usize = 256 << 10;

fn frames(parts: Vec<Bytes>) -> Body {
    let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
        .into_iter()
        .flat_map(|b| {
            let n = b.len().div_ceil(FRAME).max(1);
            (0..n).map(move |i| b.slice(i * FRAME..((i + 1) * FRAME).min(b.len())))
        })
        .filter(|b| !b.is_empty())
        .map(|b| Ok(Frame::data(b)))
        .collect();
    StreamBody::new(stream::iter(chunks)).boxed()
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Answers a GET or HEAD for `bytes`, whose strong ETag is `etag` (quoted).
pub fn respond(method: &Method, headers: &HeaderMap, bytes: Bytes, etag: &str, content_type: &str) -> Response<Body> {
    let len = bytes.len() as u64;
    let conditions = Conditions {
        range: header_str(headers, header::RANGE),
        if_range: header_str(headers, header::IF_RANGE),
        if_none_match: header_str(headers, header::IF_NONE_MATCH),
    };
    let head = method == Method::HEAD;
    let decision = evaluate(&conditions, etag, len);
    let mut r = Response::new(crate::full(Bytes::new()));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    let ctype = HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let (status, body_len, body) = match decision {
        Decision::NotModified => (StatusCode::NOT_MODIFIED, None, None),
        Decision::Full => {
            h.insert(header::CONTENT_TYPE, ctype);
            (StatusCode::OK, Some(len), Some(vec![bytes]))
        }
        Decision::Partial(ranges) if ranges.len() == 1 => {
            let r0 = &ranges[0];
            h.insert(header::CONTENT_TYPE, ctype);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{len}", r0.start, r0.end - 1)) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, Some(r0.end - r0.start), Some(vec![bytes.slice(r0.start as usize..r0.end as usize)]))
        }
        Decision::Partial(ranges) => {
            let boundary = hex::encode(tranzcast_proto::random_bytes::<12>());
            if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")) {
                h.insert(header::CONTENT_TYPE, v);
            }
            let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
            for r in &ranges {
                let head =
                    format!("--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n", r.start, r.end - 1);
                parts.push(Bytes::from(if parts.is_empty() { head } else { format!("\r\n{head}") }));
                parts.push(bytes.slice(r.start as usize..r.end as usize));
            }
            parts.push(Bytes::from(format!("\r\n--{boundary}--\r\n")));
            let total = parts.iter().map(|p| p.len() as u64).sum();
            (StatusCode::PARTIAL_CONTENT, Some(total), Some(parts))
        }
        Decision::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, Some(0), None)
        }
        Decision::BadRequest(reason) => {
            let body = serde_json_error("bad_range", &reason);
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (StatusCode::BAD_REQUEST, Some(body.len() as u64), Some(vec![body]))
        }
    };
    *r.status_mut() = status;
    if let Some(n) = body_len {
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if !head && let Some(parts) = body {
        *r.body_mut() = frames(parts);
    }
    r
}

fn serde_json_error(code: &str, reason: &str) -> Bytes {
    let esc: String =
        reason.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).filter(|c| !c.is_control()).collect();
    Bytes::from(format!("{{\"error\":{{\"code\":\"{code}\",\"reason\":\"{esc}\"}}}}"))
}
