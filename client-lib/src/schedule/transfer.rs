//! One request at one source, as the scheduler sees it: its answer, its
//! bytes verified group by group, its rate, its deadlines; and the events
//! the driver reports about it.

use std::time::{Duration, Instant};

use tranzcast_proto::fetch::{self, BodyFetch, Miss};
use tranzcast_proto::outboard::GroupVerifier;

use super::{Action, Answer, Event, OutboardAnswer, STILL_COMING, SWITCH_CHECK, Scheduler, TransferId, WARM_UP};
use crate::scoring::{self, Ranked};

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The rest of a piece.
    Normal,
    /// One of a race's requests (the winner's goes on to the end).
    Racer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransferState {
    /// Waiting for a race's winner to free its source.
    Waiting,
    /// Asked, no answer yet.
    Asked,
    /// Answered: bytes are coming.
    Streaming,
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Its piece is whole (or, for a race's first range, handed on).
    Done,
    /// The source does not hold the blob.
    NotThere,
    /// It ran slow: the rest is fetched elsewhere (not a fault).
    Slow(String),
    /// It lied, failed or timed out (the source is demoted).
    Failed(String),
    /// It lost its race.
    Lost,
}

impl From<Miss> for Outcome {
    /// A source that lied or could not deliver is demoted; one without the blob is not.
    fn from(m: Miss) -> Self {
        match m {
            Miss::NotThere => Outcome::NotThere,
            Miss::Unreachable(e) | Miss::Lied(e) => Outcome::Failed(e),
        }
    }
}

/// A transfer's clock: when it was asked and answered, what is due when
/// (all instants from the driver's `now`).
#[derive(Debug, Clone, Copy)]
struct Times {
    /// When the request went out (or was re-asked after a race).
    asked: Instant,
    /// When the whole piece is due (past it the rest goes elsewhere).
    deadline: Instant,
    /// When its answer is due (a silent source is given up on sooner).
    answer_by: Instant,
    /// When the switch check runs next.
    next_check: Instant,
    first_byte: Option<Instant>,
    last_byte: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Transfer {
    pub(super) segment: u64,
    /// The piece it fetches (by its start).
    pub(super) piece: u64,
    pub(super) source: usize,
    pub(super) kind: Kind,
    pub(super) state: TransferState,
    /// Where the request in the air starts.
    req_from: u64,
    /// The end asked for (exclusive), if not the blob's end.
    to: Option<u64>,
    /// Where its verified bytes (`buf`) start.
    pub(super) from: u64,
    /// The verified fetch, once the blob's outboard is known.
    pub(super) body: Option<BodyFetch>,
    pub(super) buf: Vec<u8>,
    /// Bytes that came before any outboard did (verified once one does).
    raw: Vec<u8>,
    /// The body ended before the outboard came.
    body_ended: bool,
    times: Times,
    pub(super) got: u64,
    patience: u32,
    expected_secs: f64,
    measured: bool,
    rtt: Option<Duration>,
    answer: Option<Duration>,
    sharing_at_choice: u32,
    /// A race's loser held to the winner's pace (late is slow, not a fault).
    held: bool,
}

impl Transfer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        segment: u64,
        piece: u64,
        choice: &Ranked,
        patience: u32,
        kind: Kind,
        from: u64,
        to: Option<u64>,
        body: Option<BodyFetch>,
        (measured, rtt, answer, sharing_at_choice): (bool, Option<Duration>, Option<Duration>, u32),
        now: Instant,
    ) -> Self {
        Self {
            segment,
            piece,
            source: choice.index,
            kind,
            state: TransferState::Waiting,
            from,
            req_from: from,
            to,
            buf: Vec::with_capacity(body.as_ref().map_or(0, |v| usize::try_from(v.len() - from).unwrap_or(0))),
            body,
            raw: Vec::new(),
            body_ended: false,
            times: Times { asked: now, deadline: now, answer_by: now, next_check: now, first_byte: None, last_byte: None },
            got: 0,
            patience,
            expected_secs: choice.expected_secs,
            measured,
            rtt,
            answer,
            sharing_at_choice,
            held: false,
        }
    }

    /// When the scheduler must look at it again: its answer or the switch
    /// check while asked (the check only in the end-game, when a piece may
    /// be split), its deadline and the check while streaming.
    pub(super) fn due(&self, endgame: bool) -> [Option<Instant>; 2] {
        let t = &self.times;
        match self.state {
            TransferState::Waiting => [None, None],
            TransferState::Asked => [Some(t.answer_by), (endgame && self.kind == Kind::Normal).then_some(t.next_check)],
            TransferState::Streaming => [Some(t.deadline), Some(t.next_check)],
        }
    }

    /// When its first byte came, if one has.
    /// A race's loser going on with its stripe is held to the winner's
    /// pace: past `at`, it is judged as late (see `past_deadline`).
    pub(super) fn hold_to(&mut self, at: Instant) {
        self.kind = Kind::Normal;
        self.held = true;
        self.times.deadline = self.times.deadline.min(at);
        self.times.answer_by = self.times.answer_by.min(at);
    }

    pub(super) fn first_byte(&self) -> Option<Instant> {
        self.times.first_byte
    }

    /// The request goes out now: what the driver is to ask its source for.
    pub(super) fn issue(&mut self, id: TransferId, now: Instant) -> Action {
        self.state = TransferState::Asked;
        self.times.asked = now;
        self.times.deadline = now + scoring::timeout_for(self.expected_secs, self.measured) * self.patience;
        // A source that does not answer at all is given up on much sooner.
        self.times.answer_by = self.times.deadline.min(now + scoring::answer_timeout(self.rtt, self.answer) * self.patience);
        self.times.next_check = now + SWITCH_CHECK;
        let outboard = self.body.is_none();
        Action::Ask { id, source: self.source, segment: self.segment, from: self.req_from, to: self.to, outboard }
    }

    pub(super) fn verified(&self) -> u64 {
        self.body.as_ref().map_or(self.from, BodyFetch::verified)
    }

    /// Bytes/s since the first byte, once that is long enough to judge.
    pub(super) fn rate_now(&self, now: Instant) -> Option<f64> {
        let since = now.saturating_duration_since(self.times.first_byte?);
        (since >= WARM_UP).then(|| self.got as f64 / since.as_secs_f64())
    }

    /// The rate this source was chosen for (its expectation includes a round trip).
    fn planned_rate(&self, fallback_len: u64) -> f64 {
        let len = self.body.as_ref().map_or(fallback_len, BodyFetch::len);
        len.saturating_sub(self.from) as f64 / self.expected_secs.max(1e-3)
    }
}

