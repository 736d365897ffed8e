//! Choosing a source per segment (pure): the patent's load balancing by
//! pulse (Figs. 2 and 16), as expected completion time.
//!
//! For each source the client keeps what its pulses and its own fetches
//! taught it: round trip, a throughput estimate (EWMA of what fetches from it
//! achieved), the load it reports (requests in flight there, its capacity and
//! current rate), which segments it holds, how many of our own requests are
//! outstanding there, and whether it is demoted. The expected time to fetch
//! `n` bytes from it is
//!
//! ```text
//! rtt + n / share           share = throughput / (1 + ours in flight there)
//!                                   x (1 - utilisation), at least 5% of it
//! ```
//!
//! plus, for a source that does not hold the segment (an edge that will
//! fetch it from its parent), one more round trip and a miss penalty; a
//! peer's time counts half (offload: what a peer serves, the CDN does not),
//! and a peer is only asked for segments its pulse says it holds. Demoted
//! sources and sources whose pulse failed are not chosen while any other
//! source can serve. The smallest expected time wins; ties go to the source
//! with fewer of our requests outstanding, then by name, so the choice is
//! deterministic and testable.

use std::time::{Duration, Instant};

/// Throughput assumed for a source before any fetch from it (bytes/s): a
/// modest figure, so an unmeasured source is tried but not preferred over a
/// proven fast one.
pub const DEFAULT_THROUGHPUT: f64 = 20e6;

/// Factor on a peer's expected time: peers win ties and near-ties.
pub const PEER_PREFERENCE: f64 = 0.5;

/// Weight of the newest sample in the throughput EWMA.
const EWMA_ALPHA: f64 = 0.3;

/// What the client knows of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceView {
    /// Name (unique among sources).
    pub name: String,
    /// Last measured round trip (pulse), if any.
    pub rtt: Option<Duration>,
    /// Throughput estimate from our own fetches, bytes/s.
    pub throughput: Option<f64>,
    /// Requests in flight at the source, as its pulse reported.
    pub reported_in_flight: u64,
    /// The source's outgoing rate now (bytes/s), as its pulse reported.
    pub reported_rate: f64,
    /// Capacity (bytes/s) if the source has a limit.
    pub capacity: Option<f64>,
    /// Our requests outstanding at this source.
    pub ours_in_flight: u32,
    /// Whether the last pulse answered with health "ok".
    pub healthy: bool,
    /// Demoted (lied, failed or stalled recently): used only as a last resort.
    pub demoted: bool,
    /// Which segments it holds (bit i = segment i); None: unknown (treated as
    /// "can fetch it": edges and nodes fetch misses upstream).
    pub holds: Option<Vec<bool>>,
    /// Whether the source can fetch what it lacks (edges, nodes) or only
    /// serves what it holds (peers).
    pub fetches_misses: bool,
    /// When the throughput estimate last learned from a fetch.
    pub sampled_at: Option<Instant>,
    /// Whether the estimate is a first guess from a few tens of
    /// milliseconds (a race's): good enough to rank by, not to judge a
    /// transfer by; the next real sample replaces it.
    pub provisional: bool,
    /// Bytes received from it so far (all our requests together).
    pub received: u64,
    /// How long it takes to answer (response headers), smoothed over our
    /// requests: under load a busy source answers late without being gone.
    pub answer: Option<Duration>,
}

impl SourceView {
    /// A source not yet pulsed.
    pub fn new(name: impl Into<String>, fetches_misses: bool) -> Self {
        Self {
            name: name.into(),
            rtt: None,
            throughput: None,
            reported_in_flight: 0,
            reported_rate: 0.0,
            capacity: None,
            ours_in_flight: 0,
            healthy: true,
            demoted: false,
            holds: None,
            fetches_misses,
            sampled_at: None,
            provisional: false,
            received: 0,
            answer: None,
        }
    }

    /// One of our requests was answered after `d`.
    pub fn record_answer(&mut self, d: Duration) {
        self.answer = Some(match self.answer {
            Some(a) => a.mul_f64(1.0 - EWMA_ALPHA) + d.mul_f64(EWMA_ALPHA),
            None => d,
        });
    }

    /// Records what the source delivered to all our requests together over
    /// an interval in which it was busy with them the whole time: its
    /// throughput, measured directly (no guess at how requests shared it).
    pub fn record_interval(&mut self, bytes: u64, secs: f64, now: Instant) {
        let sample = bytes as f64 / secs.max(1e-3);
        self.sampled_at = Some(now);
        self.throughput = Some(match self.throughput {
            Some(t) if !self.provisional => t * (1.0 - EWMA_ALPHA) + sample * EWMA_ALPHA,
            _ => sample,
        });
        self.provisional = false;
    }

