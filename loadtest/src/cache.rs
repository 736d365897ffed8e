//! Cache policies replayed on demand traces (`bench/cache.sh`): the edge's
//! own residency policy (`edge::residency`: Belady's rule on estimated next requests),
//! plain LRU, and Belady's offline optimum (evict what is asked again
//! furthest in the future; an object that would itself be that is not
//! admitted), each by byte and object hit ratio.
//!
//! Traces: viewers of a catalogue whose titles are clips, episodes and
//! films at realistic bitrates, cut into segments of a few seconds
//! (`proto::sizing`); titles chosen by Zipf popularity, each viewing played
//! from its first segment for a watch length like the load test's (half to
//! the end, the rest an exponential share), one segment per segment time, the
//! viewings interleaved by their arrival times. And the long-tail scenario's
//! viewers, as the load test plans them (`demand::plan`).

use std::collections::{BTreeSet, HashMap};

use tranzcast_proto::BlobAddress;

use crate::demand::{Rng, Zipf};

/// One request for one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The segment (title << 32 | index).
    pub object: u64,
    /// Its bytes.
    pub size: u64,
    /// When, milliseconds from the trace's start.
    pub at_ms: u64,
}

/// A title's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TitleShape {
    /// Segments.
    pub segments: u64,
    /// Bytes per segment.
    pub segment_bytes: u64,
    /// Seconds per segment.
    pub segment_seconds: f64,
}

/// `n` titles: a fifth clips (2 to 10 min), half episodes (20 to 60 min),
/// the rest films (85 to 150 min); 1.5 to 8 Mbit/s; 6 s segments.
pub fn catalogue(n: usize, rng: &mut Rng) -> Vec<TitleShape> {
    (0..n)
        .map(|_| {
            let kind = rng.unit();
            let minutes = if kind < 0.2 {
                2.0 + 8.0 * rng.unit()
            } else if kind < 0.7 {
                20.0 + 40.0 * rng.unit()
            } else {
                85.0 + 65.0 * rng.unit()
            };
            let bytes_per_s = (1.5e6 + 6.5e6 * rng.unit()) / 8.0;
            let secs = minutes * 60.0;
            let len = (bytes_per_s * secs) as u64;
            let seg = u64::from(tranzcast_proto::sizing::segment_size_for(len, (secs * 1000.0) as u64, 6.0));
            let seg_secs = seg as f64 / bytes_per_s;
            TitleShape { segments: len.div_ceil(seg).max(1), segment_bytes: seg, segment_seconds: seg_secs }
        })
        .collect()
}

/// Bytes of every segment of every title.
pub fn catalogue_bytes(titles: &[TitleShape]) -> u64 {
    titles.iter().map(|t| t.segments * t.segment_bytes).sum()
}

/// One viewing: `title`, from `arrival` seconds, `watch` segments from segment 0.
struct Viewing {
    title: usize,
    arrival: f64,
    watch: u64,
}

fn interleave(titles: &[TitleShape], viewings: &[Viewing]) -> Vec<Request> {
    let mut timed: Vec<(f64, Request)> = Vec::new();
    for v in viewings {
        let t = titles[v.title];
        for i in 0..v.watch.min(t.segments) {
            let object = ((v.title as u64) << 32) | i;
            let at = v.arrival + i as f64 * t.segment_seconds;
            timed.push((at, Request { object, size: t.segment_bytes, at_ms: (at * 1000.0) as u64 }));
        }
    }
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    timed.into_iter().map(|(_, r)| r).collect()
}

/// `views` viewings over `hours`, titles by Zipf(`s`) popularity.
pub fn zipf_trace(titles: &[TitleShape], views: usize, s: f64, hours: f64, rng: &mut Rng) -> Vec<Request> {
    let zipf = Zipf::new(titles.len(), s);
    let viewings: Vec<Viewing> = (0..views)
        .map(|_| {
            let title = zipf.sample(rng);
            let n = titles[title].segments;
            let watch = if rng.unit() < 0.5 { n } else { ((rng.exponential(0.3) * n as f64).ceil() as u64).clamp(1, n) };
            Viewing { title, arrival: rng.unit() * hours * 3600.0, watch }
        })
        .collect();
    interleave(titles, &viewings)
}

