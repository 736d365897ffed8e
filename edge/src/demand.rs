//! Demand per title and segment, and what to mirror ahead of it (pure).
//!
//! Every segment request that starts a read is recorded ([`starts_read`]). A title is *hot* when it had at least
//! `hot_requests_per_min` requests in the last minute (six 10-second buckets,
//! so the figure slides without a timer). For a request at segment `s` of a
//! hot title, the next `prefetch_segments` segments are due, viewers watching
//! forward being the common case; each segment is handed out once per minute
//! at most, so a crowd of viewers at the same place causes one prefetch, not
//! one per viewer. Edges fetch what is due from their parents; nodes push it
//! to the edge that asked (see `docs/mirroring.md`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tranzcast_proto::TitleId;
use tranzcast_proto::range::{RangeSpec, parse_range};

/// Whether a request with this `Range` header starts reading its blob (asks
/// for its first byte). The rest of a read (a player's later ranges, a
/// client's resume after a failover, the tail of a segment split between
/// sources) is the same viewer, not new demand: counting it again would make
/// one viewer reading 4 KiB ranges weigh 256 whole-segment viewers. A header
/// that is not a byte range is answered with the whole blob (or refused), and
/// counts.
pub fn starts_read(range: Option<&str>) -> bool {
    match range.map(parse_range) {
        Some(Ok(Some(specs))) => specs.iter().any(|s| matches!(s, RangeSpec::FromTo(0, _) | RangeSpec::From(0))),
        _ => true,
    }
}

const BUCKET: Duration = Duration::from_secs(10);
const BUCKETS: usize = 6;
/// A segment handed out for mirroring is not handed out again for this long.
const REISSUE_AFTER: Duration = Duration::from_secs(60);
/// Titles tracked at most (the coldest are forgotten first).
const MAX_TITLES: usize = 4096;

#[derive(Debug)]
struct TitleDemand {
    /// Requests per 10-second bucket; `buckets[epoch % BUCKETS]`.
    buckets: [u32; BUCKETS],
    /// The epoch (10-second periods since `Demand::start`) of the newest bucket.
    epoch: u64,
    /// Requests per segment since tracking began.
    per_segment: HashMap<u64, u64>,
    /// Segments handed out for mirroring, and when.
    issued: HashMap<u64, Instant>,
    total: u64,
}

/// A snapshot of one title's demand (for `/v1/demand` and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleHeat {
    /// The title.
    pub title: TitleId,
    /// Requests in the last minute.
    pub last_minute: u32,
    /// Requests in all.
    pub total: u64,
    /// The most requested segments, most first: (segment, requests), at most 8.
    pub top_segments: Vec<(u64, u64)>,
}

/// Demand of every title seen.
#[derive(Debug)]
pub struct Demand {
    start: Instant,
    hot_per_min: u32,
    ahead: u64,
    titles: HashMap<TitleId, TitleDemand>,
}

