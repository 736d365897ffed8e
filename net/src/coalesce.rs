//! [`WriteCoalescer`]: gathers an HTTP/2 connection's frames into larger
//! writes to TLS.
//!
//! The h2 crate holds one DATA frame at a time and flushes its I/O after
//! each (hyperium/h2#902): with the peer's default 16 KiB frames, a 1 MiB
//! response is 64 writes into rustls, 128 TLS records (the 9-byte frame
//! header makes every frame a full record plus a 9-byte one) and 64
//! `writev`s; and each small answer on a busy connection is its own write.
//!
//! The coalescer copies small writes into one buffer and passes it on when it
//! reaches [`COALESCE_BYTES`], or when the caller flushes with nothing written
//! since its last flush. A flush that follows writes is deferred: it returns
//! at once and wakes the task, so frames produced in the same poll of the
//! connection join the buffer, and the wake makes the connection poll again,
//! which ends with a flush (h2 flushes its codec at the end of every poll)
//! that finds nothing new written and passes everything on. Deferral does not
//! outlive a poll: once the connection has read again (h2 reads first in every
//! poll), the next flush sends whatever was written, so a peer whose frames
//! keep every poll busy cannot hold our bytes back either. The extra delay is
//! at most one task poll.
//! Writes of at least [`COALESCE_BYTES`] go straight through without a copy.
//!
//! The buffer's bytes start [`SHIFT`] bytes into its allocation. rustls
//! copies each record's plaintext into a fresh allocation, 5 bytes past its
//! start (the record header), and our allocator (mimalloc) puts both that
//! allocation and this buffer at the start of a 4 KiB page (their size
//! classes are multiples of 4 KiB). The copy's stores then ran 5 bytes ahead
//! of its loads modulo 4 KiB, the CPU took each load for a possible reload of
//! an earlier store (4K aliasing), and the copy ran at ~2 GB/s instead of
//! ~15. The same happened without the coalescer: h2 hands rustls frame
//! payloads at 16 KiB steps of a blob, also page-aligned. Shifting the source
//! by half a page is what made the difference (bench/edge.sh, server CPU per
//! request over h2, hot 1 MiB blobs / 4 KiB ranges at offset 4096):
//! without the coalescer 1,343-1,397 / 39-45 us; gathering alone 1,250 /
//! 39.5; gathering from the shifted buffer 745-965 / 30.8-31.0. A shift of
//! 4096 is as slow as none, 64 as fast as 2,112. HTTP/1.1 is spared by luck:
//! the response head in front of the body shifts every record by its length.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the buffer gathers before it is passed on: four 16 KiB frames, so
/// rustls makes full 16 KiB records and the kernel sees 64 KiB writes.
pub const COALESCE_BYTES: usize = 64 << 10;

/// Where the buffered bytes start in the buffer's allocation (module docs).
const SHIFT: usize = 2048 + 64;

/// An [`AsyncWrite`] that gathers small writes (see the module docs); reads
/// pass through.
#[derive(Debug)]
pub struct WriteCoalescer<S> {
    inner: S,
    /// `SHIFT` unused bytes, then what is gathered.
    buf: Vec<u8>,
    /// How much of `buf` the inner writer has taken (from `SHIFT` on).
    sent: usize,
    /// Bytes were accepted since the last flush (which then defers).
    wrote_since_flush: bool,
    /// A flush was deferred and nothing has been sent since.
    deferred: bool,
    /// The connection read after a deferral: a new poll, so flushes send.
    polled_again: bool,
}