    /// A first guess at an unmeasured source's throughput (`bytes` over
    /// `secs`, too short to trust: a link's burst may be most of it): it
    /// ranks the source until a real sample replaces it. A source already
    /// measured keeps its estimate.
    pub fn seed(&mut self, bytes: u64, secs: f64, now: Instant) {
        if self.throughput.is_none() {
            self.throughput = Some(bytes as f64 / secs.max(1e-3));
            self.sampled_at = Some(now);
            self.provisional = true;
        }
    }

    /// The estimate, if it is a measurement (not a first guess).
    pub fn measured(&self) -> Option<f64> {
        self.throughput.filter(|_| !self.provisional)
    }

    /// A transfer at this source was left for running slow at `rate`
    /// bytes/s while `sharing` of our requests were outstanding there: the
    /// source delivers no more than they got together, whatever it did before
    /// (a link that dropped to a tenth must not keep drawing work, least of
    /// all the tails of the segments just moved off it).
    pub fn record_slow(&mut self, rate: f64, sharing: u32, now: Instant) {
        if !(rate.is_finite() && rate >= 0.0) {
            return;
        }
        let at_most = rate * f64::from(sharing.max(1));
        self.sampled_at = Some(now);
        self.throughput = Some(self.measured().map_or(at_most, |t| t.min(at_most)));
        self.provisional = false;
    }

    /// Forgets a throughput estimate older than `max_age` on a source we
    /// are not using: a source starved by one bad sample (a slow moment, a
    /// lost race) is tried again instead of being shunned for good.
    pub fn forget_stale(&mut self, now: Instant, max_age: Duration) {
        if self.ours_in_flight == 0 && self.sampled_at.is_some_and(|t| now.saturating_duration_since(t) > max_age) {
            self.throughput = None;
            self.sampled_at = None;
            self.provisional = false;
        }
    }

    /// Whether it holds `segment` (None: unknown).
    pub fn holds(&self, segment: usize) -> Option<bool> {
        self.holds.as_ref().map(|h| h.get(segment).copied().unwrap_or(false))
    }

    /// Records a fetch of `bytes` that took `elapsed` (one round trip plus
    /// first to last byte) while `sharing` of our requests (this one
    /// included) were outstanding at the source: the source's throughput is
    /// what they got together.
    pub fn record_fetch(&mut self, bytes: u64, elapsed: Duration, sharing: u32, now: Instant) {
        self.sampled_at = Some(now);
        let secs = elapsed.as_secs_f64().max(1e-4);
        // Throughput net of one round trip, which every request pays anyway.
        let rtt = self.rtt.map_or(0.0, |r| r.as_secs_f64());
        let sample = bytes as f64 / (secs - rtt).max(secs * 0.1) * f64::from(sharing.max(1));
        self.throughput = Some(match self.measured() {
            Some(t) => t * (1.0 - EWMA_ALPHA) + sample * EWMA_ALPHA,
            None => sample,
        });
        self.provisional = false;
    }

    /// Expected seconds to fetch `bytes` of `segment` from this source, or
    /// None if it cannot serve it at all (a peer without the segment).
    pub fn expected_secs(&self, segment: usize, bytes: u64) -> Option<f64> {
        let held = self.holds(segment);
        // A peer serves only what it holds, and says so in its pulse.
        if held != Some(true) && !self.fetches_misses {
            return None;
        }
        let rtt = self.rtt.map_or(0.05, |r| r.as_secs_f64());
        // An unmeasured source gets one request at a time until a fetch
        // measures it: a guess must not draw a pile of requests.
        let throughput = match self.throughput {
            Some(t) => t,
            None if self.ours_in_flight > 0 => DEFAULT_THROUGHPUT / 10.0,
            None => DEFAULT_THROUGHPUT,
        };
        let utilisation = match self.capacity {
            Some(c) if c > 0.0 => (self.reported_rate / c).clamp(0.0, 0.95),
            // No capacity reported: each request in flight there costs a little.
            _ => (self.reported_in_flight as f64 / (self.reported_in_flight as f64 + 64.0)).min(0.95),
        };
        let share = throughput / (1.0 + f64::from(self.ours_in_flight)) * (1.0 - utilisation);
        let mut secs = rtt + bytes as f64 / share.max(throughput * 0.05);
        if held == Some(false) {
            // It fetches from its parent first: another round trip or two.
            secs += 2.0 * rtt + 0.01;
        }
        if !self.fetches_misses {
            // A peer holding the segment is preferred unless clearly slower:
            // every byte it serves is a byte the CDN does not (Fig. 3).
            secs *= PEER_PREFERENCE;
        }
        Some(secs)
    }
}