impl Scheduler {
    /// The response to request `id` began.
    pub(crate) fn answered(&mut self, id: TransferId, answer: Answer, now: Instant) {
        self.on_answered(id, answer, now);
        self.after(now);
    }

    fn on_answered(&mut self, id: TransferId, answer: Answer, now: Instant) {
        let Some(t) = self.transfers.get_mut(&id).filter(|t| t.state == TransferState::Asked) else { return };
        self.sources[t.source].record_answer(now.saturating_duration_since(t.times.asked));
        let ranged = fetch::range_header(t.req_from, t.to).is_some();
        let code = match answer {
            Answer::Whole => 200,
            Answer::Partial => 206,
            Answer::NotFound => 404,
            Answer::Other(c) => c,
        };
        match fetch::body_status(code, t.req_from, ranged) {
            Ok(whole) => {
                if whole {
                    // (A whole blob for a range from 0 is fine: it is all checked.)
                    t.to = None;
                    if let Some(b) = t.body.as_mut() {
                        let _ = b.answered(200);
                    }
                }
                t.state = TransferState::Streaming;
            }
            Err(m) => self.end(id, m.into(), now),
        }
    }

    /// Request `id`'s outboard came (or did not).
    pub(crate) fn outboard(&mut self, id: TransferId, answer: OutboardAnswer, now: Instant) {
        self.on_outboard(id, answer, now);
        self.after(now);
    }

