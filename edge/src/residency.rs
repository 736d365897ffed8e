//! What stays on an edge's disk within `store.disk_bytes` (pure): the blob
//! whose next request is expected furthest away goes first. That is
//! Belady's rule, with the future estimated from what the edge has seen.
//!
//! Media is read in order, and that makes much of the future visible. A
//! segment that viewers of its title are heading towards will be asked for
//! when the nearest of them gets there: its distance in segments times the
//! title's segment time (interval caching, Dan and Sitaram, 1996: keep what
//! lies between a viewer and the one behind, shortest intervals first). The
//! policy follows each title's playheads from the segment reads the edge
//! serves ([`Residency::observe`]): a read just after a playhead moves it on,
//! any other starts a new one (a new viewer, or a seek). A segment no viewer
//! is heading towards waits for the title's next viewer: the title's mean gap
//! between new playheads, plus the time to play up to the segment. Any other
//! blob (and a segment of a title showing no pattern yet) is expected again
//! after its mean gap between requests, and at least as late as it has gone
//! unasked (the reuse-distance estimate behind LRU-K).
//!
//! Estimates move as time passes, so there is no ordered index: making room
//! samples [`SAMPLE`] unpinned blobs and evicts the one expected furthest
//! away (Redis approximates LRU the same way); a miss whose own next request
//! is expected later than that victim's is not admitted. Pinned blobs (a
//! node's staged sets, title manifests) count against the budget but are
//! never chosen. Time is passed in (`now_ms`, any monotonic milliseconds).

use std::collections::{BTreeMap, HashMap};

use tranzcast_proto::{BlobAddress, TitleId};

/// Blobs looked at for each eviction.
pub const SAMPLE: usize = 32;
/// A playhead is followed this many segments back (players and smart
/// clients read a few segments ahead and out of order).
const FOLLOW: u64 = 4;
/// When a blob asked for once, or a title seen once, is expected again
/// (a prior: the next viewer of a title seen once comes this late).
const UNKNOWN_MS: u64 = 30 * 60 * 1000;
/// A title's segment time until its playheads show one.
const DEFAULT_SEGMENT_MS: f64 = 6_000.0;
/// Titles followed at most (the least recently read are forgotten first),
/// and playheads per title.
const MAX_TITLES: usize = 4096;
const MAX_HEADS: usize = 4096;

/// Where a segment blob sits: its title (see [`SegmentRef::new`]) and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentRef {
    /// The title, as a number.
    pub title: u64,
    /// The segment's index in it.
    pub seq: u64,
}

impl SegmentRef {
    /// Segment `seq` of `title`.
    pub fn new(title: &TitleId, seq: u64) -> Self {
        let h = blake3::hash(title.as_str().as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.as_bytes()[..8]);
        Self { title: u64::from_le_bytes(b), seq }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    hits: u64,
    first_ms: u64,
    last_ms: u64,
    seg: Option<SegmentRef>,
    /// Its place in `unpinned`; None when pinned.
    slot: Option<usize>,
}

/// One title's viewers as the edge sees them.
#[derive(Debug)]
struct Title {
    /// Playheads: (segment, id) -> when it was read.
    heads: BTreeMap<(u64, u64), u64>,
    /// Mean time between a playhead's reads (moving average).
    segment_ms: f64,
    /// When the last new playhead started, and the mean gap between them.
    last_arrival_ms: u64,
    arrival_gap_ms: Option<f64>,
    last_read_ms: u64,
}

impl Title {
    fn stale_after(&self) -> u64 {
        (4.0 * self.segment_ms).clamp(30_000.0, 300_000.0) as u64
    }

    /// The nearest live playhead before `seq`, and when it read; stale ones
    /// met on the way are dropped.
    fn behind(&mut self, seq: u64, now_ms: u64) -> Option<(u64, u64)> {
        let stale = self.stale_after();
        loop {
            let (&(s, id), &at) = self.heads.range(..(seq, 0)).next_back()?;
            if now_ms.saturating_sub(at) <= stale {
                return Some((s, at));
            }
            self.heads.remove(&(s, id));
        }
    }
}

/// What admitting a blob needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Whether to store it (false: it cannot fit beside the pinned set, or
    /// it is expected later than anything it would displace).
    pub store: bool,
    /// Blobs to delete first.
    pub evict: Vec<BlobAddress>,
}

