//! The state of segments in flight: a transfer and its verified bytes,
//! races and their end, pieces an idle source may take the tail of, and
//! our requests at a source as its view counts them.

#![allow(clippy::wildcard_imports)]

use super::*;

/// A segment being fetched; its verified bytes survive a change of source.
#[derive(Debug, Default)]
pub(super) struct Transfer {
    pub(super) verifier: Option<GroupVerifier>,
    /// The verified bytes, from `base` on.
    pub(super) data: Vec<u8>,
    /// Where `data` starts in the blob: 0, or a helper's split point.
    pub(super) base: u64,
    /// The segment's shared state, when its tail may be split off.
    pub(super) piece: Option<Arc<Piece>>,
    /// The race this transfer runs in, if it is one of a race's.
    pub(super) race: Option<Arc<Race>>,
}

/// A race for one segment: the first racer to have verified `at` bytes wins
/// and goes on alone; the others stop (see [`Session::segment_raced`]).
#[derive(Debug)]
pub(super) struct Race {
    pub(super) at: u64,
    pub(super) state: Mutex<RaceState>,
    /// Wakes the racers when the race is decided.
    pub(super) decided: tokio::sync::Notify,
    /// The blob's outboard, once one racer has it (verified against the address).
    pub(super) outboard: tokio::sync::watch::Sender<Option<GroupVerifier>>,
}

#[derive(Debug)]
pub(super) struct RaceState {
    /// When the racers were asked.
    pub(super) started: Instant,
    /// Bytes each racer (by source index) has received.
    pub(super) got: BTreeMap<usize, u64>,
    pub(super) winner: Option<usize>,
    /// Racers still running.
    pub(super) running: usize,
    /// Whether the winner's source has been reserved (the race settled).
    pub(super) reserved: bool,
}

impl Race {
    pub(super) fn new(at: u64, racers: usize) -> Self {
        let state = RaceState { started: Instant::now(), got: BTreeMap::new(), winner: None, running: racers, reserved: false };
        Self { at, state: Mutex::new(state), decided: tokio::sync::Notify::new(), outboard: tokio::sync::watch::channel(None).0 }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, RaceState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn winner(&self) -> Option<usize> {
        self.lock().winner
    }

    pub(super) fn offer_outboard(&self, v: &GroupVerifier) {
        self.outboard.send_if_modified(|o| {
            let first = o.is_none();
            if first {
                *o = Some(v.clone());
            }
            first
        });
    }

    pub(super) fn received(&self, source: usize, got: u64) {
        self.lock().got.insert(source, got);
    }

    /// Whether `source` won (now or before).
    pub(super) fn claim(&self, session: &Session, source: usize) -> bool {
        let won = *self.lock().winner.get_or_insert(source) == source;
        if won {
            self.decided.notify_waiters();
            self.settle(session);
        }
        won
    }

    /// A racer stopped (lost, failed, or done).
    pub(super) fn leave(&self, session: &Session) {
        let mut st = self.lock();
        st.running = st.running.saturating_sub(1);
        drop(st);
        self.settle(session);
    }

    /// Once the winner is alone (every loser stopped, so its requests no
    /// longer count at its source), its source is reserved: that is what
    /// the playback waits for to start the other segments, which are then
    /// spread over sources as they really are. The racers' paces seed the
    /// estimates of sources not yet measured: bytes over the same interval
    /// since they were asked (a transfer's own few tens of milliseconds
    /// from its first byte would mostly measure a link's burst).
    pub(super) fn settle(&self, session: &Session) {
        let mut st = self.lock();
        let Some(w) = st.winner else { return };
        if st.reserved || st.running > 1 {
            return;
        }
        st.reserved = true;
        let (secs, got) = (st.started.elapsed().as_secs_f64(), std::mem::take(&mut st.got));
        drop(st);
        tracing::trace!(winner = w, ?got, ms = secs * 1e3, "race settled");
        let now = Instant::now();
        for (source, bytes) in got.into_iter().filter(|(_, b)| *b > 0) {
            session.with_view(source, |v| v.seed(bytes, secs, now));
        }
        session.reserved.send_replace(Some(w));
    }

    /// Clears the winner's reservation (the race ended, however it ended).
    pub(super) fn unreserve(&self, session: &Session) {
        let Some(w) = self.winner() else { return };
        session.reserved.send_if_modified(|r| {
            let mine = *r == Some(w);
            if mine {
                *r = None;
            }
            mine
        });
    }
}

/// Clears a race winner's reservation when the race ends, however it ends.
pub(super) struct Unreserve<'a>(pub(super) &'a Session, pub(super) Arc<Race>);