    fn on_outboard(&mut self, id: TransferId, answer: OutboardAnswer, now: Instant) {
        let Some(t) = self.transfers.get(&id) else { return };
        if t.body.is_some() {
            return;
        }
        let segment = t.segment;
        match answer {
            OutboardAnswer::Found(b) => match fetch::outboard(&self.addrs[segment as usize], 200, &b) {
                Ok(v) if !self.length_fits(segment, v.len()) => {
                    let why = format!("outboard: a blob of {} bytes where the manifest says {}", v.len(), self.expect_len);
                    self.end(id, super::Outcome::Failed(why), now);
                }
                Ok(v) => self.learn_outboard(segment, v, now),
                Err(m) => self.end(id, m.into(), now),
            },
            OutboardAnswer::NotFound => self.end(id, super::Outcome::NotThere, now),
            OutboardAnswer::Failed(e) => self.end(id, super::Outcome::Failed(format!("outboard: {e}")), now),
        }
    }

    /// Whether a blob of `len` bytes can be segment `segment`: the manifest
    /// gives every segment but the last exactly `expect_len` bytes (the
    /// origin refuses to publish others), the last at most that. An
    /// outboard of one group is not checked against the address until its
    /// group comes, so its length is checked here: a source claiming a
    /// shorter blob could otherwise cut a segment's stripes away.
    pub(super) fn length_fits(&self, segment: u64, len: u64) -> bool {
        let last = segment as usize + 1 == self.segments.len();
        if last { len > 0 && len <= self.expect_len } else { len == self.expect_len }
    }

    /// A valid verifier for `segment`: every request for it without one
    /// takes it (racers share the first to arrive, whoever sent it).
    pub(super) fn learn_outboard(&mut self, segment: u64, v: GroupVerifier, now: Instant) {
        let idx = segment as usize;
        let len = v.len();
        let seg = &mut self.segments[idx];
        seg.outboard.get_or_insert_with(|| v.clone());
        // Stripes laid out on the manifest's length (see start_race) are
        // cut to the real one: a lying manifest cannot make us ask past the end.
        let beyond: Vec<TransferId> = seg.pieces.iter().filter(|p| p.start >= len).flat_map(|p| p.transfers.clone()).collect();
        seg.pieces.retain(|p| p.start < len);
        if seg.pieces.is_empty() {
            // (Never a segment with nothing left to fetch and nothing fetched.)
            seg.pieces.push(super::Piece::new(0, Some(len)));
        }
        for p in &mut seg.pieces {
            if p.end.is_none_or(|e| e > len) {
                p.end = Some(len);
            }
        }
        for id in beyond {
            self.end(id, super::Outcome::Lost, now);
        }
        let ids: Vec<TransferId> =
            self.transfers.iter().filter(|(_, t)| t.segment == segment && t.body.is_none()).map(|(id, _)| *id).collect();
        // Every request takes the verifier before any byte is pushed: a
        // racer may claim on its bytes, and the others' must be verified
        // (and kept) when they are judged.
        for &id in &ids {
            let Some(t) = self.transfers.get_mut(&id) else { continue };
            t.to = t.to.filter(|&e| e < len);
            match BodyFetch::new(v.clone(), t.from, t.to) {
                Ok(b) => t.body = Some(b),
                Err(m) => self.end(id, m.into(), now),
            }
        }
        for id in ids {
            let Some(ended) = self.transfers.get(&id).map(|t| t.body_ended) else { continue };
            if !self.flush_raw(id, now) {
                continue;
            }
            if ended {
                self.stream_ended(id, now);
            }
        }
    }