impl Demand {
    /// `hot_per_min`: the hot threshold; `ahead`: segments to mirror ahead.
    pub fn new(hot_per_min: u32, ahead: u32, start: Instant) -> Self {
        Self { start, hot_per_min, ahead: u64::from(ahead), titles: HashMap::new() }
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_secs() / BUCKET.as_secs()) + 1
    }

    /// Records a request for segment `seq` of `title`; returns the segments
    /// now due for mirroring (empty unless the title is hot).
    pub fn record(&mut self, title: &TitleId, seq: u64, segments: Option<u64>, now: Instant) -> Vec<u64> {
        let epoch = self.epoch(now);
        if !self.titles.contains_key(title) {
            if self.titles.len() >= MAX_TITLES {
                self.forget_coldest(epoch);
            }
            let fresh = TitleDemand { buckets: [0; BUCKETS], epoch, per_segment: HashMap::new(), issued: HashMap::new(), total: 0 };
            self.titles.insert(title.clone(), fresh);
        }
        // Looked up, not `entry(title.clone())`: every request lands here, and
        // the clone would be an allocation per request for a title already known.
        let Some(t) = self.titles.get_mut(title) else { return Vec::new() };
        advance(t, epoch);
        t.buckets[(epoch % BUCKETS as u64) as usize] += 1;
        t.total += 1;
        *t.per_segment.entry(seq).or_default() += 1;
        let last_minute: u32 = t.buckets.iter().sum();
        if self.ahead == 0 || last_minute < self.hot_per_min {
            return Vec::new();
        }
        t.issued.retain(|_, at| now.saturating_duration_since(*at) < REISSUE_AFTER);
        let end = segments.unwrap_or(u64::MAX);
        let due: Vec<u64> = (seq.saturating_add(1)..seq.saturating_add(1).saturating_add(self.ahead).min(end))
            .filter(|s| !t.issued.contains_key(s))
            .collect();
        for s in &due {
            t.issued.insert(*s, now);
        }
        due
    }

    /// Titles with requests in the last minute, hottest first, each with its
    /// `TOP_SEGMENTS` most asked segments.
    pub fn heat(&self, now: Instant) -> Vec<TitleHeat> {
        let epoch = self.epoch(now);
        // Cold titles are left out before any work, and a title's top
        // segments are selected, not its every segment sorted: the route is
        // public and this runs under the lock segment reads take.
        let hottest = |a: &(u64, u64), b: &(u64, u64)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        let mut out: Vec<TitleHeat> = self
            .titles
            .iter()
            .filter_map(|(title, t)| {
                let last_minute = recent(t, epoch);
                if last_minute == 0 {
                    return None;
                }
                let mut top: Vec<(u64, u64)> = t.per_segment.iter().map(|(s, n)| (*s, *n)).collect();
                if top.len() > TOP_SEGMENTS {
                    top.select_nth_unstable_by(TOP_SEGMENTS - 1, hottest);
                    top.truncate(TOP_SEGMENTS);
                }
                top.sort_by(hottest);
                Some(TitleHeat { title: title.clone(), last_minute, total: t.total, top_segments: top })
            })
            .collect();
        out.sort_by(|a, b| b.last_minute.cmp(&a.last_minute).then(a.title.as_str().cmp(b.title.as_str())));
        out
    }

    /// Whether `title` is hot now.
    pub fn is_hot(&self, title: &TitleId, now: Instant) -> bool {
        let epoch = self.epoch(now);
        self.titles.get(title).is_some_and(|t| recent(t, epoch) >= self.hot_per_min)
    }

    fn forget_coldest(&mut self, epoch: u64) {
        if let Some(coldest) = self.titles.iter().min_by_key(|(_, t)| (recent(t, epoch), t.total)).map(|(k, _)| k.clone()) {
            self.titles.remove(&coldest);
        }
    }
}

/// Zeroes the buckets that slid out of the window since `t.epoch`.
fn advance(t: &mut TitleDemand, epoch: u64) {
    if epoch > t.epoch {
        let stale = (epoch - t.epoch).min(BUCKETS as u64);
        for k in 0..stale {
            t.buckets[((epoch - k) % BUCKETS as u64) as usize] = 0;
        }
        t.epoch = epoch;
    }
}

/// Requests in the minute up to `epoch`, without changing `t`.
fn recent(t: &TitleDemand, epoch: u64) -> u32 {
    if epoch >= t.epoch + BUCKETS as u64 {
        return 0;
    }
    // Buckets older than the window relative to `epoch` are excluded.
    (0..BUCKETS as u64)
        .filter(|k| t.epoch >= *k && t.epoch - k + BUCKETS as u64 > epoch)
        .map(|k| t.buckets[((t.epoch - k) % BUCKETS as u64) as usize])
        .sum()
}

