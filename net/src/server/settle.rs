//! How an HTTP/3 answer ends once quinn has it whole: acknowledged by the
//! client, or reset. Until then quinn holds its bytes, within the
//! connection's send window (`send_windows.rs`), so the window may not go
//! back to the server's budget, and a graceful close would cut it short.
//! Large answers wait on their own ([`ResetUnlessSettled::settle`]), as their
//! request's work in hand; small ones wait in their connection's list
//! ([`UnackedAnswers`]), most of them looked at once, a round trip and the
//! client's acknowledgement delay after they were written, and found
//! acknowledged, without a timer or a wake-up of their own.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::{Instant, Sleep};
use tranzcast_proto::http3::H3Code;

use super::guards::ConnState;
use super::h3_streams::varint;
use super::send_windows;

/// A request's answer stream, reset when dropped before its answer was
/// acknowledged whole (a panic in its body, the connection's task killed,
/// a close that cut the wait): dropped, quinn would finish it, and an
/// answer cut short would end like a whole one; and a finished answer's
/// bytes not yet acknowledged stay in quinn until the closed connection
/// drains (three PTOs: up to about 50 s with a peer's largest
/// max_ack_delay), outside the send-window budget, unless the stream is reset.
pub(super) struct ResetUnlessSettled {
    send: quinn::SendStream,
    settled: bool,
}

type Stopped = Result<Option<quinn::VarInt>, quinn::StoppedError>;

impl ResetUnlessSettled {
    pub(super) fn new(send: quinn::SendStream) -> Self {
        Self { send, settled: false }
    }

    /// Settled otherwise: reset already (its body failed), quinn holds none of it.
    pub(super) fn reset_already(&mut self) {
        self.settled = true;
    }

    /// Waits until the client has acknowledged the whole answer (or stopped
    /// the stream), until `deadline`, marking the connection's progress
    /// every `step` meanwhile (an answer within its time is not a stall);
    /// unless acknowledged whole, the stream is then reset (a client's
    /// STOP_SENDING leaves what quinn holds in place until it is), and
    /// quinn lets go of what it held of it at once. False if the time ran out.
    pub(super) async fn settle(&mut self, deadline: Instant, conn: &ConnState, step: Duration) -> bool {
        let stopped = self.send.stopped();
        tokio::pin!(stopped);
        let outcome = loop {
            let wake = deadline.min(Instant::now() + step);
            match tokio::time::timeout_at(wake, &mut stopped).await {
                Ok(r) => break Some(r),
                Err(_) if wake >= deadline => break None,
                Err(_) => conn.progressed(),
            }
        };
        self.conclude(outcome.as_ref());
        outcome.is_some()
    }

    /// Settles with how the wait ended (`None`: the time ran out): reset
    /// unless acknowledged whole.
    fn conclude(&mut self, outcome: Option<&Stopped>) {
        self.settled = true;
        if !matches!(outcome, Some(Ok(None))) {
            let _ = self.send.reset(varint(H3Code::RequestCancelled));
        }
    }
}

impl Drop for ResetUnlessSettled {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.send.reset(varint(H3Code::InternalError));
        }
    }
}

impl std::ops::Deref for ResetUnlessSettled {
    type Target = quinn::SendStream;
    fn deref(&self) -> &quinn::SendStream {
        &self.send
    }
}

impl std::ops::DerefMut for ResetUnlessSettled {
    fn deref_mut(&mut self) -> &mut quinn::SendStream {
        &mut self.send
    }
}

/// Answers of at most this many bytes, written whole, wait for their
/// acknowledgement in their connection's list ([`UnackedAnswers`]) instead
/// of each on a timer and a wake-up of its own. Larger ones settle on their
/// own, as the connection's work in hand (their deadline is long and marks
/// the connection's progress).
pub(super) const SMALL_ANSWER: u64 = send_windows::FLOOR;

/// How long after it is written a small answer is first looked at, at
/// least: the window goes back to the floor this late once the connection
/// is idle. Beyond it, the connection's round trip and [`ACK_DELAY`].
const FIRST_LOOK: Duration = Duration::from_millis(20);

/// What a client may wait before acknowledging a lone packet: QUIC's
/// default `max_ack_delay` (RFC 9000, 18.2), which quinn's clients keep.
const ACK_DELAY: Duration = Duration::from_millis(25);

/// A small answer written whole, not yet acknowledged.
pub(super) struct Unacked {
    pub(super) send: ResetUnlessSettled,
    /// Reset past this, and its connection closed.
    pub(super) deadline: Instant,
}