/// The resident set, its budget and the playheads it follows.
#[derive(Debug)]
pub struct Residency {
    budget: u64,
    used: u64,
    /// Bytes of pinned blobs (part of `used`).
    pinned: u64,
    entries: HashMap<BlobAddress, Entry>,
    unpinned: Vec<BlobAddress>,
    titles: HashMap<u64, Title>,
    next_head: u64,
    rng: u64,
}

impl Residency {
    /// An empty set with `budget` bytes.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            used: 0,
            pinned: 0,
            entries: HashMap::new(),
            unpinned: Vec::new(),
            titles: HashMap::new(),
            next_head: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Blobs held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an unpinned blob of `size` bytes fits beside the pinned set.
    pub fn fits_beside_pinned(&self, size: u64) -> bool {
        self.pinned + size <= self.budget
    }

    /// Whether `a` is held.
    pub fn contains(&self, a: &BlobAddress) -> bool {
        self.entries.contains_key(a)
    }

    /// A viewer started reading segment `seg` (hit or miss): its title's
    /// playheads move.
    pub fn observe(&mut self, seg: SegmentRef, now_ms: u64) {
        if !self.titles.contains_key(&seg.title) && self.titles.len() >= MAX_TITLES {
            self.forget_coldest_titles();
        }
        let t = self.titles.entry(seg.title).or_insert_with(|| Title {
            heads: BTreeMap::new(),
            segment_ms: DEFAULT_SEGMENT_MS,
            last_arrival_ms: now_ms,
            arrival_gap_ms: None,
            last_read_ms: now_ms,
        });
        t.last_read_ms = now_ms;
        let id = self.next_head;
        self.next_head += 1;
        // The viewer a few segments behind moves on; one at this very
        // segment reads it again (a retry): nothing moves.
        let stale = t.stale_after();
        let moved = t
            .heads
            .range((seg.seq.saturating_sub(FOLLOW), 0)..=(seg.seq, u64::MAX))
            .rev()
            .find(|(_, at)| now_ms.saturating_sub(**at) <= stale)
            .map(|(k, at)| (*k, *at));
        match moved {
            Some(((s, old), _)) if s == seg.seq => {
                t.heads.insert((s, old), now_ms);
            }
            Some(((s, old), at)) => {
                t.heads.remove(&(s, old));
                let per = now_ms.saturating_sub(at) as f64 / (seg.seq - s) as f64;
                if per > 0.0 {
                    t.segment_ms = 0.8 * t.segment_ms + 0.2 * per;
                }
                t.heads.insert((seg.seq, id), now_ms);
            }
            None => {
                let gap = now_ms.saturating_sub(t.last_arrival_ms) as f64;
                if gap > 0.0 || t.arrival_gap_ms.is_some() {
                    t.arrival_gap_ms = Some(t.arrival_gap_ms.map_or(gap, |g| 0.8 * g + 0.2 * gap));
                }
                t.last_arrival_ms = now_ms;
                if t.heads.len() >= MAX_HEADS {
                    t.heads.pop_first();
                }
                t.heads.insert((seg.seq, id), now_ms);
            }
        }
    }

    /// Forgets the eighth of the titles read least recently: one scan per
    /// `MAX_TITLES / 8` new titles, not one per new title (a catalogue's
    /// long tail brings a new title with most reads).
    fn forget_coldest_titles(&mut self) {
        let mut by_age: Vec<(u64, u64)> = self.titles.iter().map(|(k, t)| (t.last_read_ms, *k)).collect();
        let n = (by_age.len() / 8).max(1);
        by_age.select_nth_unstable(n - 1);
        for (_, k) in &by_age[..n] {
            self.titles.remove(k);
        }
    }

    /// A request was served from `a`.
    pub fn touch(&mut self, a: &BlobAddress, now_ms: u64) {
        if let Some(e) = self.entries.get_mut(a) {
            e.hits += 1;
            e.last_ms = e.last_ms.max(now_ms);
        }
    }