/// Segments reported per title in [`Demand::heat`].
const TOP_SEGMENTS: usize = 8;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn film() -> TitleId {
        TitleId::new("film").unwrap()
    }

    #[test]
    fn only_reads_from_the_first_byte_count_as_demand() {
        for starts in [None, Some("bytes=0-99"), Some("bytes=0-"), Some("bytes=500-600, 0-10"), Some("items=5-9"), Some("bytes=9-x")] {
            assert!(starts_read(starts), "{starts:?}");
        }
        for rest in [Some("bytes=4096-8191"), Some("bytes=1-"), Some("bytes=-500"), Some("bytes=100-200, 300-400")] {
            assert!(!starts_read(rest), "{rest:?}");
        }
    }

    #[test]
    fn cold_titles_mirror_nothing_hot_ones_the_next_segments_once() {
        let t0 = Instant::now();
        let mut d = Demand::new(3, 2, t0);
        assert!(d.record(&film(), 0, Some(10), t0).is_empty());
        assert!(d.record(&film(), 0, Some(10), t0).is_empty());
        assert!(!d.is_hot(&film(), t0));
        // The third request in a minute makes the title hot.
        assert_eq!(d.record(&film(), 1, Some(10), t0), vec![2, 3]);
        assert!(d.is_hot(&film(), t0));
        // Another viewer at the same place: nothing new is due.
        assert!(d.record(&film(), 1, Some(10), t0).is_empty());
        // Moving on: only the segment not yet handed out.
        assert_eq!(d.record(&film(), 2, Some(10), t0), vec![4]);
        // Never past the end of the title.
        assert_eq!(d.record(&film(), 8, Some(10), t0), vec![9]);
        assert!(d.record(&film(), 9, Some(10), t0).is_empty());
        // After a minute, a segment may be handed out again.
        let later = t0 + Duration::from_secs(65);
        for _ in 0..2 {
            d.record(&film(), 0, Some(10), later);
        }
        assert_eq!(d.record(&film(), 1, Some(10), later), vec![2, 3]);
    }

    #[test]
    fn heat_reports_the_most_asked_segments_as_a_full_sort_would() {
        let t0 = Instant::now();
        let mut d = Demand::new(1000, 0, t0);
        // Forty segments asked 1 to 7 times each (ties among them), in a scrambled order.
        let mut asked = std::collections::BTreeMap::new();
        for i in 0..40u64 {
            let s = (i * 17) % 40;
            let n = 1 + (i * 5) % 7;
            for _ in 0..n {
                d.record(&film(), s, None, t0);
            }
            asked.insert(s, n);
        }
        let mut want: Vec<(u64, u64)> = asked.into_iter().collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        want.truncate(TOP_SEGMENTS);
        assert_eq!(d.heat(t0)[0].top_segments, want);
    }

    #[test]
    fn heat_slides_out_after_a_minute() {
        let t0 = Instant::now();
        let mut d = Demand::new(2, 1, t0);
        for s in [0, 0, 0, 1] {
            d.record(&film(), s, None, t0);
        }
        let h = d.heat(t0);
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].last_minute, h[0].total), (4, 4));
        assert_eq!(h[0].top_segments, vec![(0, 3), (1, 1)]);
        assert_eq!(d.heat(t0 + Duration::from_secs(30))[0].last_minute, 4);
        assert!(d.heat(t0 + Duration::from_secs(75)).is_empty(), "a minute later, cold");
        assert!(!d.is_hot(&film(), t0 + Duration::from_secs(75)));
        // Partly slid: requests 50 s apart count together, 70 s apart do not.
        let mut d = Demand::new(2, 1, t0);
        d.record(&film(), 0, None, t0);
        assert_eq!(d.record(&film(), 0, None, t0 + Duration::from_secs(50)), vec![1]);
        let mut d = Demand::new(2, 1, t0);
        d.record(&film(), 0, None, t0);
        assert!(d.record(&film(), 0, None, t0 + Duration::from_secs(70)).is_empty());
    }

    #[test]
    fn prefetch_zero_disables_and_titles_are_bounded() {
        let t0 = Instant::now();
        let mut d = Demand::new(1, 0, t0);
        assert!(d.record(&film(), 0, None, t0).is_empty());
        let mut d = Demand::new(1, 1, t0);
        for i in 0..(MAX_TITLES + 10) {
            d.record(&TitleId::new(&format!("t{i}")).unwrap(), 0, None, t0);
        }
        assert!(d.titles.len() <= MAX_TITLES);
        assert_eq!(d.record(&film(), u64::MAX, None, t0), Vec::<u64>::new(), "no overflow at the end");
    }
}
