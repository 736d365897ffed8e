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
mod tests {
    use super::*;

    #[test]
    fn an_unanswered_end_game_request_moves_only_to_a_clearly_faster_source() {
        let kib = |k: u64| k * 1024;
        // The slowed node: 0.6 MB/s, 196 KiB of a tail asked 0.2 s ago; an idle
        // node at 4 MB/s would do it in ~0.1 s.
        assert!(should_leave_unanswered(0.2, kib(196), Some(600_000.0), Some(0.1)));
        // Just asked of a source as fast as the alternative: stays.
        assert!(!should_leave_unanswered(0.0, kib(196), Some(4_000_000.0), Some(0.1)));
        // A busy-but-fast source answering after 100 ms with 1 MiB to send,
        // no alternative better than 0.3 s: stays.
        assert!(!should_leave_unanswered(0.1, kib(1024), Some(4_000_000.0), Some(0.3)));
        // The longer the silence, the more it weighs.
        assert!(!should_leave_unanswered(0.05, kib(512), Some(4_000_000.0), Some(0.1)));
        assert!(should_leave_unanswered(0.5, kib(512), Some(4_000_000.0), Some(0.1)));
        // Too little left, no alternative, no estimate, nonsense: stays.
        assert!(!should_leave_unanswered(5.0, kib(16), Some(600_000.0), Some(0.01)));
        assert!(!should_leave_unanswered(5.0, kib(196), Some(600_000.0), None));
        assert!(!should_leave_unanswered(5.0, kib(196), None, Some(0.01)));
        assert!(!should_leave_unanswered(5.0, kib(196), Some(0.0), Some(0.01)));
        assert!(!should_leave_unanswered(f64::NAN, kib(196), Some(600_000.0), Some(0.01)));
        assert!(!should_leave_unanswered(5.0, kib(196), Some(f64::NAN), Some(0.01)));
    }

    #[test]
    fn a_source_left_for_slowness_is_estimated_at_what_it_delivered() {
        let now = Instant::now();
        let mut v = SourceView::new("n", true);
        v.record_interval(6_000_000, 1.0, now);
        // Four transfers shared it; one was left at 0.15 MB/s: 0.6 MB/s in all.
        v.record_slow(150_000.0, 4, now);
        assert_eq!(v.throughput, Some(600_000.0));
        // It never raises an estimate, and ignores nonsense.
        v.record_slow(5_000_000.0, 1, now);
        assert_eq!(v.throughput, Some(600_000.0));
        v.record_slow(f64::NAN, 1, now);
        v.record_slow(-1.0, 1, now);
        assert_eq!(v.throughput, Some(600_000.0));
        // A source never measured gets the rate it showed.
        let mut w = SourceView::new("m", true);
        w.record_slow(100_000.0, 0, now);
        assert_eq!(w.throughput, Some(100_000.0));
    }

    #[test]
    fn end_game_split_ends_both_sides_together() {
        let g = tranzcast_proto::outboard::GROUP_LEN;
        let len = (1 << 20) + 128;
        // 6 MB/s with the whole segment left, an idle 2 MB/s helper 1 ms away:
        // the helper takes about a quarter, on a group boundary, and the two
        // ends are within one group of each side of each other.
        let split = split_point(len, 0, 6e6, 2e6, 0.001).expect("worth sharing");
        assert_eq!(split % g, 0);
        let (mine, helper) = (split as f64 / 6e6, 0.001 + (len - split) as f64 / 2e6);
        assert!((mine - helper).abs() <= g as f64 / 2e6 + g as f64 / 6e6, "{mine} vs {helper}");
        assert!((0.70..0.78).contains(&(split as f64 / len as f64)), "{split}");
        // Equal rates, half done: the helper takes about half of the rest.
        let split = split_point(len, len / 2, 4e6, 4e6, 0.0).unwrap();
        assert!(split.abs_diff(len * 3 / 4) <= g, "{split}");
        // A faster helper takes more than half.
        assert!(split_point(len, 0, 1e6, 9e6, 0.0).unwrap() < len / 4);
    }

    #[test]
    fn no_split_when_it_saves_little_or_cannot_be_verified() {
        let g = tranzcast_proto::outboard::GROUP_LEN;
        let len = (1 << 20) + 128;
        // Almost done: less than two groups would be the helper's.
        assert_eq!(split_point(len, len - 3 * g, 6e6, 2e6, 0.0), None);
        // A helper whose round trip outlasts the rest: nothing to gain.
        assert_eq!(split_point(len, len / 2, 6e6, 2e6, 0.2), None);
        // A helper far slower than the transfer saves under the threshold.
        assert_eq!(split_point(len, len - 10 * g, 50e6, 0.5e6, 0.0), None);
        // Nonsense rates or a finished transfer.
        for (v, r, h) in [(0, 0.0, 1e6), (0, 1e6, 0.0), (0, f64::NAN, 1e6), (len, 1e6, 1e6), (len + 5, 1e6, 1e6)] {
            assert_eq!(split_point(len, v, r, h, 0.0), None);
        }
        // Every split is a group boundary strictly inside the rest.
        for v in (0..len).step_by(7919) {
            for (r, h) in [(6e6, 2e6), (2e6, 6e6), (1e5, 1e8)] {
                if let Some(s) = split_point(len, v, r, h, 0.001) {
                    assert!(s % g == 0 && s > v && len - s >= 2 * g, "{v} {r} {h} -> {s}");
                }
            }
        }
    }

