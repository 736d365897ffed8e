//! Scripted scenarios, one per policy of the scheduler (a race, a slow
//! source, a silent one, the end-game split, a liar, a bad outboard), run
//! through the simulated network of `sim.rs`.

use std::time::Duration;

use super::{Behaviour, Outcome, Rng, Scenario, SimSource, check, run};
use crate::Event;

fn source(name: &str, mb_per_s: f64, rtt_ms: u64, behaviour: Behaviour) -> SimSource {
    SimSource { name: name.into(), rate: mb_per_s * 1e6, rtt: Duration::from_millis(rtt_ms), behaviour, change: None, holds: None }
}

fn scripted(sources: Vec<SimSource>, segments: usize, seg_len: usize, parallel: usize) -> (Scenario, Outcome) {
    let mut r = Rng(7);
    let blobs = (0..segments).map(|_| (0..seg_len).map(|_| r.next() as u8).collect()).collect();
    let sc = Scenario { seed: 7, blobs, sources, parallel, play: true };
    let out = check(&sc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.outputs.len(), segments, "{:?}", out.events);
    (sc, out)
}

#[test]
fn a_race_is_decided_at_a_quarter_so_the_loser_wastes_little() {
    // Two sources of the same pace race for the first segment (and one
    // segment is all there is): a race run to the end would have the
    // loser send nearly all of it for nothing.
    let seg = 1 << 20;
    let (_, out) = scripted(vec![source("a", 2.0, 5, Behaviour::Honest), source("b", 2.0, 5, Behaviour::Honest)], 1, seg, 4);
    assert!(out.events.iter().any(|e| matches!(e, Event::Race { index: 0, between } if between.len() == 2)), "{:?}", out.events);
    let wasted = out.bytes_sent - seg as u64;
    // The loser's first quarter at most (to its group boundary).
    assert!(wasted <= (seg as u64 / 4).div_ceil(16_384) * 16_384, "{wasted} bytes wasted");
    assert!(wasted > 0, "no race ran");
}

#[test]
fn a_striped_race_sends_nothing_twice_and_beats_the_fastest_source_alone() {
    // Three sources race for the first of several segments (its length is
    // the manifest's): each fetches its own quarter, so nothing is sent
    // twice; the slow one is cut at the claim and its rest goes elsewhere.
    let seg = 1 << 20;
    let sources =
        vec![source("a", 6.0, 5, Behaviour::Honest), source("b", 4.0, 5, Behaviour::Honest), source("c", 1.0, 5, Behaviour::Honest)];
    let (_, out) = scripted(sources, 3, seg, 1);
    assert!(out.events.iter().any(|e| matches!(e, Event::Race { index: 0, between } if between.len() == 3)), "{:?}", out.events);
    // What is lost is only what was in the air: the cut loser's partial
    // group, an end-game split's overlap (a race on one range would drop
    // both losers' first quarters, 512 KiB here).
    let wasted = out.bytes_sent - 3 * seg as u64;
    assert!(wasted <= 3 * 16_384, "{wasted} bytes sent twice: {:?}", out.events);
    // Racers ask from their stripes' starts: the claim moved the slow one's rest.
    assert!(out.asks[&0] >= 4, "{:?}", out.asks);
    // The whole title in less time than the fastest source alone takes (3 MiB at 6 MB/s).
    let alone = 3.0 * seg as f64 / 6e6;
    assert!(out.elapsed.as_secs_f64() < alone, "{:?} against {alone:.3} s alone", out.elapsed);
}

#[test]
fn an_outboard_of_the_wrong_length_is_refused_and_its_sender_demoted() {
    // The fastest racer answers every outboard with that of an empty blob:
    // taken, it would cut every stripe of the first segment away.
    let sources =
        vec![source("e", 8.0, 2, Behaviour::EmptyOutboard), source("b", 4.0, 5, Behaviour::Honest), source("c", 2.0, 5, Behaviour::Honest)];
    let (_, out) = scripted(sources, 3, 1 << 20, 2);
    assert!(
        out.events.iter().any(|e| matches!(e, Event::Demoted { source, reason } if source == "e" && reason.contains("manifest"))),
        "{:?}",
        out.events
    );
}

#[test]
fn a_racer_that_answers_and_sends_nothing_holds_the_first_segment_briefly() {
    // s answers at once and never sends a byte. Held past the claim (its
    // bytes might have been on their way), it is left at twice the winner's
    // time, its stripe goes elsewhere and is not asked of it again: the
    // first segment does not wait for a transfer timeout (10 s for an
    // unmeasured source).
    let sources =
        vec![source("a", 8.0, 5, Behaviour::Honest), source("s", 8.0, 1, Behaviour::Stall(0)), source("b", 4.0, 5, Behaviour::Honest)];
    let (_, out) = scripted(sources, 3, 1 << 20, 2);
    assert!(
        out.events.iter().any(|e| matches!(e, Event::Race { index: 0, between } if between.iter().any(|b| b == "s"))),
        "{:?}",
        out.events
    );
    // 3 MiB from 12 MB/s: about 0.26 s; a timeout would be 10 s.
    assert!(out.elapsed < Duration::from_secs(2), "{:?}: {:?}", out.elapsed, out.events);
}

