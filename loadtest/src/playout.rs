//! A player's buffer and playhead (pure): given when segments arrive, when
//! playback starts, where it stalls, what a seek costs. Times are durations
//! since the viewer pressed play; the caller feeds arrivals ([`Player::ready`])
//! and the clock ([`Player::tick`] at [`Player::deadline`]) and fetches what
//! [`Player::want`] names.
//!
//! The model is the usual one of players: playback starts as soon as the
//! first segment is in hand (start early); the player keeps at most
//! `buffer` segments ahead of the playhead; a segment plays for its media
//! duration divided by the speed; when the playhead reaches a segment not in
//! hand, playback stalls until it arrives (a rebuffering event); a seek
//! drops the buffer and waits for the target segment (counted apart from
//! stalls, as players and QoE studies do).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::demand::Seek;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Starting,
    Playing { ends_at: Duration },
    Stalled { since: Duration },
    Seeking { since: Duration },
    Done,
}

/// One stall: playback stopped at `at` for `len`, waiting for `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// When it began (since the viewer pressed play).
    pub at: Duration,
    /// How long.
    pub len: Duration,
    /// The segment waited for.
    pub segment: u64,
}

/// The player.
#[derive(Debug, Clone)]
pub struct Player {
    segment_wall: Duration,
    buffer: u64,
    segments: u64,
    watch_left: u64,
    seek: Option<Seek>,
    played: u64,
    pos: u64,
    next_fetch: u64,
    ready: BTreeSet<u64>,
    state: State,
    seek_now: bool,
    /// When playback started (the first segment was in hand).
    pub startup: Option<Duration>,
    /// Stalls after startup (not seek waits).
    pub stalls: Vec<Stall>,
    /// The wait after each seek.
    pub seek_waits: Vec<Duration>,
    /// Time spent playing.
    pub play_time: Duration,
}

impl Player {
    /// A player for a title of `segments` segments, starting at segment 0,
    /// that stops after `watch` segments played (and seeks once if `seek`).
    pub fn new(segments: u64, watch: u64, seek: Option<Seek>, segment_wall: Duration, buffer: u64) -> Self {
        Self {
            segment_wall,
            buffer: buffer.max(1),
            segments,
            watch_left: watch.min(segments).max(1),
            seek,
            played: 0,
            pos: 0,
            next_fetch: 0,
            ready: BTreeSet::new(),
            state: if segments == 0 { State::Done } else { State::Starting },
            seek_now: false,
            startup: None,
            stalls: Vec::new(),
            seek_waits: Vec::new(),
            play_time: Duration::ZERO,
        }
    }

    /// The next segment to fetch, if the buffer has room.
    pub fn want(&mut self) -> Option<u64> {
        if self.state == State::Done {
            return None;
        }
        let end = self.segments.min(self.pos + self.watch_left);
        while self.next_fetch < end && self.next_fetch < self.pos + self.buffer {
            let i = self.next_fetch;
            self.next_fetch += 1;
            if !self.ready.contains(&i) {
                return Some(i);
            }
        }
        None
    }

    /// Segment `i` is in hand at `now`.
    pub fn ready(&mut self, i: u64, now: Duration) {
        if i < self.pos || self.state == State::Done {
            return;
        }
        self.ready.insert(i);
        if i != self.pos {
            return;
        }
        match self.state {
            State::Starting => self.startup = Some(now),
            State::Stalled { since } => self.stalls.push(Stall { at: since, len: now.saturating_sub(since), segment: i }),
            State::Seeking { since } => self.seek_waits.push(now.saturating_sub(since)),
            State::Playing { .. } | State::Done => return,
        }
        self.state = State::Playing { ends_at: now + self.segment_wall };
    }

    /// When [`Player::tick`] must be called next (while playing).
    pub fn deadline(&self) -> Option<Duration> {
        match self.state {
            State::Playing { ends_at } => Some(ends_at),
            _ => None,
        }
    }

