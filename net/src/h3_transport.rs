//! h3's QUIC traits over quinn, ours, for one reason: response bodies go
//! to quinn as the `Bytes` they are, without a copy.
//!
//! h3 hands a transport every frame as a `WriteBuf` (the frame header,
//! then the payload), which can only be read as slices; a transport that
//! writes slices into quinn copies every body byte once more before quinn
//! copies it into packets (11.8% of the server's samples on 1 MiB answers
//! in `bench/edge.sh` profiles, hyperium/h3#279). quinn takes owned chunks
//! without a copy (`write_chunks`), so what is missing is the `Bytes`
//! behind the slice. The sender names it just before the write
//! ([`offer`]: the one chunk it is about to give h3, on this thread), and
//! `SendStream`'s `send_data` takes it only if it is that very memory (same
//! address and length): a `Bytes` never changes, and both are alive, so the
//! bytes are the same. Anything else (chunks under [`ZERO_COPY_MIN`], frame
//! headers, header blocks, h3's own streams) is copied as before, into one
//! chunk per frame.
//!
//! The rest is the plain mapping of h3's traits onto quinn: accepting and
//! opening streams, reading chunks (quinn's reads and writes keep their
//! waker when their future is dropped, so each poll makes a fresh one: no
//! boxed future per stream), errors translated so that h3 sees closes,
//! resets and stops for what they are.

use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::StreamExt;
use h3::error::Code;
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use quinn::VarInt;

thread_local! {
    /// The body chunk the sender on this thread is handing h3 now.
    static OFFERED: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Chunks smaller than this are copied, not offered. quinn keeps what it
/// was given until the peer acknowledges it, and a body chunk is often a
/// slice of a whole cached blob: a client asking for small ranges of many
/// blobs and holding back its acknowledgements would otherwise keep whole
/// blobs alive for a few bytes each. From 64 KiB up, a chunk keeps at most
/// its blob (a few MiB) alive: for a whole blob's answer what its copies
/// would have held, for a range at most blob/64 KiB times that; and these
/// are the copies that cost (1 MiB answers, not 4 KiB ranges).
pub(crate) const ZERO_COPY_MIN: usize = 64 << 10;

/// Names `chunk` as the payload of the DATA frame this thread hands h3
/// next, so that the frame's payload reaches quinn without a copy; false
/// (nothing offered) if it is smaller than [`ZERO_COPY_MIN`]. Call it right
/// before `RequestStream::send_data(chunk)`, and [`withdraw`] after.
pub(crate) fn offer(chunk: &Bytes) -> bool {
    let big = chunk.len() >= ZERO_COPY_MIN;
    if big {
        OFFERED.with(|o| *o.borrow_mut() = Some(chunk.clone()));
    }
    big
}

/// Forgets the offer; true if none is left (after [`offer`] returned true:
/// the transport took it, so the chunk went without a copy). An offer left
/// would only keep its memory alive.
pub(crate) fn withdraw() -> bool {
    OFFERED.with(|o| o.borrow_mut().take()).is_none()
}

/// The offered chunk if it is exactly `slice` (same memory, same length).
fn take_offered(slice: &[u8]) -> Option<Bytes> {
    OFFERED.with(|o| {
        let mut o = o.borrow_mut();
        let same = o.as_ref().is_some_and(|b| !b.is_empty() && b.as_ptr() == slice.as_ptr() && b.len() == slice.len());
        if same { o.take() } else { None }
    })
}

fn stream_id(id: quinn::StreamId) -> Result<StreamId, ConnectionErrorIncoming> {
    StreamId::try_from(u64::from(id)).map_err(|e| ConnectionErrorIncoming::InternalError(format!("stream id: {e:?}")))
}

fn connection_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => ConnectionErrorIncoming::ApplicationClose { error_code: c.error_code.into_inner() },
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        other => ConnectionErrorIncoming::Undefined(Arc::new(other)),
    }
}

fn stream_connection_error(e: quinn::ConnectionError) -> StreamErrorIncoming {
    StreamErrorIncoming::ConnectionErrorIncoming { connection_error: connection_error(e) }
}

