//! The client's decisions, without I/O: which source each segment (or the
//! rest of one) is asked of, races and their end, leaving a slow or silent
//! source, the end-game split, resumption after a lie or a failure, and the
//! order of output (quinn-proto's shape).
//!
//! A [`Scheduler`] takes events (a source answered, bytes arrived, a stream
//! ended or failed, a pulse came back, a segment is wanted) each with `now`,
//! and hands back [`Action`]s (ask a source for a range, cancel a request,
//! pulse, a segment is ready, output the next one) and the time it next
//! wants to be woken ([`Scheduler::poll_timeout`]). It reads no clock, takes
//! no lock and spawns nothing: `session` drives it over HTTP, and the tests in
//! `schedule/sim.rs` drive it over a simulated network with a fake clock.
//!
//! Bytes are verified here, 16 KiB group by group against the outboard
//! (itself checked against the blob's address), so nothing unverified ever
//! reaches a [`Action::Ready`] frame, whoever sent it.
//!
//! Invariants (checked by the simulation for thousands of seeded scenarios):
//! every [`Action::Ask`] is matched by exactly one [`Action::Cancel`]; a
//! segment's frame is the blob of its address; output is in order; a wanted
//! segment ends ready or unavailable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tranzcast_proto::BlobAddress;
use tranzcast_proto::fetch::{self, BodyFetch};
use tranzcast_proto::outboard::{GROUP_LEN, GroupVerifier};

use crate::Event;
use crate::scoring::{self, Ranked, SourceView};

mod plan;
#[cfg(test)]
mod sim;
mod transfer;

use transfer::{Kind, Outcome, Transfer};

/// One request at one source (its id in [`Action::Ask`] and the events about it).
pub(crate) type TransferId = u64;

/// How often a transfer checks whether it runs slow.
pub(crate) const SWITCH_CHECK: Duration = Duration::from_millis(50);
/// A transfer's rate is judged only after this long since its first byte.
pub(crate) const WARM_UP: Duration = Duration::from_millis(100);
/// A throughput estimate this old, of a source we are not using, is
/// forgotten (the source is tried again).
pub(crate) const STALE_ESTIMATE: Duration = Duration::from_secs(1);
/// Sources are pulsed again this often during a playback.
pub(crate) const PULSE_EVERY: Duration = Duration::from_secs(1);
/// Sources' throughput is metered over intervals this long during a playback.
pub(crate) const METER_EVERY: Duration = Duration::from_millis(200);
/// A transfer past its time that got bytes this recently is still coming.
pub(crate) const STILL_COMING: Duration = Duration::from_secs(1);
/// Partial transfers (cancelled, left) shorter than this teach nothing.
pub(crate) const MIN_SAMPLE: u64 = 64 * 1024;
/// How often the end-game looks for idle sources to share the last segments.
pub(crate) const SHARE_CHECK: Duration = Duration::from_millis(20);

/// How a source answered a request for a blob (the response's status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200: the whole blob follows.
    Whole,
    /// 206: the range asked for follows.
    Partial,
    /// 404: it does not hold the blob.
    NotFound,
    /// Anything else.
    Other(u16),
}

/// How a source answered a request for a blob's outboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutboardAnswer {
    /// The encoded outboard (checked here against the blob's address).
    Found(Bytes),
    /// 404.
    NotFound,
    /// An error or another status.
    Failed(String),
}

/// What the driver is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Ask `source` for segment `segment`'s blob from byte `from` (to byte
    /// `to`, exclusive, when set; `from == 0` and no `to`: the whole blob),
    /// and for its outboard too when `outboard`. Report with the id.
    Ask { id: TransferId, source: usize, segment: u64, from: u64, to: Option<u64>, outboard: bool },
    /// Stop request `id` (it ended, or it is no longer wanted): nothing
    /// more is reported about it.
    Cancel { id: TransferId },
    /// Pulse every source (report with [`Scheduler::pulsed`]).
    Pulse,
    /// A segment is in hand, whole and verified.
    Ready { segment: u64, frame: Bytes, source: usize },
    /// No source could deliver a wanted segment.
    Unavailable { segment: u64, last: String },
    /// The playback's next segment, in order.
    Output { segment: u64, frame: Bytes, source: usize },
    /// Something to tell the session's watchers.
    Event(Event),
}

