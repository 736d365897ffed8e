//! The scheduler over a simulated network: sources with rates, round trips,
//! rate changes, stalls, hangs, resets and liars; a fake clock; seeded.
//! Thousands of random scenarios each check the invariants below; a failing
//! one prints its seed, and `SIM_SEED=<seed> cargo test -p tranzcast-client
//! sim_random` replays it alone.
//!
//! Invariants: every frame output is its blob (a liar never gets a wrong byte
//! through); output in order, each segment once; the playback finishes
//! whenever an honest source can serve every segment, and always ends (no
//! deadlock: while work is left the scheduler always has something in the
//! air or a deadline); every request asked is cancelled exactly once and
//! nothing is left counted at a source; no segment is asked more than a
//! bounded number of times; with honest sources the bytes sent per byte
//! delivered and the time to finish stay within stated factors of the ideal.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, clippy::cast_precision_loss)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tranzcast_proto::BlobAddress;
use tranzcast_proto::outboard::Outboard;

use super::{Action, Answer, OutboardAnswer, Scheduler, TransferId};
use crate::Event;
use crate::scoring::SourceView;

/// A small seeded generator (splitmix64): scenarios replay from their seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// How a simulated source misbehaves (per request).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Honest,
    /// Never answers anything.
    Hang,
    /// Answers, sends this many bytes of each body, then nothing more.
    Stall(u64),
    /// Answers, sends this many bytes of each body, then resets.
    Reset(u64),
    /// Flips a byte at this offset of every blob it sends.
    Liar(u64),
    /// Sends a corrupt outboard.
    BadOutboard,
    /// Sends the outboard of an empty blob (valid as an encoding; one group
    /// or less is only checked against the address when its group comes).
    EmptyOutboard,
    /// Answers 503 to everything.
    Refuses,
    /// Serves this many requests, then never answers again (a parent gone silent).
    HangAfter(u32),
}

#[derive(Debug, Clone)]
struct SimSource {
    name: String,
    /// Bytes/s, shared equally by its requests in flight.
    rate: f64,
    rtt: Duration,
    behaviour: Behaviour,
    /// (at, factor): its rate changes at this time since the start.
    change: Option<(Duration, f64)>,
    /// A peer: serves only these segments.
    holds: Option<Vec<bool>>,
}

impl SimSource {
    fn honest(&self) -> bool {
        self.behaviour == Behaviour::Honest
    }
    fn rate_at(&self, since: Duration) -> f64 {
        match self.change {
            Some((at, f)) if since >= at => self.rate * f,
            _ => self.rate,
        }
    }
    fn serves(&self, seg: usize) -> bool {
        self.holds.as_ref().is_none_or(|h| h[seg])
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    blobs: Vec<Vec<u8>>,
    sources: Vec<SimSource>,
    parallel: usize,
    /// Play in order (else: want segments at random, some raced).
    play: bool,
}

impl Scenario {
    fn random(seed: u64) -> Self {
        let mut r = Rng(seed);
        let segments = 2 + r.below(9) as usize;
        let seg_len = 20_000 + r.below(180_000) as usize;
        let total: usize = seg_len * segments;
        let mut blobs = Vec::new();
        let mut left = total;
        for i in 0..segments {
            let len = if i + 1 == segments { left.min(seg_len) } else { seg_len };
            left = left.saturating_sub(len);
            blobs.push((0..len.div_ceil(8)).flat_map(|_| r.next().to_le_bytes()).take(len).collect());
        }
        let n = 1 + r.below(5) as usize;
        let mut sources = Vec::new();
        for k in 0..n {
            let behaviour = if (k == 0 && !r.chance(0.05)) || r.chance(0.6) {
                Behaviour::Honest
            } else {
                match r.below(6) {
                    0 => Behaviour::Hang,
                    1 => Behaviour::Stall(r.below(seg_len as u64)),
                    2 => Behaviour::Reset(r.below(seg_len as u64)),
                    3 => Behaviour::Liar(r.below(seg_len as u64)),
                    4 => Behaviour::BadOutboard,
                    _ => Behaviour::Refuses,
                }
            };
            let change = r.chance(0.25).then(|| (Duration::from_millis(r.below(2_000)), [0.1, 0.3, 3.0][r.below(3) as usize]));
            // A peer holding some segments (never the first honest source).
            let holds = (k > 0 && r.chance(0.2)).then(|| (0..segments).map(|_| r.chance(0.6)).collect());
            sources.push(SimSource {
                name: format!("s{k}"),
                rate: 500_000.0 + r.unit() * 20e6,
                rtt: Duration::from_micros(200 + r.below(80_000)),
                behaviour,
                change,
                holds,
            });
        }
        // The honest source is not always the first one the scheduler sees.
        let rot = r.below(n as u64) as usize;
        sources.rotate_left(rot);
        Self { seed, blobs, sources, parallel: 1 + r.below(6) as usize, play: r.chance(0.8) }
    }