fn write_error(e: quinn::WriteError) -> StreamErrorIncoming {
    match e {
        quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated { error_code: code.into_inner() },
        quinn::WriteError::ConnectionLost(e) => stream_connection_error(e),
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

fn read_error(e: quinn::ReadError) -> StreamErrorIncoming {
    match e {
        quinn::ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated { error_code: code.into_inner() },
        quinn::ReadError::ConnectionLost(e) => stream_connection_error(e),
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

fn code(c: Code) -> VarInt {
    VarInt::from_u64(c.value()).unwrap_or(VarInt::MAX)
}

/// Streams accepted (or opened) one after the other, from an owned
/// connection handle: quinn's accept and open futures wait on a
/// notification that must stay registered between polls, so the future
/// lives here, not per poll.
type Successive<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, quinn::ConnectionError>> + Send + Sync>>;

fn successive<T: Send + Sync + 'static, F>(conn: &quinn::Connection, next: fn(quinn::Connection) -> F) -> Successive<T>
where
    F: Future<Output = Result<T, quinn::ConnectionError>> + Send + Sync + 'static,
{
    Box::pin(futures_util::stream::unfold(conn.clone(), move |c| async move {
        let r = next(c.clone()).await;
        Some((r, c))
    }))
}

async fn accept_bi(c: quinn::Connection) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
    c.accept_bi().await
}
async fn accept_uni(c: quinn::Connection) -> Result<quinn::RecvStream, quinn::ConnectionError> {
    c.accept_uni().await
}
async fn open_bi(c: quinn::Connection) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
    c.open_bi().await
}
async fn open_uni(c: quinn::Connection) -> Result<quinn::SendStream, quinn::ConnectionError> {
    c.open_uni().await
}

/// A quinn connection as h3 sees it.
pub struct Connection {
    conn: quinn::Connection,
    bidi: Successive<(quinn::SendStream, quinn::RecvStream)>,
    uni: Successive<quinn::RecvStream>,
    opener: OpenStreams,
}

impl Connection {
    /// Wraps an established connection.
    pub fn new(conn: quinn::Connection) -> Self {
        Self { bidi: successive(&conn, accept_bi), uni: successive(&conn, accept_uni), opener: OpenStreams::new(conn.clone()), conn }
    }
}

/// Opens streams on a quinn connection (h3's control and QPACK streams, a
/// client's requests).
pub struct OpenStreams {
    conn: quinn::Connection,
    bidi: Option<Successive<(quinn::SendStream, quinn::RecvStream)>>,
    uni: Option<Successive<quinn::SendStream>>,
}

impl OpenStreams {
    fn new(conn: quinn::Connection) -> Self {
        Self { conn, bidi: None, uni: None }
    }
}

impl Clone for OpenStreams {
    fn clone(&self) -> Self {
        Self::new(self.conn.clone())
    }
}

impl<B: Buf> quic::Connection<B> for Connection {
    type RecvStream = RecvStream;
    type OpenStreams = OpenStreams;

    fn poll_accept_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<RecvStream, ConnectionErrorIncoming>> {
        match ready!(self.uni.poll_next_unpin(cx)) {
            Some(Ok(r)) => Poll::Ready(RecvStream::new(r)),
            Some(Err(e)) => Poll::Ready(Err(connection_error(e))),
            None => Poll::Ready(Err(ConnectionErrorIncoming::InternalError("stream acceptor ended".into()))),
        }
    }

    fn poll_accept_bidi(&mut self, cx: &mut Context<'_>) -> Poll<Result<BidiStream<B>, ConnectionErrorIncoming>> {
        match ready!(self.bidi.poll_next_unpin(cx)) {
            Some(Ok((s, r))) => Poll::Ready(BidiStream::new(s, r)),
            Some(Err(e)) => Poll::Ready(Err(connection_error(e))),
            None => Poll::Ready(Err(ConnectionErrorIncoming::InternalError("stream acceptor ended".into()))),
        }
    }

    fn opener(&self) -> OpenStreams {
        OpenStreams::new(self.conn.clone())
    }
}

impl<B: Buf> quic::OpenStreams<B> for Connection {
    type BidiStream = BidiStream<B>;
    type SendStream = SendStream<B>;

    fn poll_open_bidi(&mut self, cx: &mut Context<'_>) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_bidi(&mut self.opener, cx)
    }

    fn poll_open_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_send(&mut self.opener, cx)
    }

    fn close(&mut self, c: Code, reason: &[u8]) {
        self.conn.close(code(c), reason);
    }
}

impl<B: Buf> quic::OpenStreams<B> for OpenStreams {
    type BidiStream = BidiStream<B>;
    type SendStream = SendStream<B>;

    fn poll_open_bidi(&mut self, cx: &mut Context<'_>) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        let conn = &self.conn;
        let next = self.bidi.get_or_insert_with(|| successive(conn, open_bi));
        match ready!(next.poll_next_unpin(cx)) {
            Some(Ok((s, r))) => {
                Poll::Ready(BidiStream::new(s, r).map_err(|e| StreamErrorIncoming::ConnectionErrorIncoming { connection_error: e }))
            }
            Some(Err(e)) => Poll::Ready(Err(stream_connection_error(e))),
            None => Poll::Ready(Err(StreamErrorIncoming::Unknown("stream opener ended".into()))),
        }
    }

    fn poll_open_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        let conn = &self.conn;
        let next = self.uni.get_or_insert_with(|| successive(conn, open_uni));
        match ready!(next.poll_next_unpin(cx)) {
            Some(Ok(s)) => {
                Poll::Ready(SendStream::new(s).map_err(|e| StreamErrorIncoming::ConnectionErrorIncoming { connection_error: e }))
            }
            Some(Err(e)) => Poll::Ready(Err(stream_connection_error(e))),
            None => Poll::Ready(Err(StreamErrorIncoming::Unknown("stream opener ended".into()))),
        }
    }

    fn close(&mut self, c: Code, reason: &[u8]) {
        self.conn.close(code(c), reason);
    }
}