    /// Advances the playhead to `now`.
    pub fn tick(&mut self, now: Duration) {
        while let State::Playing { ends_at } = self.state {
            if now < ends_at {
                return;
            }
            self.play_time += self.segment_wall;
            self.played += 1;
            self.watch_left -= 1;
            self.ready.remove(&self.pos);
            if self.watch_left == 0 || self.pos + 1 >= self.segments {
                self.state = State::Done;
                return;
            }
            if let Some(s) = self.seek.filter(|s| s.after == self.played) {
                self.seek = None;
                self.seek_now = true;
                self.pos = s.to.min(self.segments - 1);
                self.next_fetch = self.pos;
                self.ready.clear();
                self.state = State::Seeking { since: ends_at };
                return;
            }
            self.pos += 1;
            self.state = if self.ready.contains(&self.pos) {
                // From the end of the last segment, not from `now`: no drift.
                State::Playing { ends_at: ends_at + self.segment_wall }
            } else {
                State::Stalled { since: ends_at }
            };
        }
    }

    /// True once after a seek: fetches in flight are for the old position
    /// and can be dropped.
    pub fn take_seek(&mut self) -> bool {
        std::mem::take(&mut self.seek_now)
    }

    /// Whether the viewing is over.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Segments played.
    pub fn played(&self) -> u64 {
        self.played
    }

    /// Whether the player waits for a segment after startup (stalled now).
    pub fn stalled(&self) -> bool {
        matches!(self.state, State::Stalled { .. })
    }

    /// Total stall time.
    pub fn stall_time(&self) -> Duration {
        self.stalls.iter().map(|s| s.len).sum()
    }

    /// Stall time over stall plus play time (0 when nothing played).
    pub fn rebuffer_ratio(&self) -> f64 {
        let stall = self.stall_time().as_secs_f64();
        let total = stall + self.play_time.as_secs_f64();
        if total > 0.0 { stall / total } else { 0.0 }
    }
}

/// A viewer's access link (pure): one transfer at a time at `bits_per_s`,
/// plus a round trip per request. [`AccessLink::deliver`] says how long after
/// the bytes reached the viewer's machine the player has them.
#[derive(Debug, Clone)]
pub struct AccessLink {
    bits_per_s: f64,
    rtt: Duration,
    /// When the link is free again (since the viewer pressed play).
    free_at: Duration,
}

impl AccessLink {
    /// A link of `mbps` Mbit/s (0: infinitely fast) with round trip `rtt`.
    pub fn new(mbps: f64, rtt: Duration) -> Self {
        Self { bits_per_s: mbps * 1e6, rtt, free_at: Duration::ZERO }
    }