    /// Verifies the bytes request `id` got before its outboard came, if it
    /// has one now; false when the transfer ended on them.
    pub(super) fn flush_raw(&mut self, id: TransferId, now: Instant) -> bool {
        let Some(t) = self.transfers.get_mut(&id).filter(|t| t.body.is_some()) else { return self.transfers.contains_key(&id) };
        let raw = std::mem::take(&mut t.raw);
        raw.is_empty() || self.push_verified(id, &raw, now)
    }

    /// Bytes of request `id`'s body arrived.
    pub(crate) fn data(&mut self, id: TransferId, chunk: &[u8], now: Instant) {
        self.on_data(id, chunk, now);
        self.after(now);
    }

    fn on_data(&mut self, id: TransferId, chunk: &[u8], now: Instant) {
        let Some(t) = self.transfers.get_mut(&id).filter(|t| t.state == TransferState::Streaming) else { return };
        t.times.first_byte.get_or_insert(now);
        t.times.last_byte = Some(now);
        t.got += chunk.len() as u64;
        self.sources[t.source].received += chunk.len() as u64;
        if t.body.is_none() {
            t.raw.extend_from_slice(chunk);
            // More than a segment's worth before any outboard came: not a blob we asked for.
            if t.raw.len() as u64 > 2 * self.expect_len + (1 << 20) {
                self.end(id, super::Outcome::Failed("too many bytes before the outboard".into()), now);
            }
            return;
        }
        if self.push_verified(id, chunk, now) {
            self.check_pace(id, now);
        }
    }

    /// Verifies and keeps bytes; false when the transfer ended on them.
    fn push_verified(&mut self, id: TransferId, bytes: &[u8], now: Instant) -> bool {
        let Some(t) = self.transfers.get_mut(&id) else { return false };
        let stop = self.segments[t.segment as usize].pieces.iter().find(|p| p.start == t.piece).and_then(|p| p.end);
        let Some(v) = t.body.as_mut() else { return true };
        let buf = &mut t.buf;
        // Only verified groups reach `buf`: a lie is caught within 16 KiB.
        if let Err(m) = v.push(bytes, |_, group| buf.extend_from_slice(group)) {
            self.end(id, m.into(), now);
            return false;
        }
        let stop = stop.unwrap_or(v.len()).min(v.len());
        let verified = v.verified();
        // (A striped racer's range is its whole piece: it claims, then ends.)
        if t.kind == Kind::Racer {
            let (source, got, from, segment) = (t.source, t.got, t.from, t.segment);
            if let Some(race) = self.segments[segment as usize].race.as_mut() {
                race.got.insert(source, got);
                if verified >= from + race.at && race.winner.is_none() {
                    self.claim(segment, id, now);
                }
            }
        }
        if verified >= stop {
            // (Past a split point the rest is a helper's: dropped.)
            if let Some(v) = self.transfers.get_mut(&id).and_then(|t| t.body.as_mut()) {
                v.abandon();
            }
            self.end(id, super::Outcome::Done, now);
            return false;
        }
        self.transfers.contains_key(&id)
    }

    /// Request `id`'s body ended.
    pub(crate) fn ended(&mut self, id: TransferId, now: Instant) {
        self.on_ended(id, now);
        self.after(now);
    }

    fn on_ended(&mut self, id: TransferId, now: Instant) {
        let Some(t) = self.transfers.get_mut(&id).filter(|t| t.state == TransferState::Streaming) else { return };
        if t.body.is_none() {
            // Judged once the outboard comes (or the deadline passes).
            t.body_ended = true;
            return;
        }
        self.stream_ended(id, now);
    }