/// Both halves of a request stream.
pub struct BidiStream<B> {
    send: SendStream<B>,
    recv: RecvStream,
}

impl<B> BidiStream<B> {
    fn new(s: quinn::SendStream, r: quinn::RecvStream) -> Result<Self, ConnectionErrorIncoming> {
        Ok(Self { send: SendStream::new(s)?, recv: RecvStream::new(r)? })
    }
}

impl<B: Buf> quic::BidiStream<B> for BidiStream<B> {
    type SendStream = SendStream<B>;
    type RecvStream = RecvStream;

    fn split(self) -> (SendStream<B>, RecvStream) {
        (self.send, self.recv)
    }
}

impl<B: Buf> quic::SendStream<B> for BidiStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_ready(cx)
    }
    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data)
    }
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_finish(cx)
    }
    fn reset(&mut self, reset_code: u64) {
        quic::SendStream::<B>::reset(&mut self.send, reset_code)
    }
    fn send_id(&self) -> StreamId {
        self.send.id
    }
}

impl<B> quic::RecvStream for BidiStream<B> {
    type Buf = Bytes;
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.recv.poll_data(cx)
    }
    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code)
    }
    fn recv_id(&self) -> StreamId {
        self.recv.id
    }
}

/// The receiving half.
pub struct RecvStream {
    stream: quinn::RecvStream,
    id: StreamId,
}

impl RecvStream {
    fn new(stream: quinn::RecvStream) -> Result<Self, ConnectionErrorIncoming> {
        Ok(Self { id: stream_id(stream.id())?, stream })
    }
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        // Cancel-safe in quinn: a fresh read per poll, its waker kept by the connection.
        let read = pin!(self.stream.read_chunk(usize::MAX, true));
        match ready!(read.poll(cx)) {
            Ok(chunk) => Poll::Ready(Ok(chunk.map(|c| c.bytes))),
            Err(e) => Poll::Ready(Err(read_error(e))),
        }
    }

    fn stop_sending(&mut self, error_code: u64) {
        let _ = self.stream.stop(VarInt::from_u64(error_code).unwrap_or(VarInt::MAX));
    }

    fn recv_id(&self) -> StreamId {
        self.id
    }
}