#[test]
fn a_source_that_drops_to_a_tenth_mid_play_loses_its_work_not_the_playback() {
    // Half of the capacity is a's, until it drops to a tenth.
    let mut a = source("a", 4.0, 5, Behaviour::Honest);
    a.change = Some((Duration::from_millis(400), 0.1));
    let sources = vec![a, source("b", 2.0, 5, Behaviour::Honest), source("c", 2.0, 5, Behaviour::Honest)];
    let (sc, out) = scripted(sources, 10, 1 << 20, 6);
    // It was left mid-segment (not demoted: it is slow, not lying).
    assert!(out.events.iter().any(|e| matches!(e, Event::Switched { source, .. } if source == "a")), "{:?}", out.events);
    assert!(!out.events.iter().any(|e| matches!(e, Event::Demoted { .. })), "{:?}", out.events);
    // Within a third of what its sources could do after the drop.
    let after = 10.0 * f64::from(1u32 << 20) / (0.4e6 + 2e6 + 2e6);
    assert!(out.elapsed.as_secs_f64() < 2.0 * after, "{:?} for {} bytes", out.elapsed, 10 << 20);
    // The session saw it slow down (or stopped using it).
    assert!(out.estimates[0].is_none_or(|e| e < 2e6), "a still estimated at {:?}", out.estimates[0]);
    let _ = sc;
}

#[test]
fn the_last_segment_asked_of_a_silent_source_moves_to_an_idle_one_before_its_timeout() {
    // x is fast and wins the race for the first segment; then it goes
    // silent (its parent hung) for the last one, asked of it in the
    // end-game while b sits idle. Nothing measures a silence before the
    // answer timeout (a second or more), so without the end-game rule the
    // segment waited that long and x was demoted.
    let x = source("x", 32.0, 2, Behaviour::HangAfter(3));
    let (_, out) = scripted(vec![x, source("b", 4.0, 2, Behaviour::Honest)], 2, 1 << 20, 4);
    let left = out.events.iter().find_map(|e| match e {
        Event::Switched { index: 1, source, at: 0, reason } if source == "x" => Some(reason.clone()),
        _ => None,
    });
    let reason = left.unwrap_or_else(|| panic!("the last segment was not moved off the silent x: {:?}", out.events));
    assert!(reason.starts_with("no answer in "), "{reason}");
    assert!(!out.events.iter().any(|e| matches!(e, Event::Demoted { .. })), "{:?}", out.events);
    assert!(
        out.events.iter().any(|e| matches!(e, Event::Resumed { index: 1, source, .. } if source == "b")) || out.asks[&1] >= 2,
        "{:?}",
        out.events
    );
    // Well before x's answer timeout (1 s and up).
    assert!(out.elapsed < Duration::from_millis(900), "{:?} {:?} {:?}", out.elapsed, out.events, out.asks);
}

#[test]
fn the_last_segments_are_shared_so_sources_end_together() {
    // A fast source and a slow one: whole segments alone would leave the
    // slow one idle while the fast one fetches the last segment.
    let sources = vec![source("fast", 2.0, 2, Behaviour::Honest), source("slow", 0.5, 2, Behaviour::Honest)];
    let (_, out) = scripted(sources, 2, 1 << 20, 4);
    let splits: Vec<(u64, String, u64)> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Split { index, source, at } => Some((*index, source.clone(), *at)),
            _ => None,
        })
        .collect();
    // The idle slow source took the tail of the last segment (and, when
    // the first one's stripes left it idle before that, of the first),
    // from a group boundary: about its share of what was left (it runs at a quarter).
    let last = splits.iter().find(|(index, ..)| *index == 1);
    let (_, who, at) = last.unwrap_or_else(|| panic!("no end-game split of the last segment: {:?}", out.events));
    assert_eq!(who, "slow", "{:?}", out.events);
    assert!(splits.iter().all(|(_, who, at)| who == "slow" && at % 16_384 == 0 && *at > (1 << 19) && *at < (1 << 20)), "{:?}", out.events);
    let _ = at;
}

#[test]
fn a_fast_liar_that_wins_the_race_is_caught_and_its_good_groups_are_kept() {
    // The liar is the fastest and wins the race; its lie comes well past
    // the quarter, in the rest it fetches alone.
    let liar = source("liar", 20.0, 2, Behaviour::Liar(600_000));
    let (_, out) = scripted(vec![liar, source("b", 4.0, 2, Behaviour::Honest), source("c", 4.0, 2, Behaviour::Honest)], 2, 1 << 20, 4);
    assert!(out.events.iter().any(|e| matches!(e, Event::Demoted { source, .. } if source == "liar")), "{:?}", out.events);
    // The segment went on from the liar's last good group, elsewhere.
    let resumed = out.events.iter().find_map(|e| match e {
        Event::Resumed { index: 0, source, at } => Some((source.clone(), *at)),
        _ => None,
    });
    let (who, at) = resumed.unwrap_or_else(|| panic!("segment 0 did not resume: {:?}", out.events));
    assert_ne!(who, "liar");
    assert_eq!(at, 600_000 / 16_384 * 16_384, "resumed from the group the lie is in");
}

#[test]
fn a_seeded_failure_replays_from_its_seed() {
    // The same seed gives the same scenario and the same run, event for event.
    let (a, b) = (Scenario::random(4242), Scenario::random(4242));
    assert_eq!(a.blobs, b.blobs);
    let (ra, rb) = (run(&a, Duration::from_secs(600)).unwrap(), run(&b, Duration::from_secs(600)).unwrap());
    assert_eq!((ra.events, ra.bytes_sent, ra.elapsed, ra.asks), (rb.events, rb.bytes_sent, rb.elapsed, rb.asks));
}
