//! What spans requests: races and their end, a playback's window and its
//! order of output, the meter and pulses, and the end-game split.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tranzcast_proto::outboard::{GROUP_LEN, GroupVerifier};

use super::transfer::{Kind, TransferState};
use super::{Action, Event, METER_EVERY, PULSE_EVERY, Piece, Play, Race, SHARE_CHECK, Scheduler, TransferId};
use crate::scoring::{self, Ranked};

impl Scheduler {
    /// Plays the whole title in order: the first segment raced, then
    /// `parallel` segments at once (out of order) once the race is settled,
    /// output in order ([`Action::Output`]). `held`: segments already in
    /// hand (this client's own store). Sources are metered and pulsed.
    pub(crate) fn play(&mut self, held: BTreeMap<u64, (Bytes, usize)>, now: Instant) {
        let n = self.segments.len() as u64;
        let first_held = held.contains_key(&0);
        self.play = Some(Play { next_start: 1, first_done: first_held, done: held, ..Play::default() });
        self.metered = true;
        // (The first tick at once: it notes which sources are busy.)
        self.meter = Some((now, vec![(false, 0); self.sources.len()]));
        self.next_pulse = Some(now + PULSE_EVERY);
        if n == 0 {
            self.play = None;
            return;
        }
        if first_held {
            self.open_window(now);
        } else if !self.segments[0].fetching {
            self.start_segment(0, true, now);
        }
        self.flush_output();
    }

    /// Whether a playback is under way.
    pub(crate) fn playing(&self) -> bool {
        self.play.is_some()
    }

    fn open_window(&mut self, now: Instant) {
        if let Some(p) = self.play.as_mut()
            && !p.open
        {
            p.open = true;
            self.refill(now);
        }
    }

    /// Starts segments in order while fewer than `parallel` are in flight.
    fn refill(&mut self, now: Instant) {
        let n = self.segments.len() as u64;
        loop {
            let Some(p) = self.play.as_mut() else { return };
            if !p.open || p.next_start >= n || p.in_window.len() >= self.parallel {
                return;
            }
            let i = p.next_start;
            p.next_start += 1;
            if p.done.contains_key(&i) {
                continue;
            }
            p.in_window.insert(i);
            if i + 1 == n {
                // Every segment started: idle sources may now take over slow
                // transfers and share the last ones.
                self.endgame = true;
                self.next_share = Some(now);
            }
            if !self.segments[i as usize].fetching {
                self.start_segment(i, false, now);
            }
        }
    }

    /// A segment ended (its frame, or None: unavailable): a playback takes it.
    pub(super) fn segment_done(&mut self, segment: u64, got: Option<(Bytes, usize)>, now: Instant) {
        let Some(p) = self.play.as_mut() else { return };
        p.in_window.remove(&segment);
        let Some(got) = got else {
            // The playback cannot go on (the driver reports the segment).
            self.stop_play_now(now);
            return;
        };
        if segment < p.next_out || p.done.contains_key(&segment) {
            return;
        }
        // (Before the first segment, playback has not started: no stall.)
        if p.first_done && segment != p.next_out && !p.done.contains_key(&p.next_out) {
            let next = p.next_out;
            self.actions.push_back(Action::Event(Event::Stall { index: next }));
        }
        let Some(p) = self.play.as_mut() else { return };
        p.done.insert(segment, got);
        if segment == 0 {
            p.first_done = true;
        }
        self.flush_output();
        // The window refills (and opens, if the first came before its race settled).
        self.pending_refill = true;
    }

    fn flush_output(&mut self) {
        let n = self.segments.len() as u64;
        let Some(p) = self.play.as_mut() else { return };
        while let Some((frame, source)) = p.done.remove(&p.next_out) {
            self.actions.push_back(Action::Output { segment: p.next_out, frame, source });
            p.next_out += 1;
        }
        if p.next_out >= n {
            self.stop_play();
        }
    }

    /// Ends the playback (dropped, or failed): what only it wanted stops.
    pub(crate) fn stop_play_now(&mut self, now: Instant) {
        if self.play.is_none() {
            return;
        }
        self.stop_play();
        // Everything fetched and not wanted otherwise was the playback's.
        for i in 0..self.segments.len() as u64 {
            if !self.segments[i as usize].wanted && self.segments[i as usize].fetching {
                self.abandon(i, now);
            }
        }
    }

