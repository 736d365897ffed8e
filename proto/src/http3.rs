//! HTTP/3's wire (RFC 9114) as the edge's server speaks it, pure: variable
//! -length integers, frame heads, SETTINGS, which frames a request stream
//! and a control stream may carry in which order, the request head's rules,
//! and QPACK without a dynamic table ([`qpack`]). The I/O (quinn streams)
//! is `net`'s; everything it decides about a peer's bytes is here, so it is
//! fuzzed (`fuzz/fuzz_targets/http3.rs`) and tested on hostile input.

pub mod huffman;
pub mod qpack;

use std::borrow::Cow;

/// HTTP/3 and QPACK error codes (RFC 9114, 8.1; RFC 9204, 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H3Code {
    NoError,
    GeneralProtocolError,
    InternalError,
    StreamCreationError,
    ClosedCriticalStream,
    FrameUnexpected,
    FrameError,
    ExcessiveLoad,
    IdError,
    SettingsError,
    MissingSettings,
    RequestRejected,
    RequestCancelled,
    RequestIncomplete,
    MessageError,
    QpackDecompressionFailed,
    QpackEncoderStreamError,
    QpackDecoderStreamError,
}

impl H3Code {
    /// The code on the wire.
    pub fn value(self) -> u64 {
        match self {
            Self::NoError => 0x100,
            Self::GeneralProtocolError => 0x101,
            Self::InternalError => 0x102,
            Self::StreamCreationError => 0x103,
            Self::ClosedCriticalStream => 0x104,
            Self::FrameUnexpected => 0x105,
            Self::FrameError => 0x106,
            Self::ExcessiveLoad => 0x107,
            Self::IdError => 0x108,
            Self::SettingsError => 0x109,
            Self::MissingSettings => 0x10a,
            Self::RequestRejected => 0x10b,
            Self::RequestCancelled => 0x10c,
            Self::RequestIncomplete => 0x10d,
            Self::MessageError => 0x10e,
            Self::QpackDecompressionFailed => 0x200,
            Self::QpackEncoderStreamError => 0x201,
            Self::QpackDecoderStreamError => 0x202,
        }
    }
}

/// What a peer's bytes broke, and the code to close (or reset) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H3Error {
    pub code: H3Code,
    pub reason: &'static str,
}

impl H3Error {
    pub(crate) fn new(code: H3Code, reason: &'static str) -> Self {
        Self { code, reason }
    }

    /// A request head over the server's size (answered 431).
    pub fn too_large() -> Self {
        Self::new(H3Code::ExcessiveLoad, "the field section is over the server's limit")
    }

    /// A request head with more field lines than the server takes (answered 431).
    pub fn too_many_fields() -> Self {
        Self::new(H3Code::ExcessiveLoad, "the field section has more lines than the server takes")
    }

    /// Whether this is [`H3Error::too_many_fields`].
    pub fn is_too_many_fields(&self) -> bool {
        *self == Self::too_many_fields()
    }

    /// Whether this is [`H3Error::too_large`].
    pub fn is_too_large(&self) -> bool {
        *self == Self::too_large()
    }

    /// Whether it ends the whole connection (else only the stream).
    pub fn is_connection_error(&self) -> bool {
        !matches!(self.code, H3Code::MessageError | H3Code::ExcessiveLoad | H3Code::RequestIncomplete)
    }
}

impl std::fmt::Display for H3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (h3 code {:#x})", self.reason, self.code.value())
    }
}

impl std::error::Error for H3Error {}

/// Reads a QUIC variable-length integer from the start of `b`: the value
/// and its length, or None if `b` ends first.
pub fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    Some((v, len))
}

/// Appends `v` (below 2^62) as a QUIC variable-length integer.
pub fn write_varint(v: u64, out: &mut Vec<u8>) {
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&(0x4000 | v as u16).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&(0x8000_0000 | v as u32).to_be_bytes());
    } else {
        out.extend_from_slice(&(0xc000_0000_0000_0000 | v.min((1 << 62) - 1)).to_be_bytes());
    }
}

/// Frame types (RFC 9114, 7.2).
pub mod frame {
    pub const DATA: u64 = 0x0;
    pub const HEADERS: u64 = 0x1;
    pub const CANCEL_PUSH: u64 = 0x3;
    pub const SETTINGS: u64 = 0x4;
    pub const PUSH_PROMISE: u64 = 0x5;
    pub const GOAWAY: u64 = 0x7;
    pub const MAX_PUSH_ID: u64 = 0xd;

