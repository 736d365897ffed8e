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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor of one connection: streams wait in its inbox until the
/// connection's task takes them (hyper calls it from within that task's
/// poll of the connection, so nothing needs waking).
#[derive(Clone, Default)]
pub(super) struct StreamExec(Arc<Mutex<Vec<Stream>>>);

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        lock(&self.0).push(Box::pin(stream));
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
                return Poll::Ready(out);
            }
            let new = std::mem::take(&mut *lock(&this.exec.0));
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