    fn stop_play(&mut self) {
        self.play = None;
        self.meter = None;
        self.next_pulse = None;
        self.next_share = None;
    }

    /// Timers: the meter, pulses, the end-game split, every transfer's.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, _)) = &self.meter
            && now >= *at
        {
            self.meter_tick(now);
        }
        if self.next_pulse.is_some_and(|t| now >= t) {
            self.next_pulse = Some(now + PULSE_EVERY);
            self.actions.push_back(Action::Pulse);
        }
        if self.endgame && self.next_share.is_some_and(|t| now >= t) {
            self.next_share = Some(now + SHARE_CHECK);
            self.plan_shares(now);
        }
        self.transfer_timers(now);
        self.after(now);
    }

    /// Work left for after an event (a window to refill).
    pub(super) fn after(&mut self, now: Instant) {
        if std::mem::take(&mut self.pending_refill) {
            if self.play.as_ref().is_some_and(|p| !p.open) {
                self.open_window(now);
            } else {
                self.refill(now);
            }
        }
    }

    /// Every source's throughput over the last interval it was busy with
    /// our requests throughout.
    fn meter_tick(&mut self, now: Instant) {
        let Some((at, last)) = self.meter.as_mut() else { return };
        *at = now + METER_EVERY;
        last.resize(self.sources.len(), (false, 0));
        for (v, (was_busy, received)) in self.sources.iter_mut().zip(last.iter_mut()) {
            let busy = v.ours_in_flight > 0;
            // Busy throughout and nothing came: for a source that has been
            // delivering, that is a sample too (a stalled link, or one still
            // carrying bytes of requests we cancelled), or the estimate would
            // stay at what it did before it stalled. It never seeds an
            // estimate: a source not yet measured may just not have started.
            if *was_busy && busy && (v.received > *received || v.measured().is_some()) {
                v.record_interval(v.received.saturating_sub(*received), METER_EVERY.as_secs_f64(), now);
            }
            (*was_busy, *received) = (busy, v.received);
        }
    }

    /// Races a segment on `racers` (best first). Each racer fetches a
    /// stripe of its own, the first quarter to the best, the second to the
    /// next, and so on: the first to complete its stripe wins, and the
    /// others' bytes are not copies but parts of the segment, so a race
    /// costs no egress. Striped when the segment's length is known (its
    /// outboard, or a segment before the last, whose length the manifest
    /// gives) and leaves a tail; otherwise every racer fetches the first
    /// quarter and the losers' bytes are dropped.
    pub(super) fn start_race(&mut self, segment: u64, racers: &[Ranked], now: Instant) {
        let between = racers.iter().map(|r| self.sources[r.index].name.clone()).collect();
        self.announce(Event::Race { index: segment, between });
        let idx = segment as usize;
        let known = self.segments[idx].outboard.as_ref().map(GroupVerifier::len);
        let exact = known.or_else(|| (idx + 1 < self.segments.len()).then_some(self.expect_len));
        // Decided at a quarter: by then the racers' pace is plain.
        let at = known.unwrap_or(self.expect_len) / 4;
        let stripe = at.div_ceil(GROUP_LEN).max(1) * GROUP_LEN;
        let width = racers.len() as u64;
        let striped = exact.is_some_and(|len| stripe * width < len);
        let at = if striped { stripe } else { at };
        if striped {
            let seg = &mut self.segments[idx];
            seg.pieces = (0..width).map(|i| Piece::new(i * stripe, Some((i + 1) * stripe))).collect();
            seg.pieces.push(Piece::new(width * stripe, known));
        }
        self.segments[idx].race = Some(Race {
            at,
            striped,
            started: now,
            got: BTreeMap::new(),
            winner: None,
            running: racers.len(),
            settled: false,
            failed: Vec::new(),
        });
        for (i, r) in racers.iter().enumerate() {
            let start = if striped { i as u64 * stripe } else { 0 };
            self.start_transfer(segment, start, r, 1, Kind::Racer, now);
        }
    }

    /// Racer `id` has its range first. In a striped race, a loser that
    /// will finish its stripe before the winner could fetch the segment's
    /// tail goes on as an ordinary request (nothing it sent is wasted);
    /// the others stop, keeping what they verified, and the rest of their
    /// stripes is asked again once the race is over. In a race on the same
    /// range, the others stop.
    pub(super) fn claim(&mut self, segment: u64, id: TransferId, now: Instant) {
        let idx = segment as usize;
        let Some(source) = self.transfers.get(&id).map(|t| t.source) else { return };
        let Some(race) = self.segments[idx].race.as_mut() else { return };
        race.winner = Some(source);
        let (striped, at) = (race.striped, race.at);
        let elapsed = now.saturating_duration_since(race.started).as_secs_f64().max(1e-3);
        let losers: Vec<TransferId> = self.segments[idx]
            .pieces
            .iter()
            .flat_map(|p| p.transfers.iter().copied())
            .filter(|&x| x != id && self.transfers.get(&x).is_some_and(|t| t.kind == Kind::Racer))
            .collect();
        // The winner's pace, and the tail it fetches next.
        let winner_rate = at as f64 / elapsed;
        let tail = self.segments[idx].pieces.last().map_or(0, |p| p.end.unwrap_or(self.expect_len).saturating_sub(p.start));
        for l in losers {
            // Its bytes that came before the outboard are verified (and kept) first.
            if !self.flush_raw(l, now) {
                continue;
            }
            let Some((piece, source, got)) = self.transfers.get(&l).map(|t| (t.piece, t.source, t.got)) else { continue };
            let rtt = self.sources[source].rtt.map_or(0.1, |r| r.as_secs_f64());
            let young = elapsed <= 2.0 * rtt + 0.010;
            // In a striped race a loser's source is not asked again for its
            // stripe this round (held, it is judged by its deadline; cut, it
            // was slow), nor, if nothing of it came, for any other part of
            // the segment (unmeasured, it would still rank as fast). (In a
            // race on one range only racers that failed are passed over.)
            if striped {
                for p in self.segments[idx].pieces.iter_mut().filter(|p| p.start == piece || got == 0) {
                    p.tried.push(source);
                }
            }
            // Cut only if the winner would fetch the tail and this rest too
            // sooner than the loser ends its stripe. One with nothing in
            // yet is not judged while the race is young for its round trip
            // (within two of them and 10 ms): its bytes may be on their
            // way (on a fast path, sent before its answer is read here),
            // and cutting would waste them. Older than that, nothing has
            // come because the source is slow to start (a cold edge's
            // miss, say): cut. A loser that goes on is held to twice the
            // winner's time; past it, it is left as slow.
            let mut goes_on = None;
            if striped && let Some(t) = self.transfers.get(&l) {
                let left = self.remaining(t) as f64;
                let rate = t.got as f64 / elapsed;
                let winner_secs = (tail as f64 + left) / winner_rate;
                if (t.got == 0 && young) || (t.got > 0 && left / rate <= winner_secs) {
                    goes_on = Some(now + Duration::from_secs_f64(2.0 * winner_secs).max(super::SWITCH_CHECK));
                }
            }
            if let Some(deadline) = goes_on {
                if let Some(t) = self.transfers.get_mut(&l) {
                    t.hold_to(deadline);
                }
                if let Some(race) = self.segments[idx].race.as_mut() {
                    race.running = race.running.saturating_sub(1);
                }
            } else {
                // Nothing came in a striped race old for its round trip: a
                // first estimate of next to nothing (provisional, replaced by
                // its next real sample), or, unmeasured, it would still rank
                // as fast for the segments after this one.
                if striped && got == 0 && !young {
                    self.sources[source].seed(1, elapsed, now);
                }
                self.end(l, super::transfer::Outcome::Lost, now);
            }
        }
        self.settle(segment, now);
    }

    /// Once the winner is alone (every loser stopped or gone on as an
    /// ordinary request), the segment is `raced`: its sources are held for
    /// it until it is in (see [`Scheduler::holds_back`]). That is what
    /// the playback waits for to start the other segments, which are then
    /// spread over sources as they really are. The racers' paces seed the
    /// estimates of sources not yet measured: bytes over the same interval
    /// since they were asked (a transfer's own few tens of milliseconds
    /// from its first byte would mostly measure a link's burst).
    pub(super) fn settle(&mut self, segment: u64, now: Instant) {
        let Some(race) = self.segments[segment as usize].race.as_mut() else { return };
        let Some(w) = race.winner else { return };
        if race.settled || race.running > 1 {
            return;
        }
        race.settled = true;
        let secs = now.saturating_duration_since(race.started).as_secs_f64();
        let got = std::mem::take(&mut race.got);
        tracing::trace!(winner = w, ?got, ms = secs * 1e3, "race settled");
        for (source, bytes) in got.into_iter().filter(|(_, b)| *b > 0) {
            if let Some(v) = self.sources.get_mut(source) {
                v.seed(bytes, secs, now);
            }
        }
        if race.running == 1 && self.raced.replace(segment).is_some_and(|old| old != segment) {
            // (Another raced segment's holds end: one raced segment at a time.)
            self.issue_waiting(now);
        }
        if self.play.is_some() {
            self.pending_refill = true;
        }
    }

    /// Whether a request for `segment` at `source` waits: the source
    /// carries part of the raced segment, which is not in yet.
    pub(super) fn holds_back(&self, source: usize, segment: u64) -> bool {
        self.raced.is_some_and(|r| {
            r != segment && self.transfers.values().any(|t| t.segment == r && t.source == source && t.state != TransferState::Waiting)
        })
    }

    /// Requests waiting for a source the raced segment no longer holds go out.
    pub(super) fn issue_waiting(&mut self, now: Instant) {
        let waiting: Vec<TransferId> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.state == TransferState::Waiting && !self.holds_back(t.source, t.segment))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.issue(id, now);
        }
    }

    /// Segment `segment` ended (in, unavailable, abandoned): if it was the
    /// raced one, every request waiting for its sources goes out.
    pub(super) fn release(&mut self, segment: u64, now: Instant) {
        if self.raced == Some(segment) {
            self.raced = None;
            self.issue_waiting(now);
        }
    }

    /// End-game: each idle source (measured, healthy, not busy with us)
    /// takes the tail of the piece in flight expected to end last, where
    /// that brings its end sooner.
    fn plan_shares(&mut self, now: Instant) {
        let mut idle: Vec<usize> = (0..self.sources.len())
            .filter(|&k| {
                let v = &self.sources[k];
                v.ours_in_flight == 0 && v.healthy && !v.demoted && v.throughput.is_some()
            })
            .collect();
        if idle.is_empty() {
            return;
        }
        idle.sort_by(|a, b| self.sources[*b].throughput.unwrap_or(0.0).total_cmp(&self.sources[*a].throughput.unwrap_or(0.0)));
        let mut taken: Vec<(u64, u64)> = Vec::new();
        for helper in idle {
            // The piece expected to end last that this source can serve:
            // fetched by one request (not raced), streaming at a known rate.
            let mut best: Option<(f64, u64, u64, u64, f64)> = None;
            for (id, t) in &self.transfers {
                let _ = id;
                let seg = &self.segments[t.segment as usize];
                if t.kind != Kind::Normal
                    || t.state != TransferState::Streaming
                    || seg.race.is_some()
                    || taken.contains(&(t.segment, t.piece))
                    || self.sources[helper].expected_secs(t.segment as usize, 1).is_none()
                {
                    continue;
                }
                let (Some(v), Some(rate)) = (&t.body, t.rate_now(now)) else { continue };
                let Some(p) = seg.pieces.iter().find(|p| p.start == t.piece) else { continue };
                if p.split || p.end != Some(v.len()) || p.transfers.len() != 1 {
                    continue;
                }
                let left = (v.len() - v.verified()) as f64 / rate;
                if best.is_none_or(|b| left > b.0) {
                    best = Some((left, t.segment, t.piece, v.verified(), rate));
                }
            }
            let Some((_, segment, start, verified, rate)) = best else { continue };
            let Some(len) = self.segments[segment as usize].outboard.as_ref().map(GroupVerifier::len) else { continue };
            let h = &self.sources[helper];
            let rtt = h.rtt.map_or(0.05, |r| r.as_secs_f64());
            let helper_rate = h.throughput.unwrap_or(0.0);
            let Some(split) = scoring::split_point(len, verified, rate, helper_rate, rtt) else { continue };
            taken.push((segment, start));
            let name = h.name.clone();
            let seg = &mut self.segments[segment as usize];
            let Some(p) = seg.pieces.iter_mut().find(|p| p.start == start) else { continue };
            p.split = true;
            p.end = Some(split);
            // The tail is a piece of its own: it may be split again.
            let mut tail = Piece::new(split, Some(len));
            tail.tried.push(helper);
            seg.pieces.push(tail);
            seg.pieces.sort_by_key(|p| p.start);
            self.announce(Event::Split { index: segment, source: name, at: split });
            let expected_secs = rtt + (len - split) as f64 / helper_rate.max(1.0);
            self.start_transfer(segment, split, &Ranked { index: helper, expected_secs }, 1, Kind::Normal, now);
        }
    }
}