    #[test]
    fn silence_is_judged_by_the_round_trip() {
        let ms = Duration::from_millis;
        assert_eq!(answer_timeout(Some(ms(1)), None), Duration::from_secs_f64(1.008));
        assert_eq!(answer_timeout(Some(ms(100)), None), Duration::from_secs_f64(1.8));
        assert_eq!(answer_timeout(None, None), Duration::from_secs_f64(1.8));
        assert_eq!(answer_timeout(Some(Duration::from_secs(2)), None), Duration::from_secs(5), "capped by the round trip");
        assert!(answer_timeout(Some(ms(30)), None) < timeout_for(0.01, false));
        // A source that answers in 5 ms keeps the round-trip rule; a busy one
        // answering in 900 ms gets 3.6 s; never more than 10 s.
        assert_eq!(answer_timeout(Some(ms(1)), Some(ms(5))), Duration::from_secs_f64(1.008));
        assert_eq!(answer_timeout(Some(ms(1)), Some(ms(900))), Duration::from_secs_f64(3.6));
        assert_eq!(answer_timeout(Some(ms(1)), Some(Duration::from_secs(9))), Duration::from_secs(10));
        let mut v = SourceView::new("e", true);
        v.record_answer(ms(100));
        v.record_answer(ms(200));
        assert_eq!(v.answer, Some(ms(130)), "smoothed like the throughput");
    }

    fn src(name: &str, rtt_ms: u64, mbps: f64) -> SourceView {
        let mut s = SourceView::new(name, true);
        s.rtt = Some(Duration::from_millis(rtt_ms));
        s.throughput = Some(mbps * 1e6);
        s
    }

    const SEG: u64 = 1 << 20;

    #[test]
    fn fastest_expected_completion_wins_not_lowest_rtt() {
        // Near but slow against far but fast: for 1 MiB the fast one wins,
        // for a tiny range the near one does.
        let sources = vec![src("near-slow", 1, 2.0), src("far-fast", 40, 100.0)];
        assert_eq!(sources[rank(&sources, 0, SEG)[0].index].name, "far-fast");
        assert_eq!(sources[rank(&sources, 0, 4096)[0].index].name, "near-slow");
    }

    #[test]
    fn load_and_our_own_requests_spread_the_work() {
        let mut sources = vec![src("a", 5, 50.0), src("b", 5, 50.0)];
        sources[0].ours_in_flight = 3;
        assert_eq!(sources[rank(&sources, 0, SEG)[0].index].name, "b");
        sources[0].ours_in_flight = 0;
        sources[1].capacity = Some(100e6);
        sources[1].reported_rate = 90e6; // 90% busy
        assert_eq!(sources[rank(&sources, 0, SEG)[0].index].name, "a");
        // Reported requests in flight weigh in when no capacity is known.
        let mut sources = vec![src("a", 5, 50.0), src("b", 5, 50.0)];
        sources[0].reported_in_flight = 500;
        assert_eq!(sources[rank(&sources, 0, SEG)[0].index].name, "b");
    }

    #[test]
    fn holding_the_segment_matters_and_peers_only_serve_what_they_hold() {
        let mut edge = src("edge", 5, 50.0);
        edge.holds = Some(vec![false, true]);
        let mut peer = src("peer", 5, 50.0);
        peer.fetches_misses = false;
        peer.holds = Some(vec![true, false]);
        let sources = vec![edge, peer];
        // Segment 0: the peer holds it, the edge would have to fetch it.
        assert_eq!(sources[rank(&sources, 0, SEG)[0].index].name, "peer");
        // Even when the edge holds it too, an equal peer is preferred (offload).
        let mut both = sources.clone();
        both[0].holds = Some(vec![true, true]);
        assert_eq!(both[rank(&both, 0, SEG)[0].index].name, "peer");
        // Segment 1: the peer cannot serve it at all.
        let r = rank(&sources, 1, SEG);
        assert_eq!(r.len(), 1);
        assert_eq!(sources[r[0].index].name, "edge");
        // Beyond the bitmap: not held.
        assert_eq!(rank(&sources, 9, SEG).len(), 1);
        // A peer whose holdings are unknown is not asked.
        let mut quiet = SourceView::new("quiet-peer", false);
        quiet.rtt = Some(Duration::from_millis(1));
        assert!(quiet.expected_secs(0, SEG).is_none());
    }