/// A source ranked for a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Index into the slice given to [`rank`].
    pub index: usize,
    /// Expected seconds.
    pub expected_secs: f64,
}

/// Sources able to serve `segment` (`bytes` long), best first: healthy and
/// not demoted ones by expected time, then the rest by expected time.
pub fn rank(sources: &[SourceView], segment: usize, bytes: u64) -> Vec<Ranked> {
    let mut out: Vec<(bool, Ranked)> = sources
        .iter()
        .enumerate()
        .filter_map(|(index, s)| {
            s.expected_secs(segment, bytes).map(|expected_secs| (s.demoted || !s.healthy, Ranked { index, expected_secs }))
        })
        .collect();
    out.sort_by(|(a_bad, a), (b_bad, b)| {
        a_bad
            .cmp(b_bad)
            .then(a.expected_secs.total_cmp(&b.expected_secs))
            .then(sources[a.index].ours_in_flight.cmp(&sources[b.index].ours_in_flight))
            .then(sources[a.index].name.cmp(&sources[b.index].name))
    });
    out.into_iter().map(|(_, r)| r).collect()
}

/// A transfer is left for another source only if that one is expected to
/// finish the rest this many times sooner...
pub const SWITCH_FACTOR: f64 = 2.0;

/// ... and only if that saves at least this long (no churn for small gains).
pub const SWITCH_MIN_GAIN_SECS: f64 = 0.05;

/// A transfer has "slowed down" when it runs this many times slower than
/// the rate expected when its source was chosen.
pub const SLOWDOWN_FACTOR: f64 = 3.0;

/// The rate a transfer can be held to now: it was chosen at `planned_rate`
/// when `sharing_at_choice` of our requests (itself included) shared its
/// source, and `sharing_now` do. Requests started there since take their
/// shares of the same link, so the plan is lowered in proportion (a
/// transfer slowed by our own later requests has not "slowed down"); it is
/// never raised when others end (a transfer's rate is its average since its
/// first byte, and would lag behind such a raise).
pub fn planned_share(planned_rate: f64, sharing_at_choice: u32, sharing_now: u32) -> f64 {
    let at_choice = f64::from(sharing_at_choice.max(1));
    planned_rate * at_choice / f64::from(sharing_now).max(at_choice)
}

/// Mid-segment: whether to leave a source whose transfer achieves `rate`
/// bytes/s (`planned_rate` was expected when it was chosen) with
/// `remaining` bytes still to come, when the best other source is expected
/// to fetch them in `alternative_secs` (None: no alternative).
///
/// Only a transfer that slowed down is left (a source that fell behind its
/// own record: overloaded, throttled, failing), so steady sharing does not
/// churn; in the end-game (nothing left to start, idle sources waiting) any
/// transfer may be moved to a clearly faster source. Below two verified
/// groups left, moving costs more than it saves.
pub fn should_switch(rate: f64, planned_rate: f64, remaining: u64, alternative_secs: Option<f64>, endgame: bool) -> bool {
    let Some(alternative) = alternative_secs else { return false };
    if remaining < 2 * tranzcast_proto::outboard::GROUP_LEN {
        return false;
    }
    let slowed = rate * SLOWDOWN_FACTOR < planned_rate;
    let mine = remaining as f64 / rate.max(1.0);
    (slowed || endgame) && mine > SWITCH_FACTOR * alternative && mine - alternative > SWITCH_MIN_GAIN_SECS
}

/// End-game, before the first byte: whether to leave a source that has not
/// answered a request for `remaining` bytes after `waited_secs`, given its
/// throughput `estimate` (bytes/s) and the best other source's expected
/// seconds for the same bytes. A link's queue (a slowed source still
/// carrying bytes of requests moved off it) delays an answer by as long as
/// it takes to drain, which nothing measures until the answer comes; so the
/// wait already seen is taken as the wait still ahead (a queue that has
/// held a request this long holds it about as long again), and the rest is
/// judged like a running transfer in the end-game ([`should_switch`]).
pub fn should_leave_unanswered(waited_secs: f64, remaining: u64, estimate: Option<f64>, alternative_secs: Option<f64>) -> bool {
    let (Some(estimate), Some(alternative)) = (estimate, alternative_secs) else { return false };
    // (A NaN estimate or wait counts as none.)
    if remaining < 2 * tranzcast_proto::outboard::GROUP_LEN || estimate.is_nan() || estimate <= 0.0 || !waited_secs.is_finite() {
        return false;
    }
    let mine = waited_secs.max(0.0) + remaining as f64 / estimate;
    mine > SWITCH_FACTOR * alternative && mine - alternative > SWITCH_MIN_GAIN_SECS
}

/// An idle source is given a segment not needed soon even when it is not
/// the fastest choice, if it is expected to take at most this many times as
/// long as the best.
pub const IDLE_FACTOR: f64 = 4.0;