/// The sending half: a frame at a time, its chunks handed to quinn whole.
pub struct SendStream<B> {
    stream: quinn::SendStream,
    id: StreamId,
    /// The frame being written: its copied part, then its offered payload
    /// (either may be empty); `next` is the first not yet fully written.
    chunks: [Bytes; 2],
    next: usize,
    _buf: std::marker::PhantomData<fn(B)>,
}

impl<B> SendStream<B> {
    /// Drops what is left of the frame (a reset or a failed write: it will
    /// not be sent, and its payload may be a slice of a whole blob).
    fn clear(&mut self) {
        self.chunks = [Bytes::new(), Bytes::new()];
        self.next = self.chunks.len();
    }

    fn new(stream: quinn::SendStream) -> Result<Self, ConnectionErrorIncoming> {
        Ok(Self { id: stream_id(stream.id())?, stream, chunks: [Bytes::new(), Bytes::new()], next: 2, _buf: std::marker::PhantomData })
    }
}

impl<B: Buf> quic::SendStream<B> for SendStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        while self.next < self.chunks.len() {
            if self.chunks[self.next].is_empty() {
                self.next += 1;
                continue;
            }
            // Cancel-safe in quinn (nothing written unless it resolves), its
            // waker kept by the connection: a fresh write per poll.
            let written = {
                let write = pin!(self.stream.write_chunks(&mut self.chunks[self.next..]));
                ready!(write.poll(cx))
            };
            match written {
                // A partly written chunk was advanced in place.
                Ok(w) => self.next += w.chunks,
                Err(e) => {
                    self.clear();
                    return Poll::Ready(Err(write_error(e)));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        if self.next < self.chunks.len() {
            // h3 waits for poll_ready between frames; anything else is its bug.
            return Err(StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: ConnectionErrorIncoming::InternalError("a frame was sent before the last was written".into()),
            });
        }
        let mut frame: WriteBuf<B> = data.into();
        // One allocation for what is copied: the frame less the offered chunk.
        let offered = OFFERED.with(|o| o.borrow().as_ref().map_or(0, Bytes::len));
        let mut copied = BytesMut::with_capacity(frame.remaining().saturating_sub(offered));
        let mut payload = Bytes::new();
        while frame.has_remaining() {
            let c = frame.chunk();
            let n = c.len();
            if n == 0 {
                break;
            }
            match take_offered(c) {
                // Taken only as the frame's last chunk (the whole payload);
                // anything else is copied.
                Some(b) if frame.remaining() == n => payload = b,
                _ => copied.extend_from_slice(c),
            }
            frame.advance(n);
        }
        self.chunks = [copied.freeze(), payload];
        self.next = 0;
        Ok(())
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        // Never a FIN in the middle of a frame.
        ready!(self.poll_ready(cx))?;
        Poll::Ready(self.stream.finish().map_err(|e| StreamErrorIncoming::Unknown(Box::new(e))))
    }

    fn reset(&mut self, reset_code: u64) {
        self.clear();
        let _ = self.stream.reset(VarInt::from_u64(reset_code).unwrap_or(VarInt::MAX));
    }

    fn send_id(&self) -> StreamId {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_is_taken_only_for_its_own_memory() {
        let small = Bytes::from(vec![7u8; ZERO_COPY_MIN - 1]);
        assert!(!offer(&small), "a small chunk is copied, not offered");
        assert!(take_offered(&small).is_none());
        let body = Bytes::from(vec![7u8; ZERO_COPY_MIN]);
        assert!(offer(&body));
        // Equal bytes elsewhere are not the offered chunk.
        let copy = body.to_vec();
        assert!(take_offered(&copy).is_none());
        // A part of it is not either.
        assert!(take_offered(&body[..ZERO_COPY_MIN - 1]).is_none());
        let taken = take_offered(&body).expect("the offered memory is taken");
        assert_eq!(taken.as_ptr(), body.as_ptr());
        // Taken once.
        assert!(take_offered(&body).is_none());
        assert!(offer(&body));
        assert!(!withdraw(), "an offer not taken is withdrawn as such");
        assert!(take_offered(&body).is_none());
    }
}