    #[test]
    fn demoted_and_unhealthy_sources_are_last_resorts() {
        let mut sources = vec![src("liar", 1, 500.0), src("sick", 1, 500.0), src("ok", 30, 10.0)];
        sources[0].demoted = true;
        sources[1].healthy = false;
        let r = rank(&sources, 0, SEG);
        assert_eq!(sources[r[0].index].name, "ok");
        assert_eq!(r.len(), 3, "still usable when nothing else is");
    }

    #[test]
    fn throughput_estimate_follows_fetches_and_ties_are_deterministic() {
        let mut s = SourceView::new("x", true);
        s.rtt = Some(Duration::from_millis(10));
        s.record_fetch(10_000_000, Duration::from_millis(110), 1, Instant::now()); // 100 MB/s net of the rtt
        assert!((s.throughput.unwrap() - 100e6).abs() < 1e6, "{:?}", s.throughput);
        s.record_fetch(1_000_000, Duration::from_millis(110), 1, Instant::now()); // 10 MB/s
        let t = s.throughput.unwrap();
        assert!(t < 100e6 && t > 10e6, "the estimate moves towards new samples: {t}");
        // Four of our requests shared the source: it delivered four times that.
        let mut shared = SourceView::new("y", true);
        shared.record_fetch(1_000_000, Duration::from_millis(100), 4, Instant::now());
        assert!((shared.throughput.unwrap() - 40e6).abs() < 1e6, "{:?}", shared.throughput);
        s.record_fetch(0, Duration::ZERO, 0, Instant::now());
        assert!(s.throughput.unwrap().is_finite());
        let sources = vec![src("b", 5, 50.0), src("a", 5, 50.0)];
        assert_eq!(sources[rank(&sources, 0, SEG)[0].index].name, "a");
        assert!(rank(&[], 0, SEG).is_empty());
    }