    /// Whether some honest source can serve every segment.
    fn servable(&self) -> bool {
        (0..self.blobs.len()).all(|i| self.sources.iter().any(|s| s.honest() && s.serves(i)))
    }
}

#[derive(Debug)]
struct Request {
    source: usize,
    segment: usize,
    from: u64,
    to: u64,
    sent: u64,
    credit: f64,
    answer_at: Instant,
    answered: bool,
    outboard_at: Option<Instant>,
    /// Stalled: sends nothing more.
    stalled: bool,
    /// Never answered.
    hangs: bool,
}

/// What one run of a scenario gave.
#[derive(Debug, Default)]
struct Outcome {
    outputs: Vec<u64>,
    ready: BTreeMap<u64, Bytes>,
    unavailable: BTreeSet<u64>,
    events: Vec<Event>,
    asks: BTreeMap<u64, usize>,
    bytes_sent: u64,
    steps: u64,
    /// Each source's throughput estimate at the end.
    estimates: Vec<Option<f64>>,
    elapsed: Duration,
    finished: bool,
}

/// Runs a scenario to its end (or `limit` of simulated time).
fn run(sc: &Scenario, limit: Duration) -> Result<Outcome, String> {
    let start = Instant::now();
    let mut now = start;
    let encoded: Vec<(BlobAddress, Vec<u8>)> = sc
        .blobs
        .iter()
        .map(|b| {
            let (a, o) = Outboard::compute(b);
            (a, o.encode())
        })
        .collect();
    let addrs: Vec<BlobAddress> = encoded.iter().map(|(a, _)| *a).collect();
    let views = sc
        .sources
        .iter()
        .map(|s| {
            let mut v = SourceView::new(&s.name, s.holds.is_none());
            v.rtt = Some(s.rtt);
            v.holds = s.holds.clone();
            v
        })
        .collect();
    let expect = sc.blobs.iter().map(Vec::len).max().unwrap_or(0) as u64;
    let mut sched = Scheduler::new(addrs, expect, sc.parallel, views);
    let n = sc.blobs.len() as u64;
    let mut out = Outcome::default();
    let mut wanted: BTreeSet<u64> = BTreeSet::new();
    let mut r = Rng(sc.seed ^ 0xA5A5);
    if sc.play {
        sched.play(BTreeMap::new(), now);
    } else {
        // A few segments wanted at once, some raced (a player seeking about).
        for _ in 0..(1 + r.below(n)) {
            let i = r.below(n);
            if wanted.insert(i) {
                sched.want(i, r.chance(0.5), now);
            }
        }
    }
    let mut reqs: BTreeMap<TransferId, Request> = BTreeMap::new();
    // Requests each source has been asked (for HangAfter).
    let mut asked_of: Vec<u32> = vec![0; sc.sources.len()];
    let mut cancelled: BTreeSet<TransferId> = BTreeSet::new();
    // Bytes go out in chunks of this much (or the last ones of a request).
    const CHUNK: f64 = 16_384.0;
    // SIM_TRACE=1: every action with its time (with SIM_SEED, or one scripted test).
    let trace = std::env::var("SIM_TRACE").is_ok();
    loop {
        // The scheduler's actions.
        while let Some(a) = sched.poll_action() {
            if trace {
                let what = match &a {
                    Action::Ready { segment, .. } => format!("Ready {segment}"),
                    Action::Output { segment, .. } => format!("Output {segment}"),
                    other => format!("{other:?}"),
                };
                eprintln!("{:>8.1} ms {what}", now.saturating_duration_since(start).as_secs_f64() * 1e3);
            }
            match a {
                Action::Ask { id, source, segment, from, to, outboard } => {
                    let s = &sc.sources[source];
                    let len = sc.blobs[segment as usize].len() as u64;
                    *out.asks.entry(segment).or_default() += 1;
                    asked_of[source] += 1;
                    let hangs = matches!(s.behaviour, Behaviour::HangAfter(k) if asked_of[source] > k);
                    if reqs.contains_key(&id) || cancelled.contains(&id) {
                        return Err(format!("request {id} asked twice"));
                    }
                    reqs.insert(
                        id,
                        Request {
                            source,
                            segment: segment as usize,
                            from,
                            to: to.unwrap_or(len).min(len),
                            sent: from,
                            credit: 0.0,
                            answer_at: now + s.rtt,
                            answered: false,
                            hangs,
                            outboard_at: outboard.then(|| now + s.rtt.mul_f64(0.5 + r.unit() * 1.5)),
                            stalled: false,
                        },
                    );
                }
                Action::Cancel { id } => {
                    if !cancelled.insert(id) {
                        return Err(format!("request {id} cancelled twice"));
                    }
                    if reqs.remove(&id).is_none() {
                        return Err(format!("request {id} cancelled, never asked"));
                    }
                }
                Action::Pulse => {}
                Action::Ready { segment, frame, .. } => {
                    if frame[..] != sc.blobs[segment as usize][..] {
                        return Err(format!("segment {segment}: a wrong frame was made ready"));
                    }
                    out.ready.insert(segment, frame);
                }
                Action::Unavailable { segment, .. } => {
                    out.unavailable.insert(segment);
                }
                Action::Output { segment, frame, .. } => {
                    if frame[..] != sc.blobs[segment as usize][..] {
                        return Err(format!("segment {segment}: a wrong frame was output"));
                    }
                    if segment != out.outputs.len() as u64 {
                        return Err(format!("segment {segment} output after {:?}", out.outputs));
                    }
                    out.outputs.push(segment);
                }
                Action::Event(e) => out.events.push(e),
            }
        }
        let finished = if sc.play {
            out.outputs.len() as u64 == n || !out.unavailable.is_empty()
        } else {
            wanted.iter().all(|i| out.ready.contains_key(i) || out.unavailable.contains(i))
        };
        if finished {
            out.finished = true;
            out.estimates = sched.sources().iter().map(|v| v.throughput).collect();
            out.elapsed = now - start;
            // Nothing may be left asked, nor counted at a source.
            if let Some((id, q)) = reqs.iter().next() {
                return Err(format!("request {id} (segment {}) left in the air", q.segment));
            }
            if sched.in_flight() != 0 {
                return Err(format!("{} transfers left in the scheduler", sched.in_flight()));
            }
            if let Some(v) = sched.sources().iter().find(|v| v.ours_in_flight != 0) {
                return Err(format!("{} still counts {} of our requests", v.name, v.ours_in_flight));
            }
            return Ok(out);
        }
        if now - start > limit {
            out.elapsed = now - start;
            return Ok(out);
        }
        // Nothing in the air and no deadline: nothing will ever happen again.
        let timeout = sched.poll_timeout();
        if reqs.is_empty() && timeout.is_none() {
            return Err(format!("deadlock at {:?}: nothing in the air, no deadline", now - start));
        }
        // Time moves: a millisecond while bytes flow, else to the next event.
        let streaming = reqs.values().any(|q| q.answered && !q.stalled && q.sent < q.to);
        // (A hung source's answers never come.)
        let next_event = reqs
            .values()
            .filter(|q| sc.sources[q.source].behaviour != Behaviour::Hang && !q.hangs)
            .flat_map(|q| [(!q.answered).then_some(q.answer_at), q.outboard_at])
            .flatten()
            .chain(timeout)
            .min();
        // Time moves to the next thing that happens: an answer, a deadline,
        // or the next chunk of some request (its source's rate shared by
        // the requests streaming there).
        let since = now - start;
        let mut active: BTreeMap<usize, usize> = BTreeMap::new();
        for q in reqs.values().filter(|q| q.answered && !q.stalled && q.sent < q.to) {
            *active.entry(q.source).or_default() += 1;
        }
        let next_chunk = reqs
            .values()
            .filter(|q| q.answered && !q.stalled && q.sent < q.to)
            .map(|q| {
                let share = sc.sources[q.source].rate_at(since) / active[&q.source] as f64;
                let need = (CHUNK.min((q.to - q.sent) as f64) - q.credit).max(0.0);
                Duration::from_secs_f64(need / share.max(1.0))
            })
            .min();
        let dt = [next_chunk, next_event.map(|t| t.saturating_duration_since(now))]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_millis(1))
            .clamp(Duration::from_micros(1), Duration::from_millis(50));
        now += dt;
        out.steps += 1;
        let since = now - start;
        // Outboards and answers due.
        let ids: Vec<TransferId> = reqs.keys().copied().collect();
        for id in &ids {
            let Some(q) = reqs.get_mut(id) else { continue };
            let s = &sc.sources[q.source];
            if s.behaviour == Behaviour::Hang || q.hangs {
                continue;
            }
            if let Some(at) = q.outboard_at
                && now >= at
            {
                q.outboard_at = None;
                let answer = match s.behaviour {
                    _ if !s.serves(q.segment) => OutboardAnswer::NotFound,
                    Behaviour::Refuses => OutboardAnswer::Failed("status 503".into()),
                    Behaviour::EmptyOutboard => {
                        OutboardAnswer::Found(Bytes::from(tranzcast_proto::outboard::Outboard { len: 0, cvs: Vec::new() }.encode()))
                    }
                    Behaviour::BadOutboard => {
                        let mut b = encoded[q.segment].1.clone();
                        let k = b.len() - 1;
                        b[k] ^= 1;
                        OutboardAnswer::Found(Bytes::from(b))
                    }
                    _ => OutboardAnswer::Found(Bytes::from(encoded[q.segment].1.clone())),
                };
                sched.outboard(*id, answer, now);
            }
            let Some(q) = reqs.get_mut(id) else { continue };
            if !q.answered && now >= q.answer_at {
                q.answered = true;
                let len = sc.blobs[q.segment].len() as u64;
                let answer = match s.behaviour {
                    _ if !s.serves(q.segment) => Answer::NotFound,
                    Behaviour::Refuses => Answer::Other(503),
                    _ if q.from == 0 && q.to == len => Answer::Whole,
                    _ => Answer::Partial,
                };
                sched.answered(*id, answer, now);
            }
        }
        // Bytes flow, each source's rate shared by its requests.
        if streaming {
            for id in &ids {
                let Some(q) = reqs.get_mut(id) else { continue };
                if !q.answered || q.stalled || q.sent >= q.to {
                    continue;
                }
                let s = &sc.sources[q.source];
                let Some(k) = active.get(&q.source) else { continue };
                q.credit += s.rate_at(since) * dt.as_secs_f64() / *k as f64;
                let take = (q.credit as u64).min(q.to - q.sent);
                if (take as f64) < CHUNK * 0.999 && q.sent + take < q.to {
                    continue;
                }
                q.credit -= take as f64;
                let (a, mut b) = (q.sent, q.sent + take);
                match s.behaviour {
                    Behaviour::Stall(at) | Behaviour::Reset(at) if b > q.from + at => b = (q.from + at).max(a),
                    _ => {}
                }
                let mut chunk = sc.blobs[q.segment][a as usize..b as usize].to_vec();
                if let Behaviour::Liar(at) = s.behaviour
                    && (a..b).contains(&at)
                {
                    chunk[(at - a) as usize] ^= 0x40;
                }
                q.sent = b;
                out.bytes_sent += chunk.len() as u64;
                let (done, seg_from) = (q.sent >= q.to, q.from);
                let cut = match s.behaviour {
                    Behaviour::Stall(at) if q.sent >= seg_from + at && !done => Some(false),
                    Behaviour::Reset(at) if q.sent >= seg_from + at && !done => Some(true),
                    _ => None,
                };
                if cut == Some(false) {
                    q.stalled = true;
                }
                if !chunk.is_empty() {
                    sched.data(*id, &chunk, now);
                }
                if !reqs.contains_key(id) {
                    continue;
                }
                match cut {
                    Some(true) => sched.failed(*id, "connection reset".into(), now),
                    Some(false) => {}
                    None if done => sched.ended(*id, now),
                    None => {}
                }
            }
        }
        if timeout.is_some_and(|t| now >= t) || sched.poll_timeout().is_some_and(|t| now >= t) {
            sched.handle_timeout(now);
        }
    }
}

