//! HTTP/3's streams over quinn, ours: the server's control stream, the
//! client's unidirectional streams, a request stream's frames in and the
//! answer's frames out. Every decision about the peer's bytes (frame order,
//! settings, QPACK, the request head's rules) is `tranzcast_proto::http3`'s,
//! pure and fuzzed; this file only moves bytes.
//!
//! Why not the h3 crate (which our clients still use): on 4 KiB answers its
//! QPACK was the largest single cost of the server (Huffman decoding bit by
//! bit, a vector per string, Huffman encoding every answer), and it writes
//! an answer's head, each DATA frame's head and its payload to quinn as
//! separate writes. Here a small answer is one chunk: the HEADERS frame, the
//! DATA frame's head and the payload copied behind them, written once.
//! Payloads of [`ZERO_COPY_MIN`] and up go to quinn as the `Bytes` they are.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use quinn::VarInt;
use tranzcast_proto::http3::{
    self, ControlFrame, FrameHead, H3Code, H3Error, RequestFrame, RequestPhase, qpack, read_frame_head, read_varint, stream_type,
};

use super::Body;

/// Body chunks from this size up go to quinn uncopied. quinn keeps what it
/// was given until the peer acknowledges it, and a chunk is often a slice
/// of a whole cached blob: a client asking for small ranges of many blobs
/// and holding back its acknowledgements would otherwise keep whole blobs
/// alive for a few bytes each. From 64 KiB up a chunk keeps at most its
/// blob (a few MiB) alive, and these are the copies that cost.
pub(crate) const ZERO_COPY_MIN: usize = 64 << 10;

/// Small body chunks are gathered behind the head up to this much before a write.
const GATHER_MAX: usize = 64 << 10;

/// Bytes a client's QPACK encoder stream may carry in all: with a table of
/// capacity zero there is nothing for it to say but that capacity.
const QPACK_STREAM_MAX: u64 = 4 << 10;

pub(super) fn varint(code: H3Code) -> VarInt {
    VarInt::from_u64(code.value()).unwrap_or(VarInt::MAX)
}

/// Closes the connection for `e` (a connection error).
pub(super) fn close(quic: &quinn::Connection, e: &H3Error) {
    tracing::debug!(error = %e, "h3 connection error");
    quic.close(varint(e.code), e.reason.as_bytes());
}

/// A stream's unread bytes over quinn's chunks.
pub(super) struct Frames {
    recv: quinn::RecvStream,
    buf: Bytes,
    /// Payload bytes of the frame being skipped still to come.
    skip: u64,
}

/// Why reading a stream stopped.
pub(super) enum ReadFail {
    /// The peer broke the protocol.
    Protocol(H3Error),
    /// The peer reset the stream.
    Reset,
    /// The connection is gone.
    Gone,
}

impl From<H3Error> for ReadFail {
    fn from(e: H3Error) -> Self {
        Self::Protocol(e)
    }
}

impl Frames {
    pub(super) fn new(recv: quinn::RecvStream) -> Self {
        Self { recv, buf: Bytes::new(), skip: 0 }
    }