/// The long-tail scenario's viewers as the load test plans them (its seek
/// left out: after it the viewer asks from the seek target on).
pub fn scenario_trace(s: &crate::scenario::Scenario) -> (Vec<TitleShape>, Vec<Request>) {
    let seg_bytes = u64::from(s.segment_size()).max(1);
    let segments = s.titles.bytes().div_ceil(seg_bytes).max(1);
    let seg_secs = s.segment_wall().as_secs_f64();
    let titles = vec![TitleShape { segments, segment_bytes: seg_bytes, segment_seconds: seg_secs }; s.titles.count as usize];
    let viewings: Vec<Viewing> = crate::demand::plan(s, segments)
        .into_iter()
        .map(|p| Viewing { title: p.title, arrival: p.arrival.as_secs_f64(), watch: p.watch })
        .collect();
    let trace = interleave(&titles, &viewings);
    (titles, trace)
}

/// What a policy achieved on a trace.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Hits {
    /// Requests, and those served from the cache.
    pub requests: u64,
    pub hit_requests: u64,
    /// Bytes asked, and those served from the cache.
    pub bytes: u64,
    pub hit_bytes: u64,
}

impl Hits {
    fn count(&mut self, r: &Request, hit: bool) {
        self.requests += 1;
        self.bytes += r.size;
        if hit {
            self.hit_requests += 1;
            self.hit_bytes += r.size;
        }
    }

    /// Share of bytes served from the cache.
    pub fn byte_ratio(&self) -> f64 {
        self.hit_bytes as f64 / self.bytes.max(1) as f64
    }

    /// Share of requests served from the cache.
    pub fn object_ratio(&self) -> f64 {
        self.hit_requests as f64 / self.requests.max(1) as f64
    }
}

fn address(object: u64) -> BlobAddress {
    BlobAddress::of(&object.to_le_bytes())
}

/// The edge's policy (`edge::residency`), as its store uses it: every
/// read moves its title's playheads, a hit touches, a miss is offered for
/// admission (what it displaces is deleted).
pub fn replay_residency(trace: &[Request], capacity: u64) -> Hits {
    use tranzcast_edge::residency::{Offer, Residency, SegmentRef};
    let mut set = Residency::new(capacity);
    let mut addrs: HashMap<u64, BlobAddress> = HashMap::new();
    let mut h = Hits::default();
    for r in trace {
        let a = *addrs.entry(r.object).or_insert_with(|| address(r.object));
        let seg = SegmentRef { title: r.object >> 32, seq: r.object & 0xffff_ffff };
        set.observe(seg, r.at_ms);
        let hit = set.contains(&a);
        h.count(r, hit);
        if hit {
            set.touch(&a, r.at_ms);
        } else {
            let _ = set.admit(a, r.size, Offer::Fetched, Some(seg), r.at_ms);
        }
    }
    h
}

/// Least recently used, every miss admitted.
pub fn replay_lru(trace: &[Request], capacity: u64) -> Hits {
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut order: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut sizes: HashMap<u64, u64> = HashMap::new();
    let mut used = 0u64;
    let mut h = Hits::default();
    for (t, r) in trace.iter().enumerate() {
        let t = t as u64;
        let hit = last.contains_key(&r.object);
        h.count(r, hit);
        if let Some(prev) = last.insert(r.object, t) {
            order.remove(&(prev, r.object));
        } else {
            while used + r.size > capacity {
                let Some((_, victim)) = order.pop_first() else { break };
                last.remove(&victim);
                used -= sizes.remove(&victim).unwrap_or(0);
            }
            if r.size > capacity {
                last.remove(&r.object);
                continue;
            }
            sizes.insert(r.object, r.size);
            used += r.size;
        }
        order.insert((t, r.object));
    }
    h
}

