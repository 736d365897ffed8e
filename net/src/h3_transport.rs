//! h3's QUIC traits over quinn, ours, for our HTTP/3 clients (the server
//! speaks HTTP/3 itself: `server/h3_streams.rs`).
//!
//! The plain mapping of h3's traits onto quinn: accepting and opening
//! streams, reading chunks (quinn's reads and writes keep their waker when
//! their future is dropped, so each poll makes a fresh one: no boxed future
//! per stream), each frame written as one chunk, errors translated so that
//! h3 sees closes, resets and stops for what they are.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::StreamExt;
use h3::error::Code;
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use quinn::VarInt;

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
    /// The frame being written, as one chunk (the second stays empty);
    /// `next` is the first not yet fully written.
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
        // One allocation per frame: its head and payload copied together.
        let mut copied = BytesMut::with_capacity(frame.remaining());
        while frame.has_remaining() {
            let c = frame.chunk();
            let n = c.len();
            if n == 0 {
                break;
            }
            copied.extend_from_slice(c);
            frame.advance(n);
        }
        self.chunks = [copied.freeze(), Bytes::new()];
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