    /// HTTP/2's frame types without an HTTP/3 meaning: an error wherever they come.
    pub fn reserved_http2(t: u64) -> bool {
        matches!(t, 0x2 | 0x6 | 0x8 | 0x9)
    }
}

/// Unidirectional stream types (RFC 9114, 6.2; RFC 9204, 4.2).
pub mod stream_type {
    pub const CONTROL: u64 = 0x0;
    pub const PUSH: u64 = 0x1;
    pub const QPACK_ENCODER: u64 = 0x2;
    pub const QPACK_DECODER: u64 = 0x3;
}

/// A frame's type and payload length, and how many bytes the two took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub ty: u64,
    pub len: u64,
    pub head_len: usize,
}

/// Reads a frame head from the start of `b`; None if `b` ends first.
pub fn read_frame_head(b: &[u8]) -> Option<FrameHead> {
    let (ty, a) = read_varint(b)?;
    let (len, c) = read_varint(&b[a..])?;
    Some(FrameHead { ty, len, head_len: a + c })
}

/// Appends a frame head.
pub fn write_frame_head(ty: u64, len: u64, out: &mut Vec<u8>) {
    write_varint(ty, out);
    write_varint(len, out);
}

/// Where a request stream is: what its next frame may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPhase {
    /// Before the request's HEADERS.
    Head,
    /// After HEADERS: DATA, or trailers.
    Body,
    /// After the trailers: nothing but unknown frames.
    Done,
}

/// What to do with a frame on a request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFrame {
    /// The request's head: read the whole payload (at most the cap given).
    Head,
    /// Body bytes: pass the payload on.
    Data,
    /// The trailers: read the whole payload (at most the cap given), then
    /// check it with [`trailer_section`].
    Trailers,
    /// An unknown (greasing, extension) frame: skip its payload.
    Skip,
}

/// The rules of a request stream's frames (RFC 9114, 4.1 and 7.2): a
/// HEADERS first, whose payload fits `max_head`, then DATA, then at most
/// one HEADERS of trailers, which fits `max_head` too (a stream error
/// past it: the body may be under way, too late for a 431); unknown types
/// anywhere; anything else is a connection error.
pub fn request_frame(phase: &mut RequestPhase, head: FrameHead, max_head: u64) -> Result<RequestFrame, H3Error> {
    let unexpected = |reason| Err(H3Error::new(H3Code::FrameUnexpected, reason));
    match head.ty {
        frame::HEADERS => match phase {
            RequestPhase::Head => {
                // The cap on a decoded section bounds its encoded size too:
                // each field line counts 32 bytes plus its name and value,
                // and no encoding takes more than that plus its prefix.
                if head.len > max_head {
                    return Err(H3Error::too_large());
                }
                *phase = RequestPhase::Body;
                Ok(RequestFrame::Head)
            }
            RequestPhase::Body => {
                if head.len > max_head {
                    return Err(H3Error::new(H3Code::ExcessiveLoad, "trailers over the head limit"));
                }
                *phase = RequestPhase::Done;
                Ok(RequestFrame::Trailers)
            }
            RequestPhase::Done => unexpected("a HEADERS frame after the trailers"),
        },
        frame::DATA => match phase {
            RequestPhase::Head => unexpected("a DATA frame before the request's HEADERS"),
            RequestPhase::Body => Ok(RequestFrame::Data),
            RequestPhase::Done => unexpected("a DATA frame after the trailers"),
        },
        frame::CANCEL_PUSH | frame::SETTINGS | frame::GOAWAY | frame::MAX_PUSH_ID => unexpected("a control frame on a request stream"),
        frame::PUSH_PROMISE => unexpected("a PUSH_PROMISE from a client"),
        t if frame::reserved_http2(t) => unexpected("an HTTP/2 frame type"),
        _ => Ok(RequestFrame::Skip),
    }
}

/// Settings identifiers (RFC 9114, 7.2.4.1; RFC 9204, 5).
pub mod setting {
    pub const QPACK_MAX_TABLE_CAPACITY: u64 = 0x1;
    pub const MAX_FIELD_SECTION_SIZE: u64 = 0x6;
    pub const QPACK_BLOCKED_STREAMS: u64 = 0x7;
}