    /// When (milliseconds from `now_ms`) `e` is expected to be asked for
    /// again: the sooner of what its own requests and its title's viewers
    /// say; for a blob asked once with nothing known of its title, a prior
    /// (`UNKNOWN_MS`) past twice its age, so among those the oldest goes.
    fn next_use(&mut self, e: &Entry, now_ms: u64) -> u64 {
        let age = now_ms.saturating_sub(e.last_ms);
        let history = (e.hits >= 2).then(|| age.max(e.last_ms.saturating_sub(e.first_ms) / (e.hits - 1)));
        let pattern = e.seg.and_then(|seg| {
            let t = self.titles.get_mut(&seg.title)?;
            let ms = match t.behind(seg.seq, now_ms) {
                Some((s, at)) => ((seg.seq - s) as f64 * t.segment_ms - now_ms.saturating_sub(at) as f64).max(0.0),
                None => {
                    let next_viewer = t.arrival_gap_ms.unwrap_or(UNKNOWN_MS as f64).max(now_ms.saturating_sub(t.last_arrival_ms) as f64);
                    next_viewer + seg.seq as f64 * t.segment_ms
                }
            };
            Some(ms as u64)
        });
        match (history, pattern) {
            (Some(h), Some(p)) => h.min(p),
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => UNKNOWN_MS + 2 * age,
        }
    }

