//! The title's plaintext as a tokio `AsyncRead` + `AsyncSeek` stream.
//!
//! Reading at a position needs the segment holding it; the stream asks the
//! session for it (verified, decrypted, shared with any other reader) and
//! keeps a window of the following segments in flight once it is in hand,
//! so playback does not wait on each one. A seek (claim 8: skip forward or back, chapter stops)
//! cancels the window and starts a new one at the new position: the segments
//! there are fetched first, and nothing is fetched for the old place.

use std::future::Future;
use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};

use crate::{ClientError, Session};

type SegmentFuture = Pin<Box<dyn Future<Output = Result<Bytes, Arc<ClientError>>> + Send>>;

/// A reader over the title's plaintext. Make one with [`Session::stream`].
pub struct PlainStream {
    session: Arc<Session>,
    pos: u64,
    len: u64,
    segment_size: u64,
    window: u64,
    /// The segment in hand.
    current: Option<(u64, Bytes)>,
    /// The segment being waited for.
    pending: Option<(u64, SegmentFuture)>,
    /// The window ahead, fetched in the background from `ahead_from`.
    ahead: Option<(u64, tokio::task::JoinHandle<()>)>,
}

impl std::fmt::Debug for PlainStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainStream").field("pos", &self.pos).field("len", &self.len).finish_non_exhaustive()
    }
}

impl Session {
    /// A reader over the plaintext, keeping `window` segments ahead of it in flight.
    pub fn stream(self: &Arc<Self>, window: u64) -> PlainStream {
        let m = self.manifest();
        PlainStream {
            session: self.clone(),
            pos: 0,
            len: m.plaintext_len,
            segment_size: u64::from(m.segment_size).max(1),
            window,
            current: None,
            pending: None,
            ahead: None,
        }
    }
}

impl PlainStream {
    /// The position of the next read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Starts fetching the window after segment `seg`, unless already doing so.
    fn look_ahead(&mut self, seg: u64) {
        if self.ahead.as_ref().is_some_and(|(from, _)| *from == seg + 1) {
            return;
        }
        if let Some((_, h)) = self.ahead.take() {
            h.abort();
        }
        let last = self.len.div_ceil(self.segment_size);
        let (from, to) = (seg + 1, (seg + 1 + self.window).min(last));
        let session = self.session.clone();
        let handle = tokio::spawn(async move {
            futures_util::future::join_all((from..to).map(|i| session.segment_plain(i))).await;
        });
        self.ahead = Some((from, handle));
    }
}

impl Drop for PlainStream {
    fn drop(&mut self) {
        if let Some((_, h)) = self.ahead.take() {
            h.abort();
        }
    }
}

impl AsyncRead for PlainStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos >= this.len || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let seg = this.pos / this.segment_size;
        if this.current.as_ref().is_none_or(|(i, _)| *i != seg) {
            if this.pending.as_ref().is_none_or(|(i, _)| *i != seg) {
                let session = this.session.clone();
                // Playback waits on this one (start, or after a seek): race two sources for it.
                this.pending = Some((seg, Box::pin(async move { session.segment_plain_raced(seg).await })));
            }
            let Some((_, fut)) = this.pending.as_mut() else { return Poll::Ready(Ok(())) };
            let bytes = ready!(fut.as_mut().poll(cx)).map_err(|e| std::io::Error::other(e.to_string()))?;
            this.pending = None;
            this.current = Some((seg, bytes));
        }
        // The window ahead starts once the segment at the read position is in
        // hand: after a seek, the target gets the bandwidth first. (In steady
        // playback the window was started a segment earlier, so it is ahead.)
        this.look_ahead(seg);
        let Some((_, bytes)) = &this.current else { return Poll::Ready(Ok(())) };
        let off = (this.pos - seg * this.segment_size) as usize;
        let n = buf.remaining().min(bytes.len().saturating_sub(off));
        if n == 0 {
            return Poll::Ready(Err(std::io::Error::other(format!("segment {seg} is shorter than the manifest says"))));
        }
        buf.put_slice(&bytes[off..off + n]);
        this.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for PlainStream {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let target = match position {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        let seg = target / self.segment_size;
        // Cancel what was in flight for the old place (unless it is the new one).
        if self.pending.as_ref().is_some_and(|(i, _)| *i != seg) {
            self.pending = None;
        }
        if self.ahead.as_ref().is_some_and(|(from, _)| *from != seg + 1)
            && let Some((_, h)) = self.ahead.take()
        {
            h.abort();
        }
        self.pos = target;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}