/// Belady: evict what is asked again furthest in the future (never again
/// first); a miss asked again later than everything held is not admitted.
/// The optimum for objects of one size; with sizes as close as segments of
/// a few seconds, the bound to measure against.
pub fn replay_belady(trace: &[Request], capacity: u64) -> Hits {
    // next[i]: where trace[i]'s object is asked next (u64::MAX: never).
    let mut next = vec![u64::MAX; trace.len()];
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for (i, r) in trace.iter().enumerate().rev() {
        if let Some(n) = seen.insert(r.object, i as u64) {
            next[i] = n;
        }
    }
    let mut held: HashMap<u64, (u64, u64)> = HashMap::new(); // object -> (next use, size)
    let mut order: BTreeSet<(u64, u64)> = BTreeSet::new(); // (next use, object)
    let mut used = 0u64;
    let mut h = Hits::default();
    for (i, r) in trace.iter().enumerate() {
        let n = next[i];
        if let Some((prev, size)) = held.get(&r.object).copied() {
            h.count(r, true);
            order.remove(&(prev, r.object));
            held.insert(r.object, (n, size));
            order.insert((n, r.object));
            continue;
        }
        h.count(r, false);
        if n == u64::MAX || r.size > capacity {
            continue;
        }
        // Make room from the furthest next use down, unless this one is further.
        while used + r.size > capacity {
            let Some(&(far, victim)) = order.last() else { break };
            if far < n {
                break;
            }
            order.pop_last();
            used -= held.remove(&victim).map_or(0, |(_, s)| s);
        }
        if used + r.size <= capacity {
            held.insert(r.object, (n, r.size));
            order.insert((n, r.object));
            used += r.size;
        }
    }
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// One request per second, in the order given.
    fn timed(objects: impl IntoIterator<Item = u64>) -> Vec<Request> {
        objects.into_iter().enumerate().map(|(i, object)| Request { object, size: 1, at_ms: i as u64 * 1000 }).collect()
    }

    #[test]
    fn lru_and_belady_on_a_textbook_sequence() {
        // Capacity 3, the classic sequence: LRU 4 hits of 12... Belady 6.
        let t = timed([1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5]);
        assert_eq!(replay_lru(&t, 3).hit_requests, 2);
        assert_eq!(replay_belady(&t, 3).hit_requests, 5);
        // Everything fits: every repeat hits, for every policy.
        let all = replay_residency(&t, 100).hit_requests;
        assert_eq!((replay_lru(&t, 100).hit_requests, replay_belady(&t, 100).hit_requests, all), (7, 7, 7));
    }

    #[test]
    fn belady_bounds_the_others_on_a_hot_set_with_a_scan() {
        // A hot set asked again and again, with one long scan through it.
        let mut objects = Vec::new();
        for round in 0..50u64 {
            objects.extend(0..5);
            if round == 10 {
                objects.extend(100..140);
            }
        }
        let t = timed(objects);
        let (lru, ours, opt) = (replay_lru(&t, 8), replay_residency(&t, 8), replay_belady(&t, 8));
        assert!(opt.hit_requests >= ours.hit_requests && opt.hit_requests >= lru.hit_requests, "{opt:?} {ours:?} {lru:?}");
        // The hot set is all but 5 first misses and what the scan costs.
        assert!(ours.hit_requests >= 250 - 5 - 5 - 10 && lru.hit_requests >= 250 - 5 - 5 - 10, "{ours:?} {lru:?}");
    }

    #[test]
    fn traces_are_seeded_and_sized_as_asked() {
        let titles = catalogue(50, &mut Rng::new(1));
        assert_eq!(titles, catalogue(50, &mut Rng::new(1)));
        assert!(titles.iter().all(|t| t.segments >= 1 && t.segment_bytes >= 256 << 10));
        let a = zipf_trace(&titles, 100, 0.8, 1.0, &mut Rng::new(2));
        assert_eq!(a, zipf_trace(&titles, 100, 0.8, 1.0, &mut Rng::new(2)));
        assert!(a.iter().all(|r| (r.object >> 32) < 50));
    }
}
