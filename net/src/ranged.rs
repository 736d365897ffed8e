//! Immutable representations answered with full RFC 9110 range semantics:
//! the decision comes from `tranzcast_proto::range` (pure), this module turns
//! it into a response whose body streams zero-copy slices of the bytes.

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tranzcast_proto::range::{Conditions, Decision, evaluate};

use crate::Body;

/// Bytes per body frame: large enough for throughput, small enough that
/// HTTP/2 and HTTP/3 flow control interleave streams.
pub const FRAME: usize = 256 << 10;

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A stream of body bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Where a representation's bytes come from: stored whole, or arriving.
pub trait Source: Send + Sync + 'static {
    /// The bytes `[start, end)` as a stream (it may wait for them to arrive).
    fn stream(&self, start: u64, end: u64) -> ByteStream;

    /// The bytes `[start, end)` at once when they are in hand and small
    /// enough for one body frame: the body is then known complete, so HTTP/2
    /// and HTTP/3 end the stream with that frame (no separate empty end frame,
    /// no second poll), which matters for small ranges.
    fn ready(&self, _start: u64, _end: u64) -> Option<Bytes> {
        None
    }
}

impl Source for Bytes {
    fn stream(&self, start: u64, end: u64) -> ByteStream {
        let b = self.slice(start as usize..end as usize);
        let n = b.len().div_ceil(FRAME);
        stream::iter((0..n).map(move |i| Ok(b.slice(i * FRAME..((i + 1) * FRAME).min(b.len()))))).boxed()
    }

    fn ready(&self, start: u64, end: u64) -> Option<Bytes> {
        (end - start <= FRAME as u64).then(|| self.slice(start as usize..end as usize))
    }
}

/// What a ranged answer is about: its strong ETag (quoted), its media
/// type, and the most ranges one request may ask for (`limits.max_ranges`).
#[derive(Debug, Clone, Copy)]
pub struct Representation<'a> {
    /// Strong ETag, quoted.
    pub etag: &'a str,
    /// Content-Type.
    pub content_type: &'a str,
    /// Most ranges per request.
    pub max_ranges: usize,
}

/// Answers a GET or HEAD for `bytes`.
pub fn respond(method: &Method, headers: &HeaderMap, bytes: Bytes, rep: &Representation<'_>) -> Response<Body> {
    let len = bytes.len() as u64;
    respond_from(method, headers, &bytes, len, rep)
}

/// Answers a GET or HEAD for `len` bytes from `source` (which may still be arriving).
pub fn respond_from(method: &Method, headers: &HeaderMap, source: &dyn Source, len: u64, rep: &Representation<'_>) -> Response<Body> {
    let (etag, content_type) = (rep.etag, rep.content_type);
    let conditions = Conditions {
        range: header_str(headers, header::RANGE),
        if_range: header_str(headers, header::IF_RANGE),
        if_none_match: header_str(headers, header::IF_NONE_MATCH),
        max_ranges: rep.max_ranges,
    };
    let head = method == Method::HEAD;
    let decision = evaluate(&conditions, etag, len);
    // The body is set last, once: boxing a placeholder would cost an
    // allocation on every request.
    let mut r = Response::new(());
    let h = r.headers_mut();
    h.reserve(8);
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    // Said where a client learns it (a whole answer, a 304, a 416), not on
    // a 206, whose client already uses ranges (nginx does the same).
    if !matches!(&decision, Decision::Partial(_)) {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    let ctype = media_type(content_type);
    let fixed = |b: Bytes| stream::iter([Ok::<Bytes, std::io::Error>(b)]).boxed();
    // One range in hand: a complete body, no stream.
    let at_once = |start: u64, end: u64| (!head).then(|| source.ready(start, end)).flatten();
    let (status, body_len, body): (StatusCode, Option<u64>, Vec<ByteStream>) = match decision {
        Decision::NotModified => (StatusCode::NOT_MODIFIED, None, vec![]),
        Decision::Full => {
            h.insert(header::CONTENT_TYPE, ctype);
            if let Some(b) = at_once(0, len) {
                r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                return r.map(|()| crate::full(b));
            }
            (StatusCode::OK, Some(len), vec![source.stream(0, len)])
        }
        Decision::Partial(ranges) if ranges.len() == 1 => {
            let r0 = &ranges[0];
            h.insert(header::CONTENT_TYPE, ctype);
            if let Some(v) = content_range(r0.start, r0.end - 1, len) {
                h.insert(header::CONTENT_RANGE, v);
            }
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Some(b) = at_once(r0.start, r0.end) {
                r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(r0.end - r0.start));
                return r.map(|()| crate::full(b));
            }
            (StatusCode::PARTIAL_CONTENT, Some(r0.end - r0.start), vec![source.stream(r0.start, r0.end)])
        }
        Decision::Partial(ranges) => {
            let boundary = hex::encode(tranzcast_proto::random_bytes::<12>());
            if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")) {
                h.insert(header::CONTENT_TYPE, v);
            }
            let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
            let mut total = 0u64;
            for (i, r) in ranges.iter().enumerate() {
                let head =
                    format!("--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n", r.start, r.end - 1);
                let head = if i == 0 { head } else { format!("\r\n{head}") };
                total += head.len() as u64 + (r.end - r.start);
                parts.push(fixed(Bytes::from(head)));
                parts.push(source.stream(r.start, r.end));
            }
            let tail = format!("\r\n--{boundary}--\r\n");
            total += tail.len() as u64;
            parts.push(fixed(Bytes::from(tail)));
            (StatusCode::PARTIAL_CONTENT, Some(total), parts)
        }
        Decision::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, Some(0), vec![])
        }
        Decision::BadRequest(reason) => {
            let body = serde_json_error("bad_range", &reason);
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (StatusCode::BAD_REQUEST, Some(body.len() as u64), vec![fixed(body)])
        }
    };
    *r.status_mut() = status;
    if let Some(n) = body_len {
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if !head && !body.is_empty() {
        let s =
            stream::iter(body).flatten().filter(|r| std::future::ready(!matches!(r, Ok(b) if b.is_empty()))).map(|r| r.map(Frame::data));
        return r.map(|()| BodyExt::boxed_unsync(StreamBody::new(s)));
    }
    r.map(|()| crate::full(Bytes::new()))
}

/// `Content-Range: bytes first-last/len`, written straight into the
/// header's bytes (one allocation; `format!` made a string, then a copy).
fn content_range(first: u64, last: u64, len: u64) -> Option<HeaderValue> {
    let mut b = bytes::BytesMut::with_capacity(6 + 3 * 20 + 2);
    let mut digits = itoa::Buffer::new();
    b.extend_from_slice(b"bytes ");
    b.extend_from_slice(digits.format(first).as_bytes());
    b.extend_from_slice(b"-");
    b.extend_from_slice(digits.format(last).as_bytes());
    b.extend_from_slice(b"/");
    b.extend_from_slice(digits.format(len).as_bytes());
    HeaderValue::from_maybe_shared(b.freeze()).ok()
}

/// The `Content-Type` value: the usual one without a copy.
fn media_type(content_type: &str) -> HeaderValue {
    const OCTETS: &str = "application/octet-stream";
    if content_type == OCTETS {
        return HeaderValue::from_static(OCTETS);
    }
    HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static(OCTETS))
}

fn serde_json_error(code: &str, reason: &str) -> Bytes {
    let esc: String =
        reason.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).filter(|c| !c.is_control()).collect();
    Bytes::from(format!("{{\"error\":{{\"code\":\"{code}\",\"reason\":\"{esc}\"}}}}"))
}
