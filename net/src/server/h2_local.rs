//! HTTP/2 streams run by their connection's own task.
//!
//! hyper hands each HTTP/2 stream (the request's handler and the sending of
//! its answer) to an executor. With tokio's, every request was a task of
//! its own: spawned, scheduled, often woken on the other core, and every
//! frame it queued woke the connection's task back across cores. Here the
//! connection's task keeps its streams in a set it polls after the
//! connection itself: a stream's wake-ups stay on the thread that owns its
//! connection, and no task is spawned per request.
//!
//! What does not change: a stream is still polled only when woken, the
//! connection's frames are still read and written by hyper, and a stream's
//! futures are dropped with their connection (their guards count them then;
//! a spawned stream went on until it noticed its reset).
//!
//! Every stream hyper hands over holds a clone of the executor, so a
//! stream left in the inbox keeps the inbox alive: a cycle. hyper can end
//! a connection in the very poll that handed it streams (a CONNECT with a
//! body, sent behind a GET in one flight), so the inbox is emptied when the
//! connection ends and when it is dropped; `h2_executors` counts the inboxes
//! alive, which a leak would leave above the HTTP/2 connections open.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::stats::ServerStats;

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor of one connection: streams wait in its inbox until the
/// connection's task takes them. hyper calls it from within that task's
/// poll of the connection, or of one of its streams (a CONNECT's upgrade),
/// so nothing needs waking: the task polls the inbox again before it sleeps.
#[derive(Clone)]
pub(super) struct StreamExec(Arc<Inbox>);

struct Inbox {
    streams: Mutex<Vec<Stream>>,
    stats: Arc<ServerStats>,
}

impl StreamExec {
    pub(super) fn new(stats: Arc<ServerStats>) -> Self {
        stats.h2_executors.fetch_add(1, Ordering::Relaxed);
        Self(Arc::new(Inbox { streams: Mutex::default(), stats }))
    }

    /// Drops the streams not yet taken (outside the lock: dropping them
    /// drops their clones of this executor).
    fn clear(&self) {
        let taken = std::mem::take(&mut *lock(&self.0.streams));
        drop(taken);
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.stats.h2_executors.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        // A stream that panics (its answer's body, say) is dropped alone,
        // which resets it; the connection's other streams go on.
        let stats = self.0.stats.clone();
        let contained = std::panic::AssertUnwindSafe(stream).catch_unwind().map(move |r| {
            if let Err(payload) = r {
                stats.panicked(crate::Protocol::H2, "stream", &*payload);
            }
        });
        lock(&self.0.streams).push(Box::pin(contained));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Rounds of connection-then-streams in one poll before yielding: streams
/// that finish let the connection flush their frames at once, but a busy
/// connection does not keep its thread from other connections.
const ROUNDS: usize = 8;

/// A connection and the streams its executor was given.
pub(super) struct WithStreams<C> {
    conn: Pin<Box<C>>,
    exec: StreamExec,
    streams: FuturesUnordered<Stream>,
}

impl<C> WithStreams<C> {
    pub(super) fn new(conn: C, exec: StreamExec) -> Self {
        Self { conn: Box::pin(conn), exec, streams: FuturesUnordered::new() }
    }
}

impl<C> Drop for WithStreams<C> {
    fn drop(&mut self) {
        self.exec.clear();
    }
}

impl<C: hyper_util::server::graceful::GracefulConnection> WithStreams<C> {
    /// Closes the connection gracefully (GOAWAY; its streams in hand go on).
    pub(super) fn graceful_shutdown(mut self: Pin<&mut Self>) {
        self.conn.as_mut().graceful_shutdown();
    }
}

impl<C: Future> Future for WithStreams<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        for _ in 0..ROUNDS {
            // The connection first: it reads the frames that start streams
            // and writes what the streams queued. Once it ends, its streams
            // are dropped with it.
            if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
                this.exec.clear();
                this.streams.clear();
                return Poll::Ready(out);
            }
            let new = std::mem::take(&mut *lock(&this.exec.0.streams));
            let started = !new.is_empty();
            this.streams.extend(new);
            let mut ended = false;
            while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx) {
                ended = true;
            }
            // Nothing started or ended: what the streams queued (if anything)
            // woke this task, which comes back to the connection.
            if !started && !ended {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