/// The peer's settings this server reads (the rest are ignored, as the
/// RFC asks of unknown ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerSettings {
    /// The largest field section the peer takes in answers; None: unlimited.
    pub max_field_section_size: Option<u64>,
}

/// Reads a SETTINGS frame's payload: no identifier twice, none of
/// HTTP/2's, nothing cut short.
pub fn read_settings(mut b: &[u8]) -> Result<PeerSettings, H3Error> {
    let bad = |reason| H3Error::new(H3Code::SettingsError, reason);
    let mut seen: Vec<u64> = Vec::new();
    let mut s = PeerSettings::default();
    while !b.is_empty() {
        let (id, a) = read_varint(b).ok_or(H3Error::new(H3Code::FrameError, "a setting is cut short"))?;
        let (value, c) = read_varint(&b[a..]).ok_or(H3Error::new(H3Code::FrameError, "a setting is cut short"))?;
        b = &b[a + c..];
        if matches!(id, 0x2..=0x5) {
            return Err(bad("an HTTP/2 setting"));
        }
        if seen.contains(&id) {
            return Err(bad("a setting twice"));
        }
        if seen.len() >= 64 {
            return Err(H3Error::new(H3Code::ExcessiveLoad, "too many settings"));
        }
        seen.push(id);
        if id == setting::MAX_FIELD_SECTION_SIZE {
            s.max_field_section_size = Some(value);
        }
    }
    Ok(s)
}

/// Appends the server's control stream opening: its type, then SETTINGS
/// (a dynamic table of capacity zero, which is the default and so not
/// sent, and the largest request head taken).
pub fn write_control_opening(max_field_section_size: u64, out: &mut Vec<u8>) {
    write_varint(stream_type::CONTROL, out);
    let mut payload = Vec::new();
    write_varint(setting::MAX_FIELD_SECTION_SIZE, &mut payload);
    write_varint(max_field_section_size, &mut payload);
    write_frame_head(frame::SETTINGS, payload.len() as u64, out);
    out.extend_from_slice(&payload);
}

/// Appends a GOAWAY frame naming the first request stream not served.
pub fn write_goaway(stream_id: u64, out: &mut Vec<u8>) {
    let mut payload = Vec::new();
    write_varint(stream_id, &mut payload);
    write_frame_head(frame::GOAWAY, payload.len() as u64, out);
    out.extend_from_slice(&payload);
}

/// What the control stream's next frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlFrame {
    /// The first frame: the peer's settings (read its payload whole).
    Settings,
    /// GOAWAY, MAX_PUSH_ID, CANCEL_PUSH: read and let go (this server
    /// never pushes, and a client's GOAWAY only stops pushes).
    Ignore,
    /// Unknown type: skip its payload.
    Skip,
}

/// Largest control frame payload read whole.
pub const MAX_CONTROL_PAYLOAD: u64 = 16 << 10;

/// The rules of the peer's control stream (RFC 9114, 6.2.1 and 7.2):
/// SETTINGS first and only once, no DATA, HEADERS or PUSH_PROMISE.
pub fn control_frame(settings_seen: &mut bool, head: FrameHead) -> Result<ControlFrame, H3Error> {
    let unexpected = |reason| Err(H3Error::new(H3Code::FrameUnexpected, reason));
    if !*settings_seen {
        if head.ty != frame::SETTINGS {
            return Err(H3Error::new(H3Code::MissingSettings, "the control stream does not start with SETTINGS"));
        }
        if head.len > MAX_CONTROL_PAYLOAD {
            return Err(H3Error::new(H3Code::ExcessiveLoad, "SETTINGS is too large"));
        }
        *settings_seen = true;
        return Ok(ControlFrame::Settings);
    }
    match head.ty {
        frame::SETTINGS => unexpected("SETTINGS twice"),
        frame::DATA | frame::HEADERS | frame::PUSH_PROMISE => unexpected("a request frame on the control stream"),
        t if frame::reserved_http2(t) => unexpected("an HTTP/2 frame type"),
        frame::GOAWAY | frame::MAX_PUSH_ID | frame::CANCEL_PUSH => {
            if head.len > 8 {
                return Err(H3Error::new(H3Code::FrameError, "a control frame longer than its one integer"));
            }
            Ok(ControlFrame::Ignore)
        }
        _ => Ok(ControlFrame::Skip),
    }
}