/// The playback's ideal time: every source that serves at its full rate
/// from the start, the bytes spread over them perfectly, plus a round trip.
fn ideal_secs(sc: &Scenario) -> f64 {
    let total: usize = sc.blobs.iter().map(Vec::len).sum();
    let rate: f64 =
        sc.sources.iter().filter(|s| s.honest() && s.holds.is_none()).map(|s| s.rate * s.change.map_or(1.0, |(_, f)| f.min(1.0))).sum();
    let rtt = sc.sources.iter().filter(|s| s.honest()).map(|s| s.rtt).min().unwrap_or_default().as_secs_f64();
    // Each request pays a round trip; the window keeps `parallel` (and the first) in the air.
    let rounds = (sc.blobs.len() as f64 / (sc.parallel as f64 + 1.0)).ceil();
    total as f64 / rate.max(1.0) + rtt * rounds
}

fn check(sc: &Scenario) -> Result<Outcome, String> {
    let out = run(sc, Duration::from_secs(600))?;
    let n = sc.blobs.len() as u64;
    if !out.finished {
        return Err(format!("not finished after {:?}", out.elapsed));
    }
    if sc.servable() && !out.unavailable.is_empty() {
        return Err(format!("segments {:?} unavailable though an honest source serves them: {:?}", out.unavailable, out.events));
    }
    let bound = 4 * sc.sources.len() + 8;
    if let Some((seg, k)) = out.asks.iter().find(|(_, k)| **k > bound) {
        return Err(format!("segment {seg} asked {k} times (bound {bound})"));
    }
    let all_honest = sc.sources.iter().all(SimSource::honest);
    let steady = sc.sources.iter().all(|s| s.change.is_none() && s.holds.is_none());
    if sc.play && all_honest && out.unavailable.is_empty() {
        let delivered: usize = sc.blobs.iter().map(Vec::len).sum();
        let waste = out.bytes_sent as f64 / delivered as f64;
        // A race costs at most its losers' first quarters; the rest is
        // slow sources left mid-segment (their bytes in the air are lost).
        if waste > 2.0 {
            return Err(format!("{waste:.2} bytes sent per byte delivered"));
        }
        if steady {
            let (took, ideal) = (out.elapsed.as_secs_f64(), ideal_secs(sc));
            // Start-up (the race, unmeasured sources) and a window per
            // source cost some; an order of magnitude more is a bug.
            if took > 12.0 * ideal + 0.5 {
                return Err(format!("took {took:.3} s against an ideal {ideal:.3} s ({} segments)", n));
            }
        }
    }
    Ok(out)
}