impl Drop for Unreserve<'_> {
    fn drop(&mut self) {
        self.1.unreserve(self.0);
    }
}

/// A segment in flight whose tail an idle source may take in the end-game.
#[derive(Debug)]
pub(super) struct Piece {
    pub(super) index: u64,
    /// Where its transfer started: 0, or the split point of a tail (a tail
    /// may be split again when the source that left it is idle first).
    pub(super) base: u64,
    pub(super) addr: tranzcast_proto::BlobAddress,
    pub(super) state: Mutex<PieceState>,
}

#[derive(Debug, Default)]
pub(super) struct PieceState {
    /// A verifier for the blob (outboard checked), once the transfer has one.
    pub(super) verifier: Option<GroupVerifier>,
    /// Verified bytes and the transfer's rate (bytes/s) at its last chunk.
    pub(super) verified: u64,
    pub(super) rate: Option<f64>,
    /// The transfer stops here: the bytes after it come from `tail`.
    pub(super) split: Option<u64>,
    pub(super) tail: Option<tokio::sync::oneshot::Receiver<Result<Vec<u8>, String>>>,
}

impl Piece {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, PieceState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Takes a segment off the shared list when its fetch ends, however it ends.
pub(super) struct Registered<'a>(pub(super) &'a Session, pub(super) (u64, u64));

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.0.pieces.lock() {
            p.remove(&self.1);
        }
    }
}

/// A helper's transfer of a segment's tail, as play_to drives it.
pub(super) type Helping = std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send>>;

impl Transfer {
    /// Bytes still to fetch, once the length is known.
    pub(super) fn remaining(&self) -> Option<u64> {
        self.verifier.as_ref().map(|v| v.len() - v.verified())
    }
}

/// Why one try at one source did not finish the segment.
pub(super) enum Miss {
    /// It does not hold the segment.
    NotThere,
    /// It ran slow: the rest is fetched elsewhere (not a fault).
    Slow(String),
    /// It lied, failed or timed out.
    Failed(String),
}

/// One of our requests at a source: counted in its view while it lasts;
/// what it achieved (even cancelled, as a race's loser) feeds the source's
/// throughput estimate when it ends.
pub(super) struct Outstanding<'a> {
    pub(super) session: &'a Session,
    pub(super) index: usize,
    pub(super) started: Instant,
    pub(super) first_byte: Option<Instant>,
    pub(super) last_byte: Option<Instant>,
    pub(super) got: u64,
    pub(super) done: bool,
    /// Whether what it achieved feeds the estimate when it ends (a racer's
    /// is taught by its race).
    pub(super) teaches: bool,
}

impl<'a> Outstanding<'a> {
    pub(super) fn new(session: &'a Session, index: usize, teaches: bool) -> Self {
        session.with_view(index, |v| v.ours_in_flight += 1);
        Self { session, index, started: Instant::now(), first_byte: None, last_byte: None, got: 0, done: false, teaches }
    }

    pub(super) fn arrived(&mut self, n: usize) {
        let now = Instant::now();
        self.first_byte.get_or_insert(now);
        self.last_byte = Some(now);
        self.got += n as u64;
        self.session.with_view(self.index, |v| v.received += n as u64);
    }

    /// Bytes/s since the first byte, once that is long enough to judge.
    pub(super) fn rate(&self) -> Option<f64> {
        let since = self.first_byte?.elapsed();
        (since >= WARM_UP).then(|| self.got as f64 / since.as_secs_f64())
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        let (got, first_byte, done) = (self.got, self.first_byte, self.done);
        self.session.with_view(self.index, |v| {
            // Timed from the first byte (plus a round trip): connection set-up
            // and a parent's miss are not the source's throughput.
            // While metered (a playback), a transfer's own sample only seeds
            // an unknown estimate: the meter sees all requests together.
            let metered = self.session.metered.load(std::sync::atomic::Ordering::Relaxed);
            if let Some(fb) = first_byte
                && self.teaches
                && (done || got >= MIN_SAMPLE)
                && (!metered || v.measured().is_none())
            {
                let rtt = v.rtt.unwrap_or_default();
                v.record_fetch(got, fb.elapsed() + rtt, v.ours_in_flight, Instant::now());
            }
            if done {
                // Good bytes again (a timeout under load is not a lie): back in the running.
                v.demoted = false;
            }
            v.ours_in_flight = v.ours_in_flight.saturating_sub(1);
        });
    }
}
