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
/// Blobs a fetched blob may displace at most (a large one among many small
/// ones is not worth a long search under the lock).
const MAX_VICTIMS: usize = 64;
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
const MAX_HEADS: usize = 256;

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

/// How a blob comes to be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Part of a set this server must hold (a node's staged titles,
    /// manifests): never evicted, admitted whatever it costs.
    Pinned,
    /// Sent to us on purpose (a node's push, the origin's pre-cast): kept
    /// whenever it fits beside the pinned set.
    Pushed,
    /// Fetched for a reader (a miss, a prefetch, a peer's played segment):
    /// kept only if worth what it displaces.
    Fetched,
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
        let near = (seg.seq.saturating_sub(FOLLOW), 0)..=(seg.seq, u64::MAX);
        let gone: Vec<(u64, u64)> =
            t.heads.range(near.clone()).filter(|(_, at)| now_ms.saturating_sub(**at) > stale).map(|(k, _)| *k).collect();
        for k in gone {
            t.heads.remove(&k);
        }
        let moved = t.heads.range(near).next_back().map(|(k, at)| (*k, *at));
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
                    // Full: the stale go, else the one silent the longest.
                    t.heads.retain(|_, at| now_ms.saturating_sub(*at) <= stale);
                    if t.heads.len() >= MAX_HEADS
                        && let Some(k) = t.heads.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k)
                    {
                        t.heads.remove(&k);
                    }
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

    /// The sampled unpinned blob expected furthest away, and when, leaving
    /// out `exclude` (victims already chosen).
    fn victim(&mut self, now_ms: u64, exclude: &[BlobAddress]) -> Option<(BlobAddress, u64)> {
        let n = self.unpinned.len();
        let mut worst: Option<(BlobAddress, u64)> = None;
        let mut consider = |r: &mut Self, a: BlobAddress| {
            if exclude.contains(&a) {
                return;
            }
            let e = r.entries[&a];
            let when = r.next_use(&e, now_ms);
            if worst.is_none_or(|(_, w)| when > w) {
                worst = Some((a, when));
            }
        };
        if n <= SAMPLE + exclude.len() {
            // Every blob when they are few.
            for i in 0..n {
                let a = self.unpinned[i];
                consider(self, a);
            }
        } else {
            for _ in 0..SAMPLE {
                let i = self.random(n);
                let a = self.unpinned[i];
                consider(self, a);
            }
        }
        worst
    }

    /// Offers `a` (`size` bytes; `seg` when it is a segment) as it is kept:
    /// `Pinned` is admitted whatever it costs, `Pushed` whenever it fits
    /// beside the pinned set, `Fetched` only if nothing it would displace is
    /// expected sooner than it. The caller deletes `evict` from the store
    /// before storing `a` (so the disk never holds more than the budget plus
    /// one blob in flight).
    pub fn admit(&mut self, a: BlobAddress, size: u64, offer: Offer, seg: Option<SegmentRef>, now_ms: u64) -> Admission {
        let pinned = offer == Offer::Pinned;
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
        let refused = Admission { store: false, evict: Vec::new() };
        // Would it fit if every unpinned blob went? If not, evict nothing.
        if !pinned && !self.fits_beside_pinned(size) {
            return refused;
        }
        let entry = Entry { size, hits: 1, first_ms: now_ms, last_ms: now_ms, seg, slot: None };
        let mine = (offer == Offer::Fetched && self.used + size > self.budget).then(|| self.next_use(&entry, now_ms));
        // Victims are chosen first and removed only once all are known: a
        // fetched blob expected later than any of them is not admitted, and
        // nothing is evicted for it.
        let mut evict: Vec<BlobAddress> = Vec::new();
        let mut freed = 0u64;
        while self.used - freed + size > self.budget {
            if mine.is_some() && evict.len() >= MAX_VICTIMS {
                return refused;
            }
            let Some((victim, when)) = self.victim(now_ms, &evict) else { break };
            if mine.is_some_and(|m| m > when) {
                return refused;
            }
            freed += self.entries.get(&victim).map_or(0, |e| e.size);
            evict.push(victim);
        }
        for v in &evict {
            self.remove(v);
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

    /// A full set of `n` 1 MiB blobs admitted at 0, of which 0 and 1 are
    /// asked every second for ten seconds.
    fn with_two_busy(n: u32) -> Residency {
        let mut r = Residency::new(u64::from(n) * MIB);
        for i in 0..n {
            r.admit(addr(i), MIB, Offer::Fetched, None, 0);
        }
        for t in 1..=10 {
            r.touch(&addr(0), t * 1000);
            r.touch(&addr(1), t * 1000);
        }
        r
    }

    #[test]
    fn blobs_asked_again_stay_the_longest_gap_goes_first() {
        let mut r = Residency::new(4 * MIB);
        for i in 0..4 {
            assert_eq!(r.admit(addr(i), MIB, Offer::Fetched, None, 0), Admission { store: true, evict: vec![] });
        }
        // Among blobs asked once, the oldest goes (LRU).
        assert_eq!(r.admit(addr(4), MIB, Offer::Fetched, None, 1_000).evict, vec![addr(0)]);
        for t in 2..=6 {
            r.touch(&addr(1), t * 1000);
            r.touch(&addr(2), t * 1000);
        }
        r.touch(&addr(3), 7_000);
        r.touch(&addr(4), 8_000);
        // 1 and 2 are asked every second, 3 after 7 s, 4 after 7 s too but
        // later: a blob asked once is expected later than all of them and
        // is not admitted.
        assert_eq!(r.admit(addr(5), MIB, Offer::Fetched, None, 9_000), Admission { store: false, evict: vec![] });
        // Half an hour on, 1 and 2 are still asked, 3 and 4 have not been
        // again: expected later than a newcomer now. 3 (unasked the
        // longest) goes first.
        let later = 9_000 + UNKNOWN_MS;
        r.touch(&addr(1), later - 1_000);
        r.touch(&addr(2), later - 1_000);
        assert_eq!(r.admit(addr(6), MIB, Offer::Fetched, None, later).evict, vec![addr(3)]);
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
            r.admit(addr(s as u32), MIB, Offer::Fetched, Some(seg(1, s)), s * S);
            if s == 3 {
                r.observe(seg(1, 0), s * S);
            }
        }
        // B is at 0: segments 1..3 will be asked within 18 s; 0 has just
        // been read by the last viewer (the title's next viewer is one mean
        // arrival away). A reads segment 4: 0 goes, the others stay.
        r.observe(seg(1, 4), 4 * S);
        let ad = r.admit(addr(4), MIB, Offer::Fetched, Some(seg(1, 4)), 4 * S);
        assert_eq!(ad, Admission { store: true, evict: vec![addr(0)] });
        // A blob nothing is known of is not worth a segment B reaches
        // within 18 s: not admitted.
        r.observe(seg(1, 1), 4 * S + 1);
        assert_eq!(r.admit(addr(9), MIB, Offer::Fetched, None, 4 * S + 2), Admission { store: false, evict: vec![] });
        assert!((1..=4).all(|i| r.contains(&addr(i))), "B's next segments stay");
    }

    #[test]
    fn a_miss_expected_later_than_everything_held_is_not_admitted() {
        // Two blobs asked every second.
        let mut r = with_two_busy(2);
        // A segment of a title whose one viewer has just left it behind,
        // its next viewer not yet expected: it would displace a blob asked
        // every second. Not stored.
        r.observe(seg(7, 5), 10_000);
        assert_eq!(r.admit(addr(5), MIB, Offer::Fetched, Some(seg(7, 5)), 10_000), Admission { store: false, evict: vec![] });
        assert!(r.contains(&addr(0)) && r.contains(&addr(1)));
    }

    #[test]
    fn a_push_is_kept_where_a_fetch_would_not_be_and_a_refusal_evicts_nothing() {
        let mut r = with_two_busy(3);
        // 2 was asked once, long ago; 0 and 1 every second. A 2 MiB fetch
        // would have to displace 2 and one of the busy ones: refused, and
        // 2 stays (victims are chosen before any is removed).
        assert_eq!(r.admit(addr(7), 2 * MIB, Offer::Fetched, None, 10_000), Admission { store: false, evict: vec![] });
        assert_eq!(r.len(), 3);
        // The same blob pushed on purpose is kept.
        let ad = r.admit(addr(7), 2 * MIB, Offer::Pushed, None, 10_000);
        assert!(ad.store && ad.evict.len() == 2 && ad.evict.contains(&addr(2)), "{ad:?}");
        assert_eq!(r.used(), 3 * MIB);
    }

    #[test]
    fn stale_playheads_near_a_read_are_dropped_and_a_full_title_drops_its_quietest() {
        let mut r = Residency::new(MIB);
        r.observe(seg(1, 10), 0);
        r.observe(seg(1, 12), 1_000);
        // The viewer moved from 10 to 12. Ten minutes later a read at 13:
        // that head is stale and goes; a new one starts (nobody moved on).
        r.observe(seg(1, 13), 600_000);
        assert_eq!(r.titles[&1].heads.values().copied().collect::<Vec<_>>(), vec![600_000]);
        // A title at its cap: the head silent the longest goes.
        for i in 0..MAX_HEADS as u64 {
            r.observe(seg(2, i * 10), 700_000 + i);
        }
        r.observe(seg(2, 1_000_000), 700_000 + MAX_HEADS as u64);
        let heads = &r.titles[&2].heads;
        assert_eq!(heads.len(), MAX_HEADS);
        assert!(!heads.values().any(|at| *at == 700_000), "the quietest went");
    }

    #[test]
    fn playheads_go_stale_and_stop_protecting() {
        let mut r = Residency::new(3 * MIB);
        r.observe(seg(1, 0), 0);
        r.admit(addr(10), MIB, Offer::Fetched, Some(seg(1, 5)), 0);
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
        r.admit(addr(0), 2 * MIB, Offer::Pinned, None, 0);
        r.admit(addr(1), MIB, Offer::Fetched, None, 0);
        assert_eq!(r.admit(addr(2), MIB, Offer::Fetched, None, 1).evict, vec![addr(1)]);
        assert_eq!(
            r.admit(addr(3), 2 * MIB, Offer::Fetched, None, 2),
            Admission { store: false, evict: vec![] },
            "cannot fit beside the pinned set"
        );
        assert!(r.contains(&addr(2)), "a refused admission evicts nothing");
        // Pinned ones are admitted whatever it costs (a node must hold its whole set).
        assert_eq!(r.admit(addr(4), MIB, Offer::Pinned, None, 3).evict, vec![addr(2)]);
        assert_eq!(r.used(), 3 * MIB);
        r.remove(&addr(4));
        assert_eq!(r.used(), 2 * MIB);
        // Re-admitting pins an unpinned blob in place; then nothing unpinned fits.
        assert!(r.admit(addr(6), MIB, Offer::Fetched, None, 4).store);
        assert!(r.admit(addr(6), MIB, Offer::Pinned, None, 5).evict.is_empty());
        assert_eq!(r.admit(addr(5), MIB, Offer::Fetched, None, 6), Admission { store: false, evict: vec![] });
        assert!(r.unpinned.is_empty());
    }

    #[test]
    fn slots_stay_consistent_through_removals() {
        let mut r = Residency::new(100 * MIB);
        for i in 0..50 {
            r.admit(addr(i), MIB, if i % 5 == 0 { Offer::Pinned } else { Offer::Fetched }, None, u64::from(i));
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