#[test]
fn sim_random_scenarios_keep_every_invariant() {
    let (first, count) = match std::env::var("SIM_SEED").ok().and_then(|s| s.parse::<u64>().ok()) {
        Some(seed) => (seed, 1),
        None => (1, std::env::var("SIM_COUNT").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000)),
    };
    let started = std::time::Instant::now();
    let mut worst_waste: f64 = 0.0;
    let mut worst_ratio: f64 = 0.0;
    let mut worst_seed = 0;
    let mut worst_waste_seed = 0;
    // Over every honest playback: bytes sent and delivered, and each steady one's time / ideal.
    let (mut sent_all, mut delivered_all, mut ratios) = (0u64, 0u64, Vec::new());
    let mut failures = Vec::new();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for seed in first..first + count {
        let sc = Scenario::random(seed);
        if count == 1 {
            // Replaying one: say what happened.
            let out = run(&sc, Duration::from_secs(600));
            let lens: Vec<usize> = sc.blobs.iter().map(Vec::len).collect();
            eprintln!("{:?}\nparallel {} play {} segments {lens:?}\nideal {:.3} s", sc.sources, sc.parallel, sc.play, ideal_secs(&sc));
            if let Ok(o) = &out {
                eprintln!("took {:?}, sent {} bytes, asks {:?}\n{:#?}", o.elapsed, o.bytes_sent, o.asks, o.events);
            }
        }
        match check(&sc) {
            Ok(out) => {
                if std::env::var("SIM_STEPS").is_ok() {
                    eprintln!("seed {seed} steps {} sim {:?}", out.steps, out.elapsed);
                }
                for e in &out.events {
                    let kind = match e {
                        Event::Race { .. } => "races",
                        Event::Switched { .. } => "switches",
                        Event::Demoted { .. } => "demotions",
                        Event::Resumed { .. } => "resumptions",
                        Event::Split { .. } => "splits",
                        Event::Stall { .. } => "stalls",
                        Event::Segment { .. } => "segments",
                    };
                    *seen.entry(kind).or_default() += 1;
                }
                *seen.entry("unavailable").or_default() += out.unavailable.len();
                if sc.play && sc.sources.iter().all(SimSource::honest) {
                    let delivered: usize = sc.blobs.iter().map(Vec::len).sum();
                    let waste = out.bytes_sent as f64 / delivered as f64;
                    (sent_all, delivered_all) = (sent_all + out.bytes_sent, delivered_all + delivered as u64);
                    if waste > worst_waste {
                        (worst_waste, worst_waste_seed) = (waste, seed);
                    }
                    if sc.sources.iter().all(|s| s.change.is_none() && s.holds.is_none()) {
                        let ratio = out.elapsed.as_secs_f64() / ideal_secs(&sc);
                        ratios.push(ratio);
                        if ratio > worst_ratio {
                            worst_ratio = ratio;
                            worst_seed = seed;
                        }
                    }
                }
            }
            Err(e) => failures.push(format!("seed {seed}: {e}\n  {:?}", sc.sources)),
        }
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    eprintln!(
        "{count} scenarios in {:.1} s; bytes sent per byte delivered (honest) {:.3} in all, worst {worst_waste:.2} (seed {worst_waste_seed}); time / ideal (steady, honest) median {median:.2}, worst {worst_ratio:.1} (seed {worst_seed}); {seen:?}",
        started.elapsed().as_secs_f64(),
        sent_all as f64 / delivered_all.max(1) as f64
    );
    assert!(failures.is_empty(), "{} of {count} scenarios failed (replay one with SIM_SEED):\n{}", failures.len(), failures.join("\n"));
}

mod scripted;