/// A contiguous part of a segment's blob fetched by one request at a time
/// (several while raced): the whole blob, or the head or tail of a split.
#[derive(Debug)]
struct Piece {
    start: u64,
    /// Its end (exclusive), once the blob's length is known.
    end: Option<u64>,
    /// Verified bytes from `start`.
    data: Vec<u8>,
    /// Sources tried for it in this round, and the round (1, or 3: patience).
    tried: Vec<usize>,
    patience: u32,
    last: String,
    transfers: Vec<TransferId>,
    /// Its tail went to a helper in the end-game (it is not split again).
    split: bool,
    /// The source that delivered its last bytes.
    by: Option<usize>,
}

impl Piece {
    fn new(start: u64, end: Option<u64>) -> Self {
        Self {
            start,
            end,
            data: Vec::new(),
            tried: Vec::new(),
            patience: 1,
            last: String::new(),
            transfers: Vec::new(),
            split: false,
            by: None,
        }
    }

    fn at(&self) -> u64 {
        self.start + self.data.len() as u64
    }

    fn is_complete(&self) -> bool {
        self.end.is_some_and(|e| self.at() >= e)
    }
}

/// A race for a segment: the first racer with `at` bytes of its range verified wins.
#[derive(Debug)]
struct Race {
    at: u64,
    /// Each racer fetches its own stripe (see `Scheduler::start_race`).
    striped: bool,
    started: Instant,
    /// Bytes each racer (by source) received.
    got: BTreeMap<usize, u64>,
    winner: Option<usize>,
    running: usize,
    settled: bool,
    /// Racers that failed (passed over when the segment goes on without a race).
    failed: Vec<usize>,
}

#[derive(Debug, Default)]
struct Segment {
    fetching: bool,
    /// Asked for with [`Scheduler::want`] (answered with Ready or Unavailable).
    wanted: bool,
    /// The blob's verifier at byte 0 (its outboard checked), once known.
    outboard: Option<GroupVerifier>,
    pieces: Vec<Piece>,
    race: Option<Race>,
}

/// A playback in order (see [`Scheduler::play`]).
#[derive(Debug, Default)]
struct Play {
    /// The next segment the window starts, and the next one output.
    next_start: u64,
    next_out: u64,
    /// The window opens once the first segment's race is settled (or it is in).
    open: bool,
    first_done: bool,
    in_window: BTreeSet<u64>,
    done: BTreeMap<u64, (Bytes, usize)>,
}

/// The client's scheduling decisions for one session (see the module docs).
#[derive(Debug)]
pub(crate) struct Scheduler {
    addrs: Vec<BlobAddress>,
    /// A segment's size on the wire as rankings estimate it before its outboard is known.
    expect_len: u64,
    parallel: usize,
    sources: Vec<SourceView>,
    segments: Vec<Segment>,
    transfers: BTreeMap<TransferId, Transfer>,
    next_id: TransferId,
    actions: VecDeque<Action>,
    /// A raced segment, from its race's end until it is in: a source
    /// carrying part of it has it to itself (requests for other segments
    /// wait), so the first segment is not slowed by the ones after it.
    raced: Option<u64>,
    play: Option<Play>,
    /// Set once every segment of the playback has been started.
    endgame: bool,
    /// Set while a playback meters its sources (transfers then only seed estimates).
    metered: bool,
    meter: Option<(Instant, Vec<(bool, u64)>)>,
    next_pulse: Option<Instant>,
    next_share: Option<Instant>,
    /// A playback's window is to be refilled once the current event is handled.
    pending_refill: bool,
}

impl Scheduler {
    /// For a title whose segments are `addrs`, each about `expect_len`
    /// bytes on the wire, from `sources`; `parallel` segments at once in a playback.
    pub(crate) fn new(addrs: Vec<BlobAddress>, expect_len: u64, parallel: usize, sources: Vec<SourceView>) -> Self {
        let segments = addrs.iter().map(|_| Segment::default()).collect();
        Self {
            addrs,
            expect_len,
            parallel: parallel.max(1),
            sources,
            segments,
            transfers: BTreeMap::new(),
            next_id: 1,
            actions: VecDeque::new(),
            raced: None,
            play: None,
            endgame: false,
            metered: false,
            meter: None,
            next_pulse: None,
            next_share: None,
            pending_refill: false,
        }
    }