    /// Reads one more chunk behind what is unread; false at the stream's end.
    async fn fill(&mut self) -> Result<bool, ReadFail> {
        match self.recv.read_chunk(64 << 10, true).await {
            Ok(Some(c)) => {
                if self.buf.is_empty() {
                    self.buf = c.bytes;
                } else {
                    // Only a frame head (at most 16 bytes) cut across
                    // chunks comes here: payloads are read by `payload`.
                    let mut b = BytesMut::with_capacity(self.buf.len() + c.bytes.len());
                    b.extend_from_slice(&self.buf);
                    b.extend_from_slice(&c.bytes);
                    self.buf = b.freeze();
                }
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(read_fail(e)),
        }
    }

    /// Drops what is left of a skipped frame; false if the stream ended first.
    async fn skip_rest(&mut self) -> Result<bool, ReadFail> {
        while self.skip > 0 {
            if self.buf.is_empty() && !self.fill().await? {
                return Ok(false);
            }
            let n = self.skip.min(self.buf.len() as u64) as usize;
            let _ = self.buf.split_to(n);
            self.skip -= n as u64;
        }
        Ok(true)
    }

    /// The next frame's head, its bytes consumed; None at a clean end (no
    /// byte of a frame begun).
    async fn head(&mut self) -> Result<Option<FrameHead>, ReadFail> {
        if !self.skip_rest().await? {
            return Err(H3Error { code: H3Code::FrameError, reason: "a frame is cut short" }.into());
        }
        loop {
            if let Some(h) = read_frame_head(&self.buf) {
                let _ = self.buf.split_to(h.head_len);
                return Ok(Some(h));
            }
            let empty = self.buf.is_empty();
            if !self.fill().await? {
                return if empty {
                    Ok(None)
                } else {
                    Err(H3Error { code: H3Code::FrameError, reason: "a frame head is cut short" }.into())
                };
            }
        }
    }

    /// A whole payload of `len` bytes (the caller has bounded it), read
    /// into one buffer as it comes: linear however small the pieces, and
    /// memory taken as bytes arrive, not as the frame declares.
    async fn payload(&mut self, len: u64) -> Result<Bytes, ReadFail> {
        let len = len as usize;
        if self.buf.len() >= len {
            return Ok(self.buf.split_to(len));
        }
        let mut out = BytesMut::with_capacity(len.min(self.buf.len().max(4 << 10)));
        out.extend_from_slice(&std::mem::take(&mut self.buf));
        while out.len() < len {
            match self.recv.read_chunk(len - out.len(), true).await {
                Ok(Some(c)) => out.extend_from_slice(&c.bytes),
                Ok(None) => return Err(H3Error { code: H3Code::FrameError, reason: "a frame is cut short" }.into()),
                Err(e) => return Err(read_fail(e)),
            }
        }
        Ok(out.freeze())
    }

    pub(super) fn stop(&mut self, code: H3Code) {
        let _ = self.recv.stop(varint(code));
    }
}

fn read_fail(e: quinn::ReadError) -> ReadFail {
    match e {
        quinn::ReadError::Reset(_) => ReadFail::Reset,
        _ => ReadFail::Gone,
    }
}

/// A request stream's frames: the head, then the body's DATA payloads.
pub(super) struct RequestIn {
    frames: Frames,
    phase: RequestPhase,
    /// Payload bytes of the DATA frame being read still to come.
    data: u64,
    /// Caps on a field section: its encoded and decoded size, its lines.
    max_head: u64,
    max_fields: usize,
    /// The stream's error, once it had one: its bytes after it are not
    /// frames to read on (an oversized frame's payload is still there).
    failed: Option<H3Error>,
    /// The connection's budget of head bytes arriving piece by piece.
    heads: Arc<tokio::sync::Semaphore>,
}

/// Head bytes a connection may have half in at once, across its request
/// streams, in heads of the largest size: HTTP/1.1 and HTTP/2 hold one
/// head at a time, and 128 streams each stalled one byte short of a 16 KiB
/// head would otherwise hold 2 MiB for the header deadline. A head that
/// came whole takes none.
pub(super) const HEADS_IN_PROGRESS: u64 = 4;

/// A connection's budget for [`RequestIn`] (heads of up to `max_head` bytes).
pub(super) fn head_budget(max_head: u64) -> Arc<tokio::sync::Semaphore> {
    let n = (max_head * HEADS_IN_PROGRESS).min(tokio::sync::Semaphore::MAX_PERMITS as u64) as usize;
    Arc::new(tokio::sync::Semaphore::new(n))
}

impl RequestIn {
    pub(super) fn new(recv: quinn::RecvStream, max_head: u64, max_fields: usize, heads: Arc<tokio::sync::Semaphore>) -> Self {
        Self { frames: Frames::new(recv), phase: RequestPhase::Head, data: 0, max_head, max_fields, failed: None, heads }
    }

    /// The request's HEADERS payload (its field section).
    pub(super) async fn head(&mut self) -> Result<Bytes, ReadFail> {
        loop {
            let Some(h) = self.frames.head().await? else {
                return Err(H3Error { code: H3Code::RequestIncomplete, reason: "the stream ended before the request's head" }.into());
            };
            match http3::request_frame(&mut self.phase, h, self.max_head)? {
                RequestFrame::Head => {
                    if self.frames.buf.len() as u64 >= h.len {
                        return self.frames.payload(h.len).await;
                    }
                    // Still coming: it waits its turn in the connection's budget.
                    let want = u32::try_from(h.len).unwrap_or(u32::MAX);
                    let _held = self.heads.acquire_many(want).await.map_err(|_| ReadFail::Gone)?;
                    return self.frames.payload(h.len).await;
                }
                RequestFrame::Skip => self.frames.skip = h.len,
                RequestFrame::Data | RequestFrame::Trailers => unreachable!("request_frame takes only HEADERS first"),
            }
        }
    }