/// A request's head, checked (RFC 9114, 4.3.1 and 4.2): the pseudo-header
/// fields, then the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: Cow<'a, [u8]>,
    pub scheme: Option<Cow<'a, [u8]>>,
    pub authority: Option<Cow<'a, [u8]>>,
    pub path: Option<Cow<'a, [u8]>>,
    pub fields: Vec<qpack::Field<'a>>,
}

/// Sorts a decoded section into a request head, refusing what RFC 9114
/// calls malformed: unknown, repeated or late pseudo-header fields, a
/// missing `:method`, `:scheme` or `:path` (but for CONNECT), upper case or
/// connection-specific field names, a `te` other than "trailers"; an
/// `http` or `https` request with neither `:authority` nor `host`, or with
/// both and differing (4.3.1).
pub fn request_head(fields: Vec<qpack::Field<'_>>) -> Result<RequestHead<'_>, H3Error> {
    let bad = |reason| Err(H3Error::new(H3Code::MessageError, reason));
    let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
    let mut regular = Vec::with_capacity(fields.len());
    for f in fields {
        if let Some(pseudo) = f.name.strip_prefix(b":") {
            if !regular.is_empty() {
                return bad("a pseudo-header field after a regular one");
            }
            let slot = match pseudo {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"authority" => &mut authority,
                b"path" => &mut path,
                _ => return bad("an unknown or response pseudo-header field"),
            };
            if slot.is_some() {
                return bad("a pseudo-header field twice");
            }
            *slot = Some(f.value);
            continue;
        }
        regular_field(&f)?;
        regular.push(f);
    }
    let Some(method) = method else { return bad("no :method") };
    if &method[..] == b"CONNECT" {
        if scheme.is_some() || path.is_some() || authority.is_none() {
            return bad("CONNECT takes :authority alone");
        }
    } else if scheme.is_none() || path.as_ref().is_none_or(|p| p.is_empty()) {
        return bad("no :scheme or :path");
    }
    // Two names for the target's host that disagree are how a request is
    // routed by one and checked by the other: refuse it.
    let mut hosts = regular.iter().filter(|f| &f.name[..] == b"host");
    let host = hosts.next();
    if hosts.next().is_some() {
        return bad("a host field twice");
    }
    match (&authority, host) {
        (Some(a), Some(h)) if a[..] != h.value[..] => return bad("host differs from :authority"),
        (None, None) if matches!(scheme.as_deref(), Some(b"http" | b"https")) => return bad("neither :authority nor host"),
        _ => {}
    }
    Ok(RequestHead { method, scheme, authority, path, fields: regular })
}

/// A field line that is not a pseudo-header: lower case, not
/// connection-specific, `te` only as "trailers" (RFC 9114, 4.2).
fn regular_field(f: &qpack::Field<'_>) -> Result<(), H3Error> {
    let bad = |reason| Err(H3Error::new(H3Code::MessageError, reason));
    if f.name.is_empty() || f.name.iter().any(|c| c.is_ascii_uppercase()) {
        return bad("a field name empty or in upper case");
    }
    match &f.name[..] {
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade" => bad("a connection-specific field"),
        b"te" if &f.value[..] != b"trailers" => bad("a te field other than trailers"),
        _ => Ok(()),
    }
}

/// Checks a decoded trailer section (RFC 9114, 4.1.2 and 4.2): regular
/// fields only, under the same rules as a head's. The server reads no
/// trailer, on any protocol; it checks them so a malformed request is
/// refused the same whether its error is in the head or the tail.
pub fn trailer_section(fields: &[qpack::Field<'_>]) -> Result<(), H3Error> {
    for f in fields {
        if f.name.starts_with(b":") {
            return Err(H3Error::new(H3Code::MessageError, "a pseudo-header field in the trailers"));
        }
        regular_field(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::qpack::Field;
    use super::*;

    fn f(name: &'static str, value: &'static str) -> Field<'static> {
        Field { name: Cow::Borrowed(name.as_bytes()), value: Cow::Borrowed(value.as_bytes()) }
    }

    #[test]
    fn varints_round_trip_at_each_length() {
        for v in [0u64, 63, 64, 16383, 16384, (1 << 30) - 1, 1 << 30, (1 << 62) - 1] {
            let mut out = Vec::new();
            write_varint(v, &mut out);
            assert_eq!(read_varint(&out), Some((v, out.len())));
            assert_eq!(read_varint(&out[..out.len() - 1]), None, "cut short");
        }
        // RFC 9000, A.1's examples.
        assert_eq!(read_varint(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]), Some((151_288_809_941_952_652, 8)));
        assert_eq!(read_varint(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        assert_eq!(read_varint(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(read_varint(&[]), None);
    }

    #[test]
    fn a_request_stream_takes_headers_data_trailers_in_that_order() {
        let h = |ty, len| FrameHead { ty, len, head_len: 2 };
        let mut p = RequestPhase::Head;
        assert_eq!(request_frame(&mut p, h(0x21, 5), 100), Ok(RequestFrame::Skip), "grease before the head");
        assert_eq!(request_frame(&mut p, h(frame::DATA, 5), 100).unwrap_err().code, H3Code::FrameUnexpected);
        let mut p = RequestPhase::Head;
        assert_eq!(request_frame(&mut p, h(frame::HEADERS, 101), 100).unwrap_err(), H3Error::too_large());
        assert_eq!(request_frame(&mut p, h(frame::HEADERS, 100), 100), Ok(RequestFrame::Head));
        assert_eq!(request_frame(&mut p, h(frame::DATA, 1 << 40), 100), Ok(RequestFrame::Data));
        let mut over = p;
        assert_eq!(request_frame(&mut over, h(frame::HEADERS, 101), 100).unwrap_err().code, H3Code::ExcessiveLoad, "trailers over the cap");
        assert_eq!(request_frame(&mut p, h(frame::HEADERS, 100), 100), Ok(RequestFrame::Trailers));
        assert!(request_frame(&mut p, h(frame::DATA, 1), 100).is_err());
        assert!(request_frame(&mut p, h(frame::HEADERS, 1), 100).is_err());
        for t in [frame::SETTINGS, frame::GOAWAY, frame::PUSH_PROMISE, frame::MAX_PUSH_ID, frame::CANCEL_PUSH, 0x2, 0x6, 0x8, 0x9] {
            let mut p = RequestPhase::Body;
            assert_eq!(request_frame(&mut p, h(t, 1), 100).unwrap_err().code, H3Code::FrameUnexpected, "type {t}");
        }
    }

    #[test]
    fn the_control_stream_starts_with_settings_once() {
        let h = |ty, len| FrameHead { ty, len, head_len: 2 };
        let mut seen = false;
        assert_eq!(control_frame(&mut seen, h(frame::GOAWAY, 1)).unwrap_err().code, H3Code::MissingSettings);
        assert_eq!(control_frame(&mut seen, h(frame::SETTINGS, MAX_CONTROL_PAYLOAD + 1)).unwrap_err().code, H3Code::ExcessiveLoad);
        assert_eq!(control_frame(&mut seen, h(frame::SETTINGS, 6)), Ok(ControlFrame::Settings));
        assert_eq!(control_frame(&mut seen, h(frame::SETTINGS, 6)).unwrap_err().code, H3Code::FrameUnexpected);
        assert_eq!(control_frame(&mut seen, h(frame::GOAWAY, 1)), Ok(ControlFrame::Ignore));
        assert_eq!(control_frame(&mut seen, h(frame::GOAWAY, 9)).unwrap_err().code, H3Code::FrameError);
        assert_eq!(control_frame(&mut seen, h(0x1f * 7 + 0x21, 1 << 30)), Ok(ControlFrame::Skip));
        for t in [frame::DATA, frame::HEADERS, frame::PUSH_PROMISE, 0x6] {
            assert_eq!(control_frame(&mut seen, h(t, 1)).unwrap_err().code, H3Code::FrameUnexpected);
        }
    }

    #[test]
    fn settings_are_read_strictly_and_ours_read_back() {
        let mut out = Vec::new();
        write_control_opening(16 << 10, &mut out);
        assert_eq!(out[0], 0, "the control stream's type");
        let head = read_frame_head(&out[1..]).unwrap();
        assert_eq!(head.ty, frame::SETTINGS);
        let payload = &out[1 + head.head_len..];
        assert_eq!(payload.len() as u64, head.len);
        assert_eq!(read_settings(payload).unwrap().max_field_section_size, Some(16 << 10));
        assert_eq!(read_settings(&[0x2, 0]).unwrap_err().code, H3Code::SettingsError);
        assert_eq!(read_settings(&[0x6, 1, 0x6, 2]).unwrap_err().code, H3Code::SettingsError);
        assert_eq!(read_settings(&[0x6]).unwrap_err().code, H3Code::FrameError);
        assert_eq!(read_settings(&[0x21, 0x3f, 0x1, 0]).unwrap(), PeerSettings::default(), "unknown ones ignored");
        let mut g = Vec::new();
        write_goaway(400, &mut g);
        let head = read_frame_head(&g).unwrap();
        assert_eq!((head.ty, read_varint(&g[head.head_len..]).unwrap().0), (frame::GOAWAY, 400));
    }

    #[test]
    fn request_heads_are_checked_as_the_rfc_says() {
        let ok = vec![f(":method", "GET"), f(":scheme", "https"), f(":authority", "a"), f(":path", "/x"), f("range", "bytes=0-1")];
        let head = request_head(ok).unwrap();
        assert_eq!((&head.method[..], head.path.as_deref(), head.fields.len()), (&b"GET"[..], Some(&b"/x"[..]), 1));
        let (get, https, a, root) = (f(":method", "GET"), f(":scheme", "https"), f(":authority", "a"), f(":path", "/"));
        for (bad, why) in [
            (vec![https.clone(), a.clone(), root.clone()], "no :method"),
            (vec![get.clone(), a.clone(), root.clone()], "no :scheme or :path"),
            (vec![get.clone(), https.clone(), a.clone(), f(":path", "")], "no :scheme or :path"),
            (vec![get.clone(), get.clone(), https.clone(), a.clone(), root.clone()], "a pseudo-header field twice"),
            (vec![get.clone(), https.clone(), a.clone(), root.clone(), f(":status", "200")], "an unknown or response pseudo-header field"),
            (vec![get.clone(), f("a", "b"), https.clone(), a.clone(), root.clone()], "a pseudo-header field after a regular one"),
            (vec![get.clone(), https.clone(), a.clone(), root.clone(), f("Range", "x")], "a field name empty or in upper case"),
            (vec![get.clone(), https.clone(), a.clone(), root.clone(), f("connection", "close")], "a connection-specific field"),
            (vec![get.clone(), https.clone(), a.clone(), root.clone(), f("te", "gzip")], "a te field other than trailers"),
            (vec![f(":method", "CONNECT"), a.clone(), root.clone()], "CONNECT takes :authority alone"),
            (vec![get.clone(), https.clone(), root.clone()], "neither :authority nor host"),
            (vec![get.clone(), https.clone(), a.clone(), root.clone(), f("host", "b")], "host differs from :authority"),
            (vec![get.clone(), https.clone(), root.clone(), f("host", "a"), f("host", "b")], "a host field twice"),
        ] {
            let e = request_head(bad).unwrap_err();
            assert_eq!((e.code, e.reason), (H3Code::MessageError, why));
        }
        assert!(request_head(vec![f(":method", "CONNECT"), a.clone()]).is_ok());
        assert!(request_head(vec![get.clone(), https.clone(), a.clone(), root.clone(), f("te", "trailers"), f("host", "a")]).is_ok());
        assert!(request_head(vec![get.clone(), https.clone(), root.clone(), f("host", "a")]).is_ok(), "host alone names the target");
        assert!(request_head(vec![get.clone(), f(":scheme", "x-other"), root.clone()]).is_ok(), "a scheme with no authority");
    }

    #[test]
    fn trailers_take_regular_fields_only() {
        assert_eq!(trailer_section(&[f("x-sum", "1"), f("te", "trailers")]), Ok(()));
        assert_eq!(trailer_section(&[]), Ok(()));
        for (bad, why) in [
            (f(":path", "/"), "a pseudo-header field in the trailers"),
            (f("X-Sum", "1"), "a field name empty or in upper case"),
            (f("transfer-encoding", "chunked"), "a connection-specific field"),
        ] {
            let e = trailer_section(&[f("ok", "1"), bad]).unwrap_err();
            assert_eq!((e.code, e.reason), (H3Code::MessageError, why));
        }
    }
}