    /// What the scheduler knows of each source.
    pub(crate) fn sources(&self) -> &[SourceView] {
        &self.sources
    }

    /// Keeps only the sources with `keep[i]`; only before any request.
    pub(crate) fn retain_sources(&mut self, keep: &[bool]) -> bool {
        if !self.transfers.is_empty() || keep.len() != self.sources.len() {
            return false;
        }
        let mut k = keep.iter();
        self.sources.retain(|_| *k.next().unwrap_or(&false));
        true
    }

    /// The next thing to do, if any.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Requests in flight (asked, or waiting for a reserved source).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.transfers.len()
    }

    /// When [`Scheduler::handle_timeout`] must next be called.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut consider = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if let Some((t, _)) = &self.meter {
            consider(*t);
        }
        if let Some(t) = self.next_pulse {
            consider(t);
        }
        if self.endgame
            && let Some(t) = self.next_share
        {
            consider(t);
        }
        for t in self.transfers.values() {
            t.due(self.endgame).into_iter().flatten().for_each(&mut consider);
        }
        at
    }

    /// Segment `segment` is wanted now (raced on the best sources when
    /// `raced`); answered with [`Action::Ready`] or [`Action::Unavailable`].
    pub(crate) fn want(&mut self, segment: u64, raced: bool, now: Instant) {
        let Some(seg) = self.segments.get_mut(segment as usize) else {
            self.actions.push_back(Action::Unavailable { segment, last: format!("no segment {segment}") });
            return;
        };
        seg.wanted = true;
        if !seg.fetching {
            self.start_segment(segment, raced, now);
        }
        self.after(now);
    }

    /// A valid outboard for `segment` learned out of band (fetched ahead).
    pub(crate) fn outboard_known(&mut self, segment: u64, encoded: &[u8], now: Instant) -> bool {
        let Some(addr) = self.addrs.get(segment as usize).copied() else { return false };
        match fetch::outboard(&addr, 200, encoded) {
            Ok(v) if self.length_fits(segment, v.len()) => {
                self.learn_outboard(segment, v, now);
                self.after(now);
                true
            }
            Ok(_) | Err(_) => false,
        }
    }

    /// A source's pulse came back after `rtt` (None: it did not answer).
    pub(crate) fn pulsed(&mut self, source: usize, rtt: Duration, pulse: Option<&tranzcast_proto::pulse::Pulse>) {
        let segments = self.segments.len();
        let Some(view) = self.sources.get_mut(source) else { return };
        match pulse {
            Some(p) => {
                view.healthy = p.health == tranzcast_proto::pulse::Health::Ok;
                // With our own transfers queued there, the round trip
                // measures our queue, not the path.
                if view.ours_in_flight == 0 || view.rtt.is_none() {
                    view.rtt = Some(rtt);
                }
                view.reported_in_flight = p.load.in_flight;
                view.reported_rate = p.load.bytes_out_per_s;
                view.capacity = p.load.capacity_bytes_per_s.map(|c| c as f64);
                view.holds = p.segments.as_ref().map(|s| &s.bitmap).filter(|b| !b.is_empty()).map(|b| b.to_holds(segments));
            }
            // Silent: unhealthy, unless our own transfers from it are
            // flowing (the pulse waited behind them).
            None if view.ours_in_flight == 0 => view.healthy = false,
            None => {}
        }
    }

    /// Starts fetching a segment: raced on the best sources, or from the best one.
    fn start_segment(&mut self, segment: u64, raced: bool, now: Instant) {
        let idx = segment as usize;
        let end = self.segments[idx].outboard.as_ref().map(GroupVerifier::len);
        let seg = &mut self.segments[idx];
        seg.fetching = true;
        seg.pieces = vec![Piece::new(0, end)];
        if raced {
            let ranked = self.ranked(idx, self.expect_len, &[], now);
            let width = scoring::race_width(&self.sources, &ranked);
            if width >= 2 {
                self.start_race(segment, &ranked[..width], now);
                return;
            }
        }
        self.advance(segment, now);
    }

    /// Starts a request for what piece `start` of `segment` still lacks.
    fn start_transfer(&mut self, segment: u64, start: u64, choice: &Ranked, patience: u32, kind: Kind, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let idx = segment as usize;
        let view = &mut self.sources[choice.index];
        let measured = view.measured().is_some();
        let (rtt, answer) = (view.rtt, view.answer);
        view.ours_in_flight += 1;
        let sharing_at_choice = view.ours_in_flight;
        let name = view.name.clone();
        let race_at = self.segments[idx].race.as_ref().filter(|r| !r.striped).map(|r| r.at);
        let template = self.segments[idx].outboard.clone();
        let Some(piece) = self.segments[idx].pieces.iter_mut().find(|p| p.start == start) else { return };
        let from = piece.at();
        let len = template.as_ref().map(GroupVerifier::len);
        let to = match (kind, race_at) {
            // A racer asks for the first quarter only (to the group boundary
            // at or after it, so the claim can be verified): once the race
            // is decided, a loser's link carries at most the rest of that
            // range; the winner then asks for the rest.
            (Kind::Racer, Some(at)) => Some(at.div_ceil(GROUP_LEN).max(1) * GROUP_LEN).filter(|b| len.is_none_or(|l| *b < l)),
            // A piece ending before the blob does (a stripe, a split's head) is asked to its end only.
            _ => piece.end.filter(|e| len.is_none_or(|l| *e < l)),
        };
        let body = template.and_then(|v| BodyFetch::new(v, from, to).ok());
        piece.transfers.push(id);
        // (A piece's first request is no resumption: a stripe, a split's tail.)
        if from > piece.start && kind == Kind::Normal {
            self.actions.push_back(Action::Event(Event::Resumed { index: segment, source: name, at: from }));
        }
        let t = Transfer::new(segment, start, choice, patience, kind, from, to, body, (measured, rtt, answer, sharing_at_choice), now);
        self.transfers.insert(id, t);
        if kind == Kind::Normal && self.holds_back(choice.index, segment) {
            // A source carrying part of a raced segment has it to itself until that segment is in.
            return;
        }
        self.issue(id, now);
    }

    fn issue(&mut self, id: TransferId, now: Instant) {
        let Some(t) = self.transfers.get_mut(&id) else { return };
        let ask = t.issue(id, now);
        self.actions.push_back(ask);
    }

    /// Sources for `bytes` of segment `idx`, best first, leaving out `exclude`.
    fn ranked(&mut self, idx: usize, bytes: u64, exclude: &[usize], now: Instant) -> Vec<Ranked> {
        self.sources.iter_mut().for_each(|s| s.forget_stale(now, STALE_ESTIMATE));
        scoring::rank(&self.sources, idx, bytes).into_iter().filter(|r| !exclude.contains(&r.index)).collect()
    }

    /// Expected seconds of the best healthy, not demoted source outside
    /// `exclude` (with `idle_only`: among those with none of our requests).
    fn alternative(&self, idx: usize, bytes: u64, exclude: &[usize], idle_only: bool) -> Option<f64> {
        let v = &self.sources;
        scoring::rank(v, idx, bytes)
            .into_iter()
            .find(|r| {
                let s = &v[r.index];
                !exclude.contains(&r.index) && !s.demoted && s.healthy && (!idle_only || s.ours_in_flight == 0)
            })
            .map(|r| r.expected_secs)
    }

    /// After a change to a segment: delivers it when whole, or asks the
    /// next source for each piece nobody is fetching; gives up when every
    /// source failed twice (the second round with three times the patience).
    fn advance(&mut self, segment: u64, now: Instant) {
        let idx = segment as usize;
        let seg = &mut self.segments[idx];
        if !seg.fetching {
            return;
        }
        if !seg.pieces.is_empty() && seg.pieces.iter().all(Piece::is_complete) {
            self.complete(segment, now);
            return;
        }
        if let Some(race) = &seg.race {
            if race.running > 0 {
                return;
            }
            // The race is over without the segment: it goes on from what
            // the winner left, passing over only racers that failed.
            let failed = race.failed.clone();
            seg.race = None;
            for p in seg.pieces.iter_mut().filter(|p| p.transfers.is_empty()) {
                p.tried.extend(failed.iter().copied());
            }
        }
        let ahead =
            self.metered && !self.endgame && self.play.as_ref().is_some_and(|p| segment >= p.next_out + (self.parallel as u64).div_ceil(2));
        let idle: Vec<(u64, u64, Vec<usize>)> = self.segments[idx]
            .pieces
            .iter()
            .filter(|p| !p.is_complete() && p.transfers.is_empty())
            .map(|p| (p.start, p.end.map_or(self.expect_len, |e| e - p.at()), p.tried.clone()))
            .collect();
        for (start, remaining, _) in idle {
            loop {
                let tried = self.piece(segment, start).map(|p| p.tried.clone()).unwrap_or_default();
                let ranked = self.ranked(idx, remaining, &tried, now);
                // (Not while a raced segment holds sources: they are busy
                // for a moment only, and an idle one may be a race's slow loser.)
                let pick = if ahead && tried.is_empty() && self.raced.is_none() { scoring::prefer_idle(&self.sources, &ranked) } else { 0 };
                if let Some(choice) = ranked.into_iter().nth(pick) {
                    let Some(p) = self.piece_mut(segment, start) else { return };
                    p.tried.push(choice.index);
                    let patience = p.patience;
                    self.start_transfer(segment, start, &choice, patience, Kind::Normal, now);
                    break;
                }
                let Some(p) = self.piece_mut(segment, start) else { return };
                if p.patience == 1 {
                    // Every source failed once (all busy, say): one more
                    // round with three times the patience.
                    p.patience = 3;
                    p.tried.clear();
                    continue;
                }
                let last = if p.last.is_empty() { "no sources".to_string() } else { p.last.clone() };
                self.fail_segment(segment, last, now);
                return;
            }
        }
    }

    fn piece(&self, segment: u64, start: u64) -> Option<&Piece> {
        self.segments.get(segment as usize)?.pieces.iter().find(|p| p.start == start)
    }

    fn piece_mut(&mut self, segment: u64, start: u64) -> Option<&mut Piece> {
        self.segments.get_mut(segment as usize)?.pieces.iter_mut().find(|p| p.start == start)
    }

    /// Every piece is in: the frame is handed over (and output in order in a playback).
    fn complete(&mut self, segment: u64, now: Instant) {
        let seg = &mut self.segments[segment as usize];
        let mut frame = Vec::with_capacity(seg.pieces.iter().map(|p| p.data.len()).sum());
        for p in &seg.pieces {
            frame.extend_from_slice(&p.data);
        }
        // Named after the source that delivered most of it (a striped race
        // or a split has several; the tail, the longest, wins a tie).
        let source = seg.pieces.iter().filter(|p| p.by.is_some()).max_by_key(|p| p.data.len()).and_then(|p| p.by).unwrap_or(0);
        let frame = Bytes::from(frame);
        seg.pieces.clear();
        seg.fetching = false;
        seg.wanted = false;
        seg.race = None;
        self.release(segment, now);
        self.actions.push_back(Action::Ready { segment, frame: frame.clone(), source });
        self.segment_done(segment, Some((frame, source)), now);
    }

    fn fail_segment(&mut self, segment: u64, last: String, now: Instant) {
        let seg = &mut self.segments[segment as usize];
        let ids: Vec<TransferId> = seg.pieces.iter().flat_map(|p| p.transfers.clone()).collect();
        seg.pieces.clear();
        seg.fetching = false;
        seg.wanted = false;
        seg.race = None;
        for id in ids {
            self.drop_transfer(id);
        }
        self.release(segment, now);
        self.actions.push_back(Action::Unavailable { segment, last });
        self.segment_done(segment, None, now);
    }

    /// Stops fetching a segment nobody wants any more.
    fn abandon(&mut self, segment: u64, now: Instant) {
        let seg = &mut self.segments[segment as usize];
        let ids: Vec<TransferId> = seg.pieces.iter().flat_map(|p| p.transfers.clone()).collect();
        seg.pieces.clear();
        seg.fetching = false;
        seg.race = None;
        for id in ids {
            self.drop_transfer(id);
        }
        self.release(segment, now);
    }

    /// Takes a transfer away without judging its source (its segment ended otherwise).
    fn drop_transfer(&mut self, id: TransferId) {
        if let Some(t) = self.transfers.remove(&id) {
            if let Some(v) = self.sources.get_mut(t.source) {
                v.ours_in_flight = v.ours_in_flight.saturating_sub(1);
            }
            // (One still waiting for a held source was never asked.)
            if t.state != transfer::TransferState::Waiting {
                self.actions.push_back(Action::Cancel { id });
            }
        }
    }

    /// Ends transfer `id`: its source's view learns from it, its verified
    /// bytes are kept (unless it lost a race), and its segment goes on.
    fn end(&mut self, id: TransferId, outcome: Outcome, now: Instant) {
        let Some(mut t) = self.transfers.remove(&id) else { return };
        self.actions.push_back(Action::Cancel { id });
        let done = outcome == Outcome::Done;
        let metered = self.metered;
        let view = &mut self.sources[t.source];
        // Timed from the first byte (plus a round trip): connection set-up
        // and a parent's miss are not the source's throughput. While metered
        // (a playback), a transfer's own sample only seeds an unknown
        // estimate: the meter sees all requests together.
        if let Some(fb) = t.first_byte()
            && t.kind == Kind::Normal
            && (done || t.got >= MIN_SAMPLE)
            && (!metered || view.measured().is_none())
        {
            let rtt = view.rtt.unwrap_or_default();
            view.record_fetch(t.got, now.saturating_duration_since(fb) + rtt, view.ours_in_flight, now);
        }
        if done {
            // Good bytes again (a timeout under load is not a lie): back in the running.
            view.demoted = false;
        }
        view.ours_in_flight = view.ours_in_flight.saturating_sub(1);
        let name = view.name.clone();
        let (segment, at) = (t.segment, t.verified());
        let last = match &outcome {
            Outcome::Done => None,
            Outcome::NotThere => {
                // Not a fault: it does not hold this one (a peer, or a stale bitmap).
                if let Some(h) = view.holds.as_mut().and_then(|h| h.get_mut(segment as usize)) {
                    *h = false;
                }
                Some(format!("{name}: does not hold it"))
            }
            Outcome::Slow(why) => {
                tracing::debug!(source = %name, segment, %why, "slow source left mid-segment");
                self.actions.push_back(Action::Event(Event::Switched { index: segment, source: name.clone(), at, reason: why.clone() }));
                Some(format!("{name}: {why}"))
            }
            Outcome::Failed(e) => {
                tracing::warn!(source = %name, segment, error = %e, "source demoted");
                view.demoted = true;
                self.actions.push_back(Action::Event(Event::Demoted { source: name.clone(), reason: e.clone() }));
                Some(format!("{name}: {e}"))
            }
            Outcome::Lost => Some(format!("{name}: lost the race")),
        };
        let seg = &mut self.segments[segment as usize];
        let winner = seg.race.as_ref().and_then(|r| r.winner);
        let striped = seg.race.as_ref().is_some_and(|r| r.striped);
        // Racers on one range fetch copies: only the winner's are kept.
        let keeps = match t.kind {
            Kind::Racer if !striped => outcome != Outcome::Lost && winner == Some(t.source),
            _ => true,
        };
        if let Some(p) = seg.pieces.iter_mut().find(|p| p.start == t.piece) {
            p.transfers.retain(|&x| x != id);
            if let Some(l) = last {
                p.last = l;
            }
            if keeps && t.from == p.at() {
                let room = p.end.map_or(usize::MAX, |e| (e - p.at()) as usize);
                t.buf.truncate(room);
                p.data.append(&mut t.buf);
                if done {
                    p.by = Some(t.source);
                }
            }
        }
        if t.kind == Kind::Racer
            && let Some(race) = seg.race.as_mut()
        {
            race.running = race.running.saturating_sub(1);
            if !done && outcome != Outcome::Lost {
                race.failed.push(t.source);
            }
            self.settle(segment, now);
        }
        if self.raced == Some(segment) {
            // Its source may carry nothing of the raced segment now.
            self.issue_waiting(now);
        }
        self.advance(segment, now);
    }
}