    /// The body's next piece; None at the stream's end.
    pub(super) async fn data(&mut self) -> Result<Option<Bytes>, ReadFail> {
        if let Some(e) = self.failed {
            return Err(e.into());
        }
        let r = self.next_data().await;
        if let Err(ReadFail::Protocol(e)) = &r {
            self.failed = Some(*e);
        }
        r
    }

    async fn next_data(&mut self) -> Result<Option<Bytes>, ReadFail> {
        loop {
            if self.data > 0 {
                if self.frames.buf.is_empty() && !self.frames.fill().await? {
                    return Err(H3Error { code: H3Code::FrameError, reason: "a DATA frame is cut short" }.into());
                }
                let n = self.data.min(self.frames.buf.len() as u64) as usize;
                self.data -= n as u64;
                return Ok(Some(self.frames.buf.split_to(n)));
            }
            let Some(h) = self.frames.head().await? else { return Ok(None) };
            match http3::request_frame(&mut self.phase, h, self.max_head)? {
                RequestFrame::Data => self.data = h.len,
                RequestFrame::Skip => self.frames.skip = h.len,
                RequestFrame::Trailers => {
                    // Read and checked, then dropped: no handler reads
                    // trailers. A section the decoder refuses (a dynamic
                    // table reference) is the connection's error.
                    let section = self.frames.payload(h.len).await?;
                    let fields = qpack::decode_section(&section, self.max_head, self.max_fields).map_err(|e| {
                        if e.is_too_large() || e.is_too_many_fields() {
                            H3Error { code: H3Code::ExcessiveLoad, reason: "trailers over the head limits" }
                        } else {
                            e
                        }
                    })?;
                    http3::trailer_section(&fields)?;
                }
                RequestFrame::Head => unreachable!("request_frame takes one head"),
            }
        }
    }

    pub(super) fn stop(&mut self, code: H3Code) {
        self.frames.stop(code);
    }

    /// The code to stop the stream with once its answer is out: its
    /// error's, if its body had one.
    pub(super) fn stop_code(&self) -> H3Code {
        self.failed.map_or(H3Code::NoError, |e| e.code)
    }
}

/// Why a request head was not turned into a request.
pub(super) enum HeadFail {
    /// Over the server's cap: answered 431.
    TooLarge,
    /// More field lines than the server takes: answered 431.
    TooMany,
    /// Malformed: the stream is reset (H3_MESSAGE_ERROR), or the connection
    /// closed if the error is the connection's.
    Bad(H3Error),
}

/// A connection's last long Huffman strings (its credential, coded anew in
/// every request). One per connection, not per thread: no client's
/// request is ever compared with another's strings.
pub(super) type ConnMemo = std::sync::Mutex<qpack::HuffmanMemo>;

/// The request's parts from its field section.
pub(super) fn request_parts(section: &[u8], max_size: u64, max_fields: usize, memo: &ConnMemo) -> Result<http::request::Parts, HeadFail> {
    let bad = |reason| HeadFail::Bad(H3Error { code: H3Code::MessageError, reason });
    let decoded = match memo.lock() {
        Ok(mut m) => qpack::decode_section_memo(section, max_size, max_fields, &mut m),
        Err(_) => qpack::decode_section(section, max_size, max_fields),
    };
    let fields = decoded.map_err(|e| {
        if e.is_too_large() {
            HeadFail::TooLarge
        } else if e.is_too_many_fields() {
            HeadFail::TooMany
        } else {
            HeadFail::Bad(e)
        }
    })?;
    let head = http3::request_head(fields).map_err(HeadFail::Bad)?;
    let method = Method::from_bytes(&head.method).map_err(|_| bad("a bad :method"))?;
    let mut uri = http::uri::Parts::default();
    if let Some(s) = &head.scheme {
        uri.scheme = Some(http::uri::Scheme::try_from(&s[..]).map_err(|_| bad("a bad :scheme"))?);
    }
    if let Some(a) = &head.authority {
        uri.authority = Some(http::uri::Authority::try_from(&a[..]).map_err(|_| bad("a bad :authority"))?);
    }
    if let Some(p) = &head.path {
        uri.path_and_query = Some(http::uri::PathAndQuery::try_from(&p[..]).map_err(|_| bad("a bad :path"))?);
    }
    if uri.authority.is_none() {
        // A URI with a scheme needs an authority: keep the path alone.
        uri.scheme = None;
    }
    let uri = Uri::from_parts(uri).map_err(|_| bad("a bad request target"))?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = http::Version::HTTP_3;
    parts.headers.reserve(head.fields.len());
    for f in head.fields {
        let name = HeaderName::from_bytes(&f.name).map_err(|_| bad("a bad field name"))?;
        let value = match f.value {
            std::borrow::Cow::Borrowed(v) => HeaderValue::from_bytes(v),
            std::borrow::Cow::Owned(v) => HeaderValue::from_maybe_shared(Bytes::from(v)),
        }
        .map_err(|_| bad("a bad field value"))?;
        parts.headers.append(name, value);
    }
    Ok(parts)
}

/// How an answer ended on its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// Finished: quinn delivers it, and holds it until it is acknowledged.
    Finished,
    /// Reset part way (its body failed): quinn holds nothing of it.
    Reset,
}

