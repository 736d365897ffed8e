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
    for spoil in [|s: &mut SourceView| s.demoted = true, |s: &mut SourceView| s.healthy = false, |s: &mut SourceView| s.throughput = None] {
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