/// Which of `ranked` (best first) to ask for a segment not needed soon: the
/// best, unless it is busy with our requests and a measured, healthy source
/// with none of ours is within [`IDLE_FACTOR`] of it. Every link that can
/// carry something then carries something: a source that slowed down (or
/// whose estimate fell while its link drained bytes of requests we moved
/// off it) keeps delivering what it can, instead of sitting idle until its
/// low estimate is forgotten. Returns a position in `ranked`.
pub fn prefer_idle(sources: &[SourceView], ranked: &[Ranked]) -> usize {
    let Some(best) = ranked.first() else { return 0 };
    if sources[best.index].ours_in_flight == 0 {
        return 0;
    }
    ranked
        .iter()
        .position(|r| {
            let s = &sources[r.index];
            s.ours_in_flight == 0
                && s.healthy
                && !s.demoted
                && s.throughput.is_some_and(|t| t > 0.0)
                && r.expected_secs <= IDLE_FACTOR * best.expected_secs
        })
        .unwrap_or(0)
}

/// How many sources the segment playback waits on is asked of at once: the
/// two best, or the three best while none of them has been measured (the
/// first segment of a session: round trips alone do not tell a fast source
/// from a slow one, and starting on a slow one is the worst start).
pub fn race_width(sources: &[SourceView], ranked: &[Ranked]) -> usize {
    let top = &ranked[..ranked.len().min(3)];
    if top.len() == 3 && top.iter().all(|r| sources[r.index].throughput.is_none()) { 3 } else { top.len().min(2) }
}

/// How long to give a fetch expected to take `expected_secs` before it is
/// abandoned for another source: three times the expectation, at least a
/// second (one slow round trip must not fail a good source), at most 30 s.
/// A source never measured gets at least 10 s: its expectation is a guess.
pub fn timeout_for(expected_secs: f64, measured: bool) -> Duration {
    let floor = if measured { 1.0 } else { 10.0 };
    Duration::from_secs_f64((expected_secs * 3.0).clamp(floor, 30.0))
}

/// How long a source may take to answer at all (response headers): a source
/// that says nothing for this long is taken as gone (hung, cut off) and the
/// segment is asked elsewhere, long before the transfer's own timeout. From
/// its round trip (1 s plus eight round trips: room for queueing and an
/// edge's miss to its parent) and, like TCP's retransmission timer, from how
/// long it has been taking to answer (four times that): a busy source that
/// answers late is not given up on (giving up would add load where there
/// is too much already), a silent one is. At most 10 s.
pub fn answer_timeout(rtt: Option<Duration>, answer: Option<Duration>) -> Duration {
    let rtt = rtt.map_or(0.1, |r| r.as_secs_f64());
    let by_answers = answer.map_or(0.0, |a| 4.0 * a.as_secs_f64());
    Duration::from_secs_f64((1.0 + 8.0 * rtt).min(5.0).max(by_answers).min(10.0))
}

/// An end-game split is made only if it brings the segment's end this much sooner.
pub const SPLIT_MIN_GAIN_SECS: f64 = 0.02;

/// End-game work sharing: a transfer has verified `verified` of a blob of
/// `len` bytes at `rate` bytes/s and another source, idle, would fetch at
/// `helper_rate` after a round trip of `helper_rtt` seconds. Where to split
/// the rest so both end together: the transfer stops at the returned
/// offset (a group boundary: the tail is verified on its own) and the
/// helper fetches from there to the end. None when the rest is too short
/// to share (under two groups for the helper) or sharing saves too little.
///
/// With `r` left, the helper's share `x` solves `(r - x) / rate = rtt + x / helper_rate`.
pub fn split_point(len: u64, verified: u64, rate: f64, helper_rate: f64, helper_rtt: f64) -> Option<u64> {
    let group = tranzcast_proto::outboard::GROUP_LEN;
    if !(rate > 0.0 && helper_rate > 0.0) || verified >= len {
        return None;
    }
    let rest = (len - verified) as f64;
    let share = (rest - helper_rtt * rate) * helper_rate / (rate + helper_rate);
    if share < (2 * group) as f64 {
        return None;
    }
    // The split on a group boundary at or after the ideal point: the
    // helper's share rounds down, never below two groups.
    let split = (len - share as u64).div_ceil(group) * group;
    if split >= len || len - split < 2 * group || split <= verified {
        return None;
    }
    let alone = rest / rate;
    let shared = ((split - verified) as f64 / rate).max(helper_rtt + (len - split) as f64 / helper_rate);
    (alone - shared >= SPLIT_MIN_GAIN_SECS).then_some(split)
}

#[cfg(test)]
mod tests;