    /// `bytes` that arrived at `now` were asked at `asked`: when the player
    /// has them. The link carries them after whatever it carries already;
    /// the round trip runs from the ask, not from the queue.
    pub fn deliver(&mut self, asked: Duration, now: Duration, bytes: u64) -> Duration {
        let carry = if self.bits_per_s > 0.0 { Duration::from_secs_f64(bytes as f64 * 8.0 / self.bits_per_s) } else { Duration::ZERO };
        let start = self.free_at.max(asked + self.rtt / 2);
        self.free_at = start + carry;
        (self.free_at + self.rtt / 2).max(now)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn wants(p: &mut Player) -> Vec<u64> {
        std::iter::from_fn(|| p.want()).collect()
    }

    #[test]
    fn the_access_link_carries_one_transfer_at_a_time() {
        // 8 Mbit/s, 20 ms round trip: 1 MB takes 1 s on the wire.
        let mut l = AccessLink::new(8.0, ms(20));
        assert_eq!(l.deliver(ms(0), ms(5), 1_000_000), ms(1020));
        // Asked at the same time, it waits for the first to clear the link.
        assert_eq!(l.deliver(ms(0), ms(6), 500_000), ms(1520));
        // Later, on an idle link: its own round trip and wire time.
        assert_eq!(l.deliver(ms(3000), ms(3001), 100_000), ms(3120));
        // A fast machine cannot hand over bytes before they arrived.
        let mut free = AccessLink::new(0.0, Duration::ZERO);
        assert_eq!(free.deliver(ms(10), ms(12), 1 << 30), ms(12));
    }

    #[test]
    fn starts_on_the_first_segment_and_keeps_the_buffer_bounded() {
        let mut p = Player::new(10, 10, None, ms(1000), 3);
        assert_eq!(wants(&mut p), vec![0, 1, 2], "three ahead, no more");
        p.ready(1, ms(50));
        assert_eq!(p.startup, None, "segment 1 alone does not start playback");
        p.ready(0, ms(80));
        assert_eq!(p.startup, Some(ms(80)));
        assert_eq!(p.deadline(), Some(ms(1080)));
        assert!(wants(&mut p).is_empty());
        p.ready(2, ms(90));
        p.tick(ms(1080));
        assert_eq!(wants(&mut p), vec![3], "the buffer moved with the playhead");
        p.tick(ms(2080));
        assert_eq!(p.played(), 2);
        assert!(p.stalls.is_empty());
        assert_eq!(p.deadline(), Some(ms(3080)));
    }

    #[test]
    fn a_late_segment_is_a_stall_of_the_right_length() {
        let mut p = Player::new(3, 3, None, ms(1000), 4);
        assert_eq!(wants(&mut p), vec![0, 1, 2]);
        p.ready(0, ms(100));
        p.ready(2, ms(200));
        p.tick(ms(1100));
        assert!(p.stalled() && p.deadline().is_none());
        p.ready(1, ms(1600));
        assert_eq!(p.stalls, vec![Stall { at: ms(1100), len: ms(500), segment: 1 }]);
        p.tick(ms(2600));
        assert!(!p.stalled(), "segment 2 was there");
        p.tick(ms(3600));
        assert!(p.done());
        assert_eq!((p.played(), p.play_time, p.stall_time()), (3, ms(3000), ms(500)));
        assert!((p.rebuffer_ratio() - 500.0 / 3500.0).abs() < 1e-9);
    }

    #[test]
    fn stops_after_the_watch_and_fetches_nothing_beyond_it() {
        let mut p = Player::new(10, 2, None, ms(100), 8);
        assert_eq!(wants(&mut p), vec![0, 1]);
        p.ready(0, ms(1));
        p.ready(1, ms(2));
        p.tick(ms(1000));
        assert!(p.done());
        assert_eq!(p.played(), 2);
        assert_eq!(p.want(), None);
    }

    #[test]
    fn a_seek_drops_the_buffer_and_times_the_wait() {
        let mut p = Player::new(20, 6, Some(Seek { after: 2, to: 15 }), ms(100), 2);
        assert_eq!(wants(&mut p), vec![0, 1]);
        p.ready(0, ms(10));
        p.ready(1, ms(20));
        p.tick(ms(110));
        assert_eq!(wants(&mut p), vec![2]);
        p.ready(2, ms(150));
        p.tick(ms(210));
        assert!(p.take_seek(), "in-flight fetches are stale now");
        assert!(!p.take_seek());
        assert_eq!(wants(&mut p), vec![15, 16], "the buffer refills at the target");
        p.ready(2, ms(220)); // a stale arrival changes nothing
        p.ready(15, ms(260));
        assert_eq!(p.seek_waits, vec![ms(50)]);
        assert!(p.stalls.is_empty(), "a seek wait is not a stall");
        p.ready(16, ms(270));
        p.tick(ms(360));
        assert_eq!(wants(&mut p), vec![17]);
        p.ready(17, ms(400));
        p.tick(ms(460));
        assert_eq!(wants(&mut p), vec![18]);
        p.ready(18, ms(470));
        p.tick(ms(1000));
        assert!(p.done());
        assert_eq!(p.played(), 6);
    }

    #[test]
    fn the_title_end_stops_playback_even_with_watch_left() {
        let mut p = Player::new(3, 3, Some(Seek { after: 1, to: 2 }), ms(100), 4);
        assert_eq!(wants(&mut p), vec![0, 1, 2]);
        p.ready(0, ms(1));
        p.tick(ms(101));
        assert!(p.take_seek());
        assert_eq!(wants(&mut p), vec![2]);
        p.ready(2, ms(120));
        p.tick(ms(220));
        assert!(p.done());
        assert_eq!(p.played(), 2);
        assert!(Player::new(0, 5, None, ms(1), 1).done());
    }
}