    fn stream_ended(&mut self, id: TransferId, now: Instant) {
        let Some(t) = self.transfers.get_mut(&id) else { return };
        let Some(v) = t.body.as_mut() else { return };
        if t.kind == Kind::Racer && t.to.is_some() && v.verified() < v.len() {
            // A racer's first range is in. The winner asks for the rest; no
            // winner yet means the range ended short of the quarter.
            let winner = self.segments[t.segment as usize].race.as_ref().and_then(|r| r.winner);
            if winner == Some(t.source) {
                let from = v.rest();
                t.req_from = from;
                t.to = None;
                t.body_ended = false;
                t.state = TransferState::Asked;
                t.times.asked = now;
                t.times.answer_by = now + scoring::answer_timeout(t.rtt, t.answer) * t.patience;
                let new_id = self.next_id;
                self.next_id += 1;
                let Some(t) = self.transfers.remove(&id) else { return };
                let (segment, piece, source) = (t.segment, t.piece, t.source);
                self.transfers.insert(new_id, t);
                if let Some(p) = self.piece_mut(segment, piece) {
                    p.transfers.retain(|&x| x != id);
                    p.transfers.push(new_id);
                }
                self.actions.push_back(Action::Cancel { id });
                self.actions.push_back(Action::Ask { id: new_id, source, segment, from, to: None, outboard: false });
                return;
            }
            let at = v.verified();
            self.end(id, super::Outcome::Failed(format!("its answer ended at byte {at}")), now);
            return;
        }
        match v.finish() {
            Ok(()) => self.end(id, super::Outcome::Done, now),
            Err(m) => self.end(id, m.into(), now),
        }
    }

    /// Request `id` failed (connection reset, body error...).
    pub(crate) fn failed(&mut self, id: TransferId, error: String, now: Instant) {
        self.on_failed(id, error, now);
        self.after(now);
    }

    fn on_failed(&mut self, id: TransferId, error: String, now: Instant) {
        self.end(id, super::Outcome::Failed(error), now);
    }