impl<S> WriteCoalescer<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, buf: vec![0; SHIFT], sent: SHIFT, wrote_since_flush: false, deferred: false, polled_again: false }
    }

    #[cfg(test)]
    fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> WriteCoalescer<S> {
    /// Passes the whole buffer to the inner writer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.truncate(SHIFT);
        self.sent = SHIFT;
        Poll::Ready(Ok(()))
    }

    /// Sends a full buffer on; `Some(room)` to copy into, or `None` when
    /// the buffer is empty and a write of `len` should go straight through.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<Option<usize>>> {
        if self.gathered() >= COALESCE_BYTES {
            ready!(self.poll_drain(cx))?;
        }
        let gathered = self.gathered();
        Poll::Ready(Ok(if gathered == 0 && len >= COALESCE_BYTES { None } else { Some(COALESCE_BYTES - gathered) }))
    }

    fn gathered(&self) -> usize {
        self.buf.len() - SHIFT
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteCoalescer<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.polled_again |= this.deferred;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteCoalescer<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(room) = ready!(this.poll_room(cx, data.len()))? else {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        };
        // Fill the buffer to the brim (the caller writes the rest next), so
        // every write passed on is a full COALESCE_BYTES.
        let n = data.len().min(room);
        this.buf.extend_from_slice(&data[..n]);
        this.wrote_since_flush = true;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        let Some(mut room) = ready!(this.poll_room(cx, len))? else {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        };
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room);
            this.buf.extend_from_slice(&b[..take]);
            (n, room) = (n + take, room - take);
            if room == 0 {
                break;
            }
        }
        this.wrote_since_flush = true;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.wrote_since_flush) && !this.polled_again {
            // More frames may follow in this poll; the wake brings the
            // caller back to a flush that finds nothing new and sends.
            this.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        (this.deferred, this.polled_again) = (false, false);
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.wrote_since_flush = false;
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// A writer that counts the writes it is given.
    struct Counting {
        writes: Vec<usize>,
        flushes: usize,
    }
    impl AsyncRead for Counting {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }
    impl AsyncWrite for Counting {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
            self.writes.push(b.len());
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_with_flushes_between_leave_in_large_writes() {
        let mut w = WriteCoalescer::new(Counting { writes: vec![], flushes: 0 });
        // 20 frames of 9 + 16 KiB, each followed by a flush, as h2 does.
        for _ in 0..20 {
            w.write_all(&[1u8; 9]).await.unwrap();
            w.write_all(&[2u8; 16384]).await.unwrap();
            w.flush().await.unwrap();
        }
        let before_idle_flush: usize = w.get_ref().writes.iter().sum();
        // The connection's closing flush: nothing written since, so it sends.
        w.flush().await.unwrap();
        let c = w.get_ref();
        assert_eq!(c.writes.iter().sum::<usize>(), 20 * (16384 + 9));
        assert!(before_idle_flush < 20 * (16384 + 9), "a flush after writes defers");
        assert!(c.writes.len() <= 6, "20 frames went out in {} writes", c.writes.len());
        assert!(c.writes[..c.writes.len() - 1].iter().all(|&n| n > 3 * 16384), "{:?}", c.writes);
    }

    struct CountingWaker(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for CountingWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_deferred_flush_wakes_the_task_and_the_next_flush_sends() {
        let waker = std::sync::Arc::new(CountingWaker(0.into()));
        let wakes = || waker.0.load(std::sync::atomic::Ordering::SeqCst);
        let w = std::task::Waker::from(waker.clone());
        let mut cx = Context::from_waker(&w);
        let mut c = WriteCoalescer::new(Counting { writes: vec![], flushes: 0 });
        assert!(matches!(Pin::new(&mut c).poll_write(&mut cx, b"hello"), Poll::Ready(Ok(5))));
        assert!(matches!(Pin::new(&mut c).poll_flush(&mut cx), Poll::Ready(Ok(()))));
        // Deferred: nothing sent yet, but the task was woken to come back.
        assert_eq!((c.get_ref().writes.len(), wakes()), (0, 1));
        assert!(matches!(Pin::new(&mut c).poll_flush(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!((c.get_ref().writes.clone(), c.get_ref().flushes, wakes()), (vec![5], 1, 1));
    }

    #[test]
    fn a_deferral_ends_with_the_poll_so_a_busy_peer_cannot_hold_bytes_back() {
        let waker = std::sync::Arc::new(CountingWaker(0.into()));
        let w = std::task::Waker::from(waker.clone());
        let mut cx = Context::from_waker(&w);
        let mut c = WriteCoalescer::new(Counting { writes: vec![], flushes: 0 });
        let mut read = [0u8; 16];
        let mut sent_after = Vec::new();
        for _ in 0..4 {
            // Each poll of the connection: read, write a frame, flush, as
            // if the peer kept sending something that asks for an answer.
            let _ = Pin::new(&mut c).poll_read(&mut cx, &mut ReadBuf::new(&mut read));
            assert!(matches!(Pin::new(&mut c).poll_write(&mut cx, b"frame"), Poll::Ready(Ok(5))));
            assert!(matches!(Pin::new(&mut c).poll_flush(&mut cx), Poll::Ready(Ok(()))));
            sent_after.push(c.get_ref().writes.iter().sum::<usize>());
        }
        // A poll's frame waits at most until the next poll's flush.
        assert_eq!(sent_after, [0, 10, 10, 20]);
    }

    #[tokio::test]
    async fn large_writes_pass_through_and_order_is_kept() {
        let (a, mut b) = duplex(4 << 20);
        let mut w = WriteCoalescer::new(a);
        let small: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let large: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        w.write_all(&small).await.unwrap();
        w.write_all(&large).await.unwrap();
        w.write_all(&small).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        let want: Vec<u8> = [&small[..], &large[..], &small[..]].concat();
        assert_eq!(got, want);
    }
}