/// Writes an answer: the head, then the body's frames, then the stream's
/// end. Small pieces are gathered into one write with the head; large ones
/// go to quinn as they are. `sent(n, zero_copy)` is told of body bytes once
/// quinn has them (first after the head is out, with what came with it).
/// Err: the client stopped the stream or the connection is gone.
pub(super) async fn send_response(
    send: &mut quinn::SendStream,
    resp: Response<Body>,
    with_body: bool,
    mut sent: impl FnMut(usize, bool),
) -> Result<Ended, quinn::WriteError> {
    let (head, mut body) = resp.into_parts();
    let mut block = Vec::with_capacity(128);
    let length = (with_body && !head.headers.contains_key(http::header::CONTENT_LENGTH) && !no_content(head.status))
        .then(|| http_body::Body::size_hint(&body).exact())
        .flatten()
        .map(|n| n.to_string());
    let fields = head
        .headers
        .iter()
        .filter(|(n, _)| !is_connection_specific(n))
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .chain(length.as_deref().map(|l| (&b"content-length"[..], l.as_bytes())));
    qpack::encode_response(head.status.as_u16(), fields, &mut block);
    let mut out = Vec::with_capacity(block.len() + 16 + if with_body { 4200 } else { 0 });
    http3::write_frame_head(http3::frame::HEADERS, block.len() as u64, &mut out);
    out.extend_from_slice(&block);
    let mut gathered = 0usize;
    if with_body {
        loop {
            // Take what the body has ready; before waiting on it, write
            // what is gathered.
            let mut next = std::pin::pin!(body.frame());
            let frame = match std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    flush(send, &mut out, &mut gathered, &mut sent).await?;
                    next.await
                }
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => {
                    // The body failed mid-way: the answer is cut, not ended.
                    tracing::debug!(error = %e, "h3 response body");
                    flush(send, &mut out, &mut gathered, &mut sent).await?;
                    let _ = send.reset(varint(H3Code::InternalError));
                    return Ok(Ended::Reset);
                }
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) if !d.is_empty() => d,
                    _ => continue,
                },
            };
            http3::write_frame_head(http3::frame::DATA, data.len() as u64, &mut out);
            if data.len() < ZERO_COPY_MIN {
                out.extend_from_slice(&data);
                gathered += data.len();
                if out.len() >= GATHER_MAX {
                    flush(send, &mut out, &mut gathered, &mut sent).await?;
                }
            } else {
                let n = data.len();
                let mut chunks = [Bytes::from(std::mem::take(&mut out)), data];
                send.write_all_chunks(&mut chunks).await?;
                sent(gathered, false);
                gathered = 0;
                sent(n, true);
            }
        }
    }
    flush(send, &mut out, &mut gathered, &mut sent).await?;
    let _ = send.finish();
    Ok(Ended::Finished)
}

async fn flush(
    send: &mut quinn::SendStream,
    out: &mut Vec<u8>,
    gathered: &mut usize,
    sent: &mut impl FnMut(usize, bool),
) -> Result<(), quinn::WriteError> {
    if !out.is_empty() {
        send.write_chunk(Bytes::from(std::mem::take(out))).await?;
        sent(*gathered, false);
        *gathered = 0;
    }
    Ok(())
}

