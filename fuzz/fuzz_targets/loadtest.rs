//! The load test's inputs from hostile bytes: scenario files (TOML),
//! cluster descriptions (JSON) and Prometheus text parse to a value or an
//! error, never a panic; a scenario that parses plans its crowd and plays
//! a viewer through the player model without panicking either.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tranzcast_loadtest::demand::plan;
use tranzcast_loadtest::playout::{AccessLink, Player};
use tranzcast_loadtest::probe::{Counters, sum};
use tranzcast_loadtest::target::ClusterFile;
use tranzcast_loadtest::Scenario;

fuzz_target!(|data: &[u8]| {
    let _ = ClusterFile::parse(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = sum(text, "edge_hits_total");
    let _ = Counters::parse("edge", text);
    let Ok(s) = Scenario::parse(text) else { return };
    let _ = s.runs();
    let _ = (s.segment_size(), s.segment_wall());
    if s.viewers.count <= 2000 {
        let segments = 1 + u64::from(data.len() as u8 % 40);
        for v in plan(&s, segments).iter().take(20) {
            let mut p = Player::new(segments, v.watch, v.seek, s.segment_wall(), u64::from(s.viewers.buffer_segments));
            let mut link = AccessLink::new(s.viewers.access_mbps, Duration::from_secs_f64(s.viewers.access_rtt_ms / 1000.0));
            let mut now = Duration::ZERO;
            for _ in 0..200 {
                if p.done() {
                    break;
                }
                let _ = p.take_seek();
                while let Some(i) = p.want() {
                    now = link.deliver(now, now, 1 << 18);
                    p.ready(i, now);
                }
                now = p.deadline().unwrap_or(now + Duration::from_millis(1));
                p.tick(now);
            }
        }
    }
});
