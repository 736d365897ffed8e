//! Realistic demand (pure): who arrives when, watches which title, for how
//! long, and where they seek. Everything comes from one seed, so a scenario
//! replays the same crowd.
//!
//! - Arrivals: a Poisson process. Given that `n` viewers arrive within a
//!   window, a homogeneous Poisson process places them as `n` independent
//!   uniform times, sorted; that is what [`arrivals`] does (exact, and the
//!   count is the scenario's, not a random one).
//! - Titles: Zipf popularity, rank `k` chosen with weight `1 / k^s`.
//! - Watch time: a share `watch_full` of viewers watch to the end; the others
//!   an exponentially distributed share of the title (mean `watch_mean`),
//!   at least one segment: most abandon early, a few stay long.
//! - Seeks: with `seek_probability`, once, after a uniform share of the
//!   watch, to a uniform segment of the title.

use std::time::Duration;

use crate::scenario::Scenario;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to
/// drive a simulation; not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Exponential with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// Zipf popularity over `n` ranks.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// Ranks 0..n with weight `1 / (rank + 1)^s`.
    pub fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        Self { cumulative }
    }

    /// A rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let u = rng.unit() * total;
        self.cumulative.partition_point(|c| *c <= u).min(self.cumulative.len() - 1)
    }

    /// The share of demand rank `k` gets.
    pub fn share(&self, k: usize) -> f64 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let prev = if k == 0 { 0.0 } else { self.cumulative[k - 1] };
        (self.cumulative.get(k).copied().unwrap_or(prev) - prev) / total
    }
}

/// `n` Poisson arrival times within `window` (see the module docs), ascending.
pub fn arrivals(n: usize, window: Duration, rng: &mut Rng) -> Vec<Duration> {
    let mut t: Vec<Duration> = (0..n).map(|_| window.mul_f64(rng.unit())).collect();
    t.sort();
    t
}

/// A seek during a viewing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seek {
    /// After this many segments played.
    pub after: u64,
    /// To this segment.
    pub to: u64,
}

/// One viewer's behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerPlan {
    /// Its number.
    pub id: usize,
    /// When it presses play, from the start of the run.
    pub arrival: Duration,
    /// Which title (index into the run's titles; 0 is the most popular).
    pub title: usize,
    /// Segments it plays in all (then stops), counting after a seek.
    pub watch: u64,
    /// Its one seek, if any.
    pub seek: Option<Seek>,
}

/// Every viewer's plan for a scenario whose titles have `segments` segments each.
pub fn plan(s: &Scenario, segments: u64) -> Vec<ViewerPlan> {
    let mut rng = Rng::new(s.seed);
    let v = &s.viewers;
    let n = v.count as usize;
    let times = arrivals(n, Duration::from_secs_f64(v.arrival_seconds), &mut rng);
    let zipf = Zipf::new(s.titles.count as usize, v.zipf_s);
    let segments = segments.max(1);
    times
        .into_iter()
        .enumerate()
        .map(|(id, arrival)| {
            let title = zipf.sample(&mut rng);
            let watch = if rng.unit() < v.watch_full {
                segments
            } else {
                ((rng.exponential(v.watch_mean) * segments as f64).ceil() as u64).clamp(1, segments)
            };
            let seek =
                (rng.unit() < v.seek_probability && watch >= 2).then(|| Seek { after: 1 + rng.below(watch - 1), to: rng.below(segments) });
            ViewerPlan { id, arrival, title, watch, seek }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn zipf_follows_its_law() {
        let z = Zipf::new(100, 0.8);
        let mut rng = Rng::new(7);
        let mut count = [0u32; 100];
        let n = 200_000;
        for _ in 0..n {
            count[z.sample(&mut rng)] += 1;
        }
        for k in [0usize, 1, 9, 99] {
            let seen = f64::from(count[k]) / f64::from(n);
            assert!((seen - z.share(k)).abs() < 0.15 * z.share(k) + 0.001, "rank {k}: {seen} vs {}", z.share(k));
        }
        // Rank 1 against rank 10: (10/1)^0.8 = 6.3 times the demand.
        let ratio = f64::from(count[0]) / f64::from(count[9]);
        assert!((5.5..7.2).contains(&ratio), "{ratio}");
        // s = 0: uniform.
        let u = Zipf::new(4, 0.0);
        assert!((0..4).all(|k| (u.share(k) - 0.25).abs() < 1e-12));
    }

    #[test]
    fn arrivals_are_sorted_in_the_window_with_exponential_gaps() {
        let mut rng = Rng::new(3);
        let w = Duration::from_secs(10);
        let t = arrivals(10_000, w, &mut rng);
        assert!(t.windows(2).all(|p| p[0] <= p[1]) && t.iter().all(|x| *x < w));
        // Gaps of a Poisson process are exponential: mean 1 ms here, and
        // about e^-1 of them longer than the mean.
        let gaps: Vec<f64> = t.windows(2).map(|p| (p[1] - p[0]).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.001).abs() < 0.0001, "{mean}");
        let longer = gaps.iter().filter(|g| **g > mean).count() as f64 / gaps.len() as f64;
        assert!((longer - (-1f64).exp()).abs() < 0.03, "{longer}");
        assert!(arrivals(5, Duration::ZERO, &mut rng).iter().all(|x| x.is_zero()));
    }

    #[test]
    fn plans_follow_the_scenario_and_replay_from_the_seed() {
        let text = "name = \"t\"\nseed = 9\nmax_seconds = 60\n[titles]\ncount = 20\n[viewers]\ncount = 5000\narrival_seconds = 10\nzipf_s = 0.8\nwatch_full = 0.5\nwatch_mean = 0.2\nseek_probability = 0.3\n";
        let s = Scenario::parse(text).unwrap();
        let p = plan(&s, 12);
        assert_eq!(p, plan(&s, 12), "same seed, same crowd");
        assert_eq!(p.len(), 5000);
        assert!(p.iter().all(|v| v.title < 20 && (1..=12).contains(&v.watch)));
        let full = p.iter().filter(|v| v.watch == 12).count() as f64 / 5000.0;
        assert!((0.47..0.55).contains(&full), "{full}");
        let seeks: Vec<Seek> = p.iter().filter_map(|v| v.seek).collect();
        assert!((0.25..0.35).contains(&(seeks.len() as f64 / 5000.0)));
        assert!(p.iter().all(|v| v.seek.is_none_or(|k| k.after >= 1 && k.after < v.watch && k.to < 12)));
        let top = p.iter().filter(|v| v.title == 0).count();
        let tenth = p.iter().filter(|v| v.title == 9).count();
        assert!(top > 4 * tenth, "{top} vs {tenth}");
    }

    #[test]
    fn rng_is_uniform_enough() {
        let mut rng = Rng::new(1);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[rng.below(10) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| (9_500..10_500).contains(b)), "{buckets:?}");
        let mean = (0..100_000).map(|_| rng.exponential(2.0)).sum::<f64>() / 100_000.0;
        assert!((mean - 2.0).abs() < 0.05, "{mean}");
    }
}