fn no_content(s: StatusCode) -> bool {
    s.is_informational() || s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED
}

fn is_connection_specific(n: &HeaderName) -> bool {
    use http::header::{CONNECTION, TRANSFER_ENCODING, UPGRADE};
    n == CONNECTION || n == TRANSFER_ENCODING || n == UPGRADE || n.as_str() == "keep-alive" || n.as_str() == "proxy-connection"
}

/// What the client's unidirectional streams have shown so far: one
/// control stream, one QPACK encoder and one decoder stream at most.
#[derive(Default)]
pub(super) struct PeerStreams {
    control: AtomicBool,
    encoder: AtomicBool,
    decoder: AtomicBool,
}

/// Serves one of the client's unidirectional streams until it or the
/// connection ends; a protocol error closes the connection.
pub(super) async fn serve_uni(recv: quinn::RecvStream, quic: quinn::Connection, seen: Arc<PeerStreams>) {
    let mut frames = Frames::new(recv);
    let result = async {
        // The stream's type.
        let ty = loop {
            if let Some((t, n)) = read_varint(&frames.buf) {
                let _ = frames.buf.split_to(n);
                break t;
            }
            match frames.fill().await {
                Ok(true) => {}
                // Ended or reset before its type: nothing was opened.
                Ok(false) | Err(ReadFail::Reset) => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        let once = |flag: &AtomicBool| {
            if flag.swap(true, Ordering::Relaxed) {
                Err(ReadFail::Protocol(H3Error { code: H3Code::StreamCreationError, reason: "a second critical stream of one type" }))
            } else {
                Ok(())
            }
        };
        match ty {
            stream_type::CONTROL => {
                once(&seen.control)?;
                control(&mut frames).await
            }
            stream_type::QPACK_ENCODER | stream_type::QPACK_DECODER => {
                let encoder = ty == stream_type::QPACK_ENCODER;
                once(if encoder { &seen.encoder } else { &seen.decoder })?;
                let mut total = 0u64;
                loop {
                    let read = if encoder { qpack::read_encoder_stream(&frames.buf)? } else { qpack::read_decoder_stream(&frames.buf)? };
                    let _ = frames.buf.split_to(read);
                    total += read as u64;
                    // The encoder stream has nothing to say but "capacity
                    // zero"; the decoder stream's cancellations come one
                    // per reset stream, so they are not capped.
                    if encoder && total > QPACK_STREAM_MAX {
                        return Err(H3Error {
                            code: H3Code::QpackEncoderStreamError,
                            reason: "the encoder stream says capacity zero too often",
                        }
                        .into());
                    }
                    if !frames.fill().await? {
                        return Err(H3Error { code: H3Code::ClosedCriticalStream, reason: "a QPACK stream ended" }.into());
                    }
                }
            }
            stream_type::PUSH => Err(H3Error { code: H3Code::StreamCreationError, reason: "a push stream from a client" }.into()),
            _ => {
                // Unknown (greasing, an extension): not read.
                frames.stop(H3Code::StreamCreationError);
                Ok(())
            }
        }
    }
    .await;
    match result {
        Err(ReadFail::Protocol(e)) => close(&quic, &e),
        // Only critical streams are read past their type: a reset one is closed.
        Err(ReadFail::Reset) => close(&quic, &H3Error { code: H3Code::ClosedCriticalStream, reason: "a critical stream was reset" }),
        Ok(()) | Err(ReadFail::Gone) => {}
    }
}

/// The client's control stream: SETTINGS first, then frames read and let go.
async fn control(frames: &mut Frames) -> Result<(), ReadFail> {
    let mut settings_seen = false;
    loop {
        let Some(h) = frames.head().await? else {
            return Err(H3Error { code: H3Code::ClosedCriticalStream, reason: "the control stream ended" }.into());
        };
        match http3::control_frame(&mut settings_seen, h)? {
            ControlFrame::Settings => {
                let payload = frames.payload(h.len).await?;
                // Read strictly; the one value it could set (the largest
                // answer head the client takes) is far above what our
                // answers carry.
                let _ = http3::read_settings(&payload)?;
            }
            ControlFrame::Ignore => {
                let _ = frames.payload(h.len).await?;
            }
            ControlFrame::Skip => frames.skip = h.len,
        }
    }
}