    /// Timers of every transfer: answers not in time, deadlines, pace checks.
    pub(super) fn transfer_timers(&mut self, now: Instant) {
        let due: Vec<TransferId> = self
            .transfers
            .iter()
            .filter(|(_, t)| match t.state {
                TransferState::Waiting => false,
                TransferState::Asked => now >= t.times.answer_by || now >= t.times.next_check,
                TransferState::Streaming => now >= t.times.deadline || now >= t.times.next_check,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(t) = self.transfers.get_mut(&id) else { continue };
            match t.state {
                TransferState::Waiting => {}
                // A held loser that has not answered by the race's pace is
                // silent, not faulty: no share goes to it until it pulses back.
                TransferState::Asked if now >= t.times.answer_by && t.held => {
                    let source = t.source;
                    self.sources[source].healthy = false;
                    self.end(id, super::Outcome::Slow("no answer by the race's pace".into()), now);
                }
                TransferState::Asked if now >= t.times.answer_by => self.end(id, super::Outcome::Failed("no answer in time".into()), now),
                TransferState::Asked => {
                    t.times.next_check = now + SWITCH_CHECK;
                    self.check_unanswered(id, now);
                }
                TransferState::Streaming if now >= t.times.deadline => self.past_deadline(id, now),
                TransferState::Streaming => {
                    t.times.next_check = now + SWITCH_CHECK;
                    self.check_pace(id, now);
                }
            }
        }
    }

    /// Where transfer `t` stops, and what of it is left.
    pub(super) fn remaining(&self, t: &Transfer) -> u64 {
        let stop = self.piece(t.segment, t.piece).and_then(|p| p.end).unwrap_or(self.expect_len);
        stop.saturating_sub(t.verified())
    }

    fn excluding(&self, t: &Transfer) -> Vec<usize> {
        let mut exclude = match t.kind {
            Kind::Racer => Vec::new(),
            Kind::Normal => self.piece(t.segment, t.piece).map(|p| p.tried.clone()).unwrap_or_default(),
        };
        exclude.push(t.source);
        exclude
    }

    /// End-game, before the first byte: a source still silent while
    /// another, clearly faster, sits idle (see scoring::should_leave_unanswered).
    fn check_unanswered(&mut self, id: TransferId, now: Instant) {
        let Some(t) = self.transfers.get(&id) else { return };
        if t.kind == Kind::Racer || !self.endgame {
            return;
        }
        let remaining = self.remaining(t);
        // Only an idle source counts: one busy with our other requests is
        // no faster for this one than the end-game's split assumed.
        let alternative = self.alternative(t.segment as usize, remaining, &self.excluding(t), true);
        // Its share of the source: our other requests there take theirs.
        let s = &self.sources[t.source];
        let estimate = s.measured().map(|m| m / f64::from(s.ours_in_flight.max(1)));
        let waited = now.saturating_duration_since(t.times.asked).as_secs_f64();
        if scoring::should_leave_unanswered(waited, remaining, estimate, alternative) {
            let why = format!("no answer in {:.0} ms with {remaining} bytes to send", waited * 1e3);
            // Silent, not slow: no end-game share goes to it until a pulse
            // comes back from it (within PULSE_EVERY).
            self.sources[t.source].healthy = false;
            self.end(id, super::Outcome::Slow(why), now);
        }
    }

    /// Running slow (the source slowed down, or stalled)? The rest goes to
    /// a better source if one is clearly faster.
    fn check_pace(&mut self, id: TransferId, now: Instant) {
        let Some(t) = self.transfers.get(&id) else { return };
        let Some(rate) = t.rate_now(now) else { return };
        let remaining = self.remaining(t);
        let alternative = self.alternative(t.segment as usize, remaining, &self.excluding(t), false);
        let s = &self.sources[t.source];
        // Chosen on a guess (unmeasured, or a race's seed): held to its
        // source's measured share once there is one.
        let planned = match s.measured() {
            Some(e) if !t.measured => e / f64::from(s.ours_in_flight.max(1)),
            _ => scoring::planned_share(t.planned_rate(self.expect_len), t.sharing_at_choice, s.ours_in_flight),
        };
        if scoring::should_switch(rate, planned, remaining, alternative, self.endgame) {
            let source = t.source;
            if let Some(v) = self.transfers.get_mut(&id).and_then(|t| t.body.as_mut()) {
                v.abandon();
            }
            let s = &mut self.sources[source];
            s.record_slow(rate, s.ours_in_flight, now);
            self.end(id, super::Outcome::Slow(format!("{:.2} MB/s with {remaining} bytes left", rate / 1e6)), now);
        }
    }

    /// Past its time: a source still sending is slow (not demoted), a silent one failed.
    fn past_deadline(&mut self, id: TransferId, now: Instant) {
        let Some(t) = self.transfers.get(&id) else { return };
        // Past its time but still coming, and no other source would
        // clearly do the rest sooner: leaving would only waste what is
        // already on its way, so it gets more time.
        if let Some(rate) = t.rate_now(now)
            && t.times.last_byte.is_some_and(|b| now.saturating_duration_since(b) < STILL_COMING)
        {
            let remaining = self.remaining(t);
            let alternative = self.alternative(t.segment as usize, remaining, &self.excluding(t), false);
            if !scoring::should_switch(rate, t.planned_rate(self.expect_len), remaining, alternative, true) {
                if let Some(t) = self.transfers.get_mut(&id) {
                    t.times.deadline = now + scoring::timeout_for(remaining as f64 / rate, true);
                }
                return;
            }
        }
        let (got, held) = (t.got, t.held);
        if let Some(v) = self.transfers.get_mut(&id).and_then(|t| t.body.as_mut()) {
            v.abandon();
        }
        let outcome =
            if got > 0 || held { super::Outcome::Slow("over its time".into()) } else { super::Outcome::Failed("timed out".into()) };
        self.end(id, outcome, now);
    }

    /// Announces a race (used by plan.rs).
    pub(super) fn announce(&mut self, event: Event) {
        self.actions.push_back(Action::Event(event));
    }
}