/// One still unacknowledged at its first look: it waits for quinn's word
/// (one wake-up when acknowledged or stopped), its deadline on the list's timer.
struct Waiting {
    answer: Unacked,
    stopped: Pin<Box<dyn Future<Output = Stopped> + Send + Sync>>,
}

impl Future for Waiting {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let outcome = std::task::ready!(self.stopped.as_mut().poll(cx));
        self.answer.send.conclude(Some(&outcome));
        Poll::Ready(())
    }
}

/// A connection's small answers not yet acknowledged. quinn holds their
/// bytes (within the connection's send window) until then, so the window
/// does not shrink while there are any. Their number is bounded by the
/// client's stream limit: a stream's credit comes back to the client only
/// once its answer is acknowledged or reset. Each answer is looked at once,
/// when its acknowledgement is due, without a waker when it is
/// acknowledged; one that is not then waits for quinn's word, so a client
/// that never acknowledges costs no work per answer while it waits.
pub(super) struct UnackedAnswers {
    quic: quinn::Connection,
    /// Not looked at yet, each with when it is to be, in that order.
    fresh: VecDeque<(Instant, Unacked)>,
    /// How long after it is written an answer is looked at: [`FIRST_LOOK`],
    /// or the round trip (as of the last look) and [`ACK_DELAY`] if longer.
    look_after: Duration,
    waiting: FuturesUnordered<Waiting>,
    /// No later than the earliest deadline among `waiting` (it may be one
    /// that has since settled).
    earliest: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
}

/// What [`UnackedAnswers::next`] saw.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// Answers settled, or looked at and waiting.
    Progress,
    /// One was still unacknowledged at its deadline: every answer left was
    /// reset (close the connection: a client that does not acknowledge is
    /// broken or hostile).
    Overdue,
}

impl UnackedAnswers {
    pub(super) fn new(quic: quinn::Connection) -> Self {
        Self {
            quic,
            fresh: VecDeque::new(),
            look_after: FIRST_LOOK,
            waiting: FuturesUnordered::new(),
            earliest: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_at: None,
        }
    }

    pub(super) fn push(&mut self, answer: Unacked) {
        let due = Instant::now() + self.look_after;
        self.fresh.push_back((due, answer));
        self.arm(due);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.waiting.is_empty()
    }

    /// Sets the timer to `at` unless it is set earlier.
    fn arm(&mut self, at: Instant) {
        if self.timer_at.is_none_or(|t| at < t) {
            self.timer.as_mut().reset(at);
            self.timer_at = Some(at);
        }
    }

    /// Until something happens to the answers (none: pending forever).
    pub(super) async fn next(&mut self) -> Seen {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Seen> {
        let mut settled = false;
        while let Poll::Ready(Some(())) = self.waiting.poll_next_unpin(cx) {
            settled = true;
        }
        if self.timer_at.is_some() && self.timer.as_mut().poll(cx).is_ready() {
            self.timer_at = None;
            return Poll::Ready(self.look(Instant::now()));
        }
        if settled { Poll::Ready(Seen::Progress) } else { Poll::Pending }
    }

    /// The timer went off: looks once at the fresh answers that are due,
    /// and at the waiting ones' deadlines.
    fn look(&mut self, now: Instant) -> Seen {
        self.look_after = FIRST_LOOK.max(self.quic.rtt() + ACK_DELAY);
        while self.fresh.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, mut answer)) = self.fresh.pop_front() else { break };
            // Looked at once, leaving no waker behind when it is settled.
            match answer.send.send.stopped().now_or_never() {
                Some(outcome) => answer.send.conclude(Some(&outcome)),
                None => {
                    self.earliest = Some(self.earliest.map_or(answer.deadline, |e| e.min(answer.deadline)));
                    let stopped = Box::pin(answer.send.send.stopped());
                    self.waiting.push(Waiting { answer, stopped });
                }
            }
        }
        if self.earliest.is_some_and(|e| e <= now) {
            self.earliest = self.waiting.iter().map(|w| w.answer.deadline).min();
        }
        if self.earliest.is_some_and(|e| e <= now) {
            for mut w in std::mem::take(&mut self.waiting) {
                w.answer.send.conclude(None);
            }
            self.earliest = None;
            return Seen::Overdue;
        }
        if let Some(e) = self.earliest.filter(|_| !self.waiting.is_empty()) {
            self.arm(e);
        }
        if let Some(&(due, _)) = self.fresh.front() {
            self.arm(due);
        }
        Seen::Progress
    }
}