    #[test]
    fn a_stale_estimate_of_an_unused_source_is_forgotten() {
        let t0 = Instant::now();
        let mut s = SourceView::new("x", true);
        s.record_fetch(100_000, Duration::from_secs(1), 1, t0);
        s.forget_stale(t0 + Duration::from_millis(500), Duration::from_secs(1));
        assert!(s.throughput.is_some(), "fresh");
        s.ours_in_flight = 1;
        s.forget_stale(t0 + Duration::from_secs(5), Duration::from_secs(1));
        assert!(s.throughput.is_some(), "in use: its next sample will update it");
        s.ours_in_flight = 0;
        s.forget_stale(t0 + Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(s.throughput, None, "stale and unused: tried again");
        // ... with one request: a second waits for the first to measure it.
        let one = s.expected_secs(0, SEG).unwrap();
        s.ours_in_flight = 1;
        assert!(s.expected_secs(0, SEG).unwrap() > 5.0 * one);
    }

    #[test]
    fn a_slow_transfer_moves_only_for_a_clear_gain() {
        // Planned at 5 MB/s, running at 0.5: 1 MB left takes 2 s against an
        // alternative doing it in 0.2 s: move.
        assert!(should_switch(0.5e6, 5e6, 1_000_000, Some(0.2), false));
        // Against one that needs 1.5 s: stay (not twice as fast).
        assert!(!should_switch(0.5e6, 5e6, 1_000_000, Some(1.5), false));
        // Running as planned (a slow source doing what it always does): stay,
        // unless in the end-game, where idle fast sources take over.
        assert!(!should_switch(0.5e6, 0.6e6, 1_000_000, Some(0.2), false));
        assert!(should_switch(0.5e6, 0.6e6, 1_000_000, Some(0.2), true));
        // No alternative, or too little left: stay.
        assert!(!should_switch(0.5e6, 5e6, 1_000_000, None, true));
        assert!(!should_switch(1.0, 5e6, 20_000, Some(0.0), true));
        // Twice as fast but the gain is a few milliseconds: stay.
        assert!(!should_switch(100e6, 1e9, 100_000, Some(0.0001), true));
        // A stalled transfer (rate near zero) moves to anything.
        assert!(should_switch(0.0, 1e6, 1_000_000, Some(5.0), false));
    }

    #[test]
    fn an_idle_source_gets_work_unless_it_is_far_too_slow() {
        // Two busy fast sources and an idle one at a tenth of their speed.
        let mut v = vec![src("fast", 1, 40.0), src("fast2", 1, 40.0), src("slowed", 1, 4.0)];
        v[0].ours_in_flight = 3;
        v[1].ours_in_flight = 3;
        let r = rank(&v, 0, SEG);
        assert_ne!(r[0].index, 2, "the slowed one is not the best: {r:?}");
        let pick = prefer_idle(&v, &r);
        assert_eq!(r[pick].index, 2, "{r:?}");
        // Far too slow (a fortieth): the best it is.
        v[2].throughput = Some(1e6);
        let r = rank(&v, 0, SEG);
        assert_eq!(prefer_idle(&v, &r), 0);
        // Demoted, unhealthy, or never measured: not given work this way.
        v[2].throughput = Some(4e6);
        for spoil in
            [|s: &mut SourceView| s.demoted = true, |s: &mut SourceView| s.healthy = false, |s: &mut SourceView| s.throughput = None]
        {
            let mut w = v.clone();
            spoil(&mut w[2]);
            let r = rank(&w, 0, SEG);
            assert_eq!(r[prefer_idle(&w, &r)].index, r[0].index, "{w:?}");
        }
        // The best is idle already: the best it is.
        v[0].ours_in_flight = 0;
        let r = rank(&v, 0, SEG);
        assert_eq!(prefer_idle(&v, &r), 0);
        assert_eq!(prefer_idle(&v, &[]), 0);
    }

    #[test]
    fn a_seed_ranks_until_a_real_sample_replaces_it() {
        let now = Instant::now();
        let mut s = SourceView::new("a", true);
        // 180 KB in 40 ms (mostly a link's burst): ranks the source...
        s.seed(180_000, 0.040, now);
        assert_eq!(s.throughput, Some(4.5e6));
        assert_eq!(s.measured(), None);
        // ... and the meter's first interval replaces it, not blends with it.
        s.record_interval(400_000, 0.2, now);
        assert_eq!(s.throughput, Some(2e6));
        assert_eq!(s.measured(), Some(2e6));
        // A seed never overrides a measurement.
        s.seed(1_000_000, 0.01, now);
        assert_eq!(s.measured(), Some(2e6));
        // A transfer's own sample replaces a seed too; so does a slow verdict.
        let mut f = SourceView::new("f", true);
        f.seed(180_000, 0.040, now);
        f.record_fetch(1_000_000, Duration::from_millis(500), 1, now);
        assert_eq!(f.measured(), Some(2e6));
        let mut g = SourceView::new("g", true);
        g.seed(180_000, 0.040, now);
        g.record_slow(0.5e6, 2, now);
        assert_eq!(g.measured(), Some(1e6));
    }

    #[test]
    fn a_plan_is_shared_with_our_later_requests_at_the_same_source() {
        // Chosen alone at 4 MB/s; a second request of ours started there
        // since: the link is shared, 2 MB/s is the plan now, and running at
        // 1.1 MB/s is not "slowed down" (it was, against the plan made alone).
        let planned = planned_share(4e6, 1, 2);
        assert!((planned - 2e6).abs() < 1.0, "{planned}");
        assert!(should_switch(1.1e6, 4e6, 1_000_000, Some(0.1), false));
        assert!(!should_switch(1.1e6, planned, 1_000_000, Some(0.1), false));
        // Chosen as one of three, now one of two: the plan is not raised.
        assert_eq!(planned_share(1e6, 3, 2), 1e6);
        assert_eq!(planned_share(1e6, 3, 3), 1e6);
        // A count of zero (the view lost track) counts as the transfer alone.
        assert_eq!(planned_share(1e6, 0, 0), 1e6);
        // A stall is still a slowdown, however many share the source.
        assert!(should_switch(0.0, planned_share(4e6, 1, 8), 1_000_000, Some(0.1), false));
    }

    #[test]
    fn the_first_race_is_wider_while_nothing_is_measured() {
        let fresh = vec![SourceView::new("a", true), SourceView::new("b", true), SourceView::new("c", true)];
        assert_eq!(race_width(&fresh, &rank(&fresh, 0, SEG)), 3);
        let measured = vec![src("a", 1, 10.0), src("b", 1, 20.0), src("c", 1, 30.0)];
        assert_eq!(race_width(&measured, &rank(&measured, 0, SEG)), 2);
        assert_eq!(race_width(&fresh[..1], &rank(&fresh[..1], 0, SEG)), 1);
        assert_eq!(race_width(&fresh[..2], &rank(&fresh[..2], 0, SEG)), 2);
    }

    #[test]
    fn timeouts_scale_with_the_expectation_within_bounds() {
        assert_eq!(timeout_for(0.001, true), Duration::from_secs(1));
        assert_eq!(timeout_for(2.0, true), Duration::from_secs(6));
        assert_eq!(timeout_for(100.0, true), Duration::from_secs(30));
        assert_eq!(timeout_for(0.001, false), Duration::from_secs(10), "an unmeasured source's expectation is a guess");
    }
}