    fn random(&mut self, n: usize) -> usize {
        // xorshift64*: reproducible runs, no shared state.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    /// The sampled unpinned blob expected furthest away, and when.
    fn victim(&mut self, now_ms: u64) -> Option<(BlobAddress, u64)> {
        let n = self.unpinned.len();
        if n == 0 {
            return None;
        }
        let mut worst: Option<(BlobAddress, u64)> = None;
        for i in 0..SAMPLE.min(n) {
            // Every blob when they are few; a random sample otherwise.
            let at = if n <= SAMPLE { i } else { self.random(n) };
            let a = self.unpinned[at];
            let e = self.entries[&a];
            let when = self.next_use(&e, now_ms);
            if worst.is_none_or(|(_, w)| when > w) {
                worst = Some((a, when));
            }
        }
        worst
    }

    /// Makes room for `a` (`size` bytes; `seg` when it is a segment) and
    /// records it. The caller deletes `evict` from the store before storing
    /// `a` (so the disk never holds more than the budget plus one blob in
    /// flight).
    pub fn admit(&mut self, a: BlobAddress, size: u64, pinned: bool, seg: Option<SegmentRef>, now_ms: u64) -> Admission {
        if let Some(e) = self.entries.get(&a).copied() {
            // Already here (a push racing a fetch): at most, pin it.
            if pinned && let Some(slot) = e.slot {
                self.unslot(slot);
                self.pinned += e.size;
                if let Some(e) = self.entries.get_mut(&a) {
                    e.slot = None;
                }
            }
            return Admission { store: true, evict: Vec::new() };
        }
        let mut evict = Vec::new();
        let entry = Entry { size, hits: 1, first_ms: now_ms, last_ms: now_ms, seg, slot: None };
        if !pinned {
            // Would it fit if every unpinned blob went? If not, evict nothing.
            if !self.fits_beside_pinned(size) {
                return Admission { store: false, evict };
            }
            if self.used + size > self.budget {
                let mine = self.next_use(&entry, now_ms);
                if self.victim(now_ms).is_some_and(|(_, theirs)| mine > theirs) {
                    return Admission { store: false, evict };
                }
            }
        }
        while self.used + size > self.budget {
            let Some((victim, _)) = self.victim(now_ms) else { break };
            self.remove(&victim);
            evict.push(victim);
        }
        let slot = (!pinned).then(|| {
            self.unpinned.push(a);
            self.unpinned.len() - 1
        });
        self.entries.insert(a, Entry { slot, ..entry });
        self.used += size;
        if pinned {
            self.pinned += size;
        }
        Admission { store: true, evict }
    }

    /// Takes slot `slot` out of `unpinned`, moving the last one into it.
    fn unslot(&mut self, slot: usize) {
        self.unpinned.swap_remove(slot);
        if let Some(moved) = self.unpinned.get(slot).copied()
            && let Some(e) = self.entries.get_mut(&moved)
        {
            e.slot = Some(slot);
        }
    }

    /// Forgets `a` (evicted, or deleted for another reason).
    pub fn remove(&mut self, a: &BlobAddress) {
        if let Some(e) = self.entries.remove(a) {
            self.used -= e.size;
            match e.slot {
                Some(slot) => self.unslot(slot),
                None => self.pinned -= e.size,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(i: u32) -> BlobAddress {
        BlobAddress::of(&i.to_be_bytes())
    }

    fn seg(title: u64, seq: u64) -> SegmentRef {
        SegmentRef { title, seq }
    }

    const MIB: u64 = 1 << 20;
    const S: u64 = 6_000;

    #[test]
    fn blobs_asked_again_stay_the_longest_gap_goes_first() {
        let mut r = Residency::new(4 * MIB);
        for i in 0..4 {
            assert_eq!(r.admit(addr(i), MIB, false, None, 0), Admission { store: true, evict: vec![] });
        }
        // Among blobs asked once, the oldest goes (LRU).
        assert_eq!(r.admit(addr(4), MIB, false, None, 1_000).evict, vec![addr(0)]);
        for t in 2..=6 {
            r.touch(&addr(1), t * 1000);
            r.touch(&addr(2), t * 1000);
        }
        r.touch(&addr(3), 7_000);
        r.touch(&addr(4), 8_000);
        // 1 and 2 are asked every second, 3 after 7 s, 4 after 7 s too but
        // later: a blob asked once is expected later than all of them and
        // is not admitted.
        assert_eq!(r.admit(addr(5), MIB, false, None, 9_000), Admission { store: false, evict: vec![] });
        // Half an hour on, 1 and 2 are still asked, 3 and 4 have not been
        // again: expected later than a newcomer now. 3 (unasked the
        // longest) goes first.
        let later = 9_000 + UNKNOWN_MS;
        r.touch(&addr(1), later - 1_000);
        r.touch(&addr(2), later - 1_000);
        assert_eq!(r.admit(addr(6), MIB, false, None, later).evict, vec![addr(3)]);
        assert!(r.contains(&addr(1)) && r.contains(&addr(2)) && r.contains(&addr(4)) && r.contains(&addr(6)));
        assert_eq!(r.used(), 4 * MIB);
    }

    #[test]
    fn a_segment_a_viewer_is_heading_to_stays_one_nobody_will_reach_goes() {
        let mut r = Residency::new(4 * MIB);
        // Viewer A reads film 1 from the start; viewer B follows 3 segments
        // (18 s) behind. A has read segments 0..4 of it.
        for s in 0..4 {
            r.observe(seg(1, s), s * S);
            r.admit(addr(s as u32), MIB, false, Some(seg(1, s)), s * S);
            if s == 3 {
                r.observe(seg(1, 0), s * S);
            }
        }
        // B is at 0: segments 1..3 will be asked within 18 s; 0 has just
        // been read by the last viewer (the title's next viewer is one mean
        // arrival away). A reads segment 4: 0 goes, the others stay.
        r.observe(seg(1, 4), 4 * S);
        let ad = r.admit(addr(4), MIB, false, Some(seg(1, 4)), 4 * S);
        assert_eq!(ad, Admission { store: true, evict: vec![addr(0)] });
        // A blob nothing is known of is not worth a segment B reaches
        // within 18 s: not admitted.
        r.observe(seg(1, 1), 4 * S + 1);
        assert_eq!(r.admit(addr(9), MIB, false, None, 4 * S + 2), Admission { store: false, evict: vec![] });
        assert!((1..=4).all(|i| r.contains(&addr(i))), "B's next segments stay");
    }

    #[test]
    fn a_miss_expected_later_than_everything_held_is_not_admitted() {
        let mut r = Residency::new(2 * MIB);
        // Two blobs asked every second.
        for i in 0..2 {
            r.admit(addr(i), MIB, false, None, 0);
        }
        for t in 1..=10 {
            r.touch(&addr(0), t * 1000);
            r.touch(&addr(1), t * 1000);
        }
        // A segment of a title whose one viewer has just left it behind,
        // its next viewer not yet expected: it would displace a blob asked
        // every second. Not stored.
        r.observe(seg(7, 5), 10_000);
        assert_eq!(r.admit(addr(5), MIB, false, Some(seg(7, 5)), 10_000), Admission { store: false, evict: vec![] });
        assert!(r.contains(&addr(0)) && r.contains(&addr(1)));
    }

    #[test]
    fn playheads_go_stale_and_stop_protecting() {
        let mut r = Residency::new(3 * MIB);
        r.observe(seg(1, 0), 0);
        r.admit(addr(10), MIB, false, Some(seg(1, 5)), 0);
        // A viewer at 0 will reach 5: it is expected in 30 s, then in 20.
        let e = r.entries[&addr(10)];
        assert_eq!(r.next_use(&e, 0), 5 * S);
        assert_eq!(r.next_use(&e, 10_000), 5 * S - 10_000);
        // Ten minutes later that viewer is long gone: no playhead protects it.
        assert!(r.titles[&1].heads.len() == 1);
        assert_eq!(r.next_use(&e, 600_000), UNKNOWN_MS + 5 * S, "the title's next viewer, not yet known");
        assert!(r.titles[&1].heads.is_empty(), "the stale playhead was dropped");
    }

    #[test]
    fn titles_followed_are_bounded_and_the_coldest_are_forgotten() {
        let mut r = Residency::new(MIB);
        for t in 0..(MAX_TITLES as u64 + 100) {
            r.observe(seg(t, 0), t);
        }
        assert!(r.titles.len() <= MAX_TITLES);
        assert!(r.titles.contains_key(&(MAX_TITLES as u64 + 99)), "the newest is followed");
        assert!(!r.titles.contains_key(&0), "the coldest went first");
        // Playheads of one title are bounded too.
        for i in 0..(MAX_HEADS as u64 + 10) {
            r.observe(seg(1 << 40, i * 100), 10_000_000 + i);
        }
        assert!(r.titles[&(1 << 40)].heads.len() <= MAX_HEADS);
    }

    #[test]
    fn pinned_blobs_are_never_evicted_and_too_big_is_refused() {
        let mut r = Residency::new(3 * MIB);
        r.admit(addr(0), 2 * MIB, true, None, 0);
        r.admit(addr(1), MIB, false, None, 0);
        assert_eq!(r.admit(addr(2), MIB, false, None, 1).evict, vec![addr(1)]);
        assert_eq!(
            r.admit(addr(3), 2 * MIB, false, None, 2),
            Admission { store: false, evict: vec![] },
            "cannot fit beside the pinned set"
        );
        assert!(r.contains(&addr(2)), "a refused admission evicts nothing");
        // Pinned ones are admitted whatever it costs (a node must hold its whole set).
        assert_eq!(r.admit(addr(4), MIB, true, None, 3).evict, vec![addr(2)]);
        assert_eq!(r.used(), 3 * MIB);
        r.remove(&addr(4));
        assert_eq!(r.used(), 2 * MIB);
        // Re-admitting pins an unpinned blob in place; then nothing unpinned fits.
        assert!(r.admit(addr(6), MIB, false, None, 4).store);
        assert!(r.admit(addr(6), MIB, true, None, 5).evict.is_empty());
        assert_eq!(r.admit(addr(5), MIB, false, None, 6), Admission { store: false, evict: vec![] });
        assert!(r.unpinned.is_empty());
    }

    #[test]
    fn slots_stay_consistent_through_removals() {
        let mut r = Residency::new(100 * MIB);
        for i in 0..50 {
            r.admit(addr(i), MIB, i % 5 == 0, None, u64::from(i));
        }
        for i in (0..50).step_by(3) {
            r.remove(&addr(i));
        }
        for (i, a) in r.unpinned.iter().enumerate() {
            assert_eq!(r.entries[a].slot, Some(i));
        }
        assert_eq!(r.unpinned.len() + r.entries.values().filter(|e| e.slot.is_none()).count(), r.len());
    }
}
