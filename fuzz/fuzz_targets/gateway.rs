//! A standard player's requests to the smart client's local gateway on
//! hostile bytes: the route (`proto::gateway`) and the range decision it
//! leads to. Never panic; only GET and HEAD of the title pass; every range
//! of a 206 is inside the plaintext, non-empty, ascending and merged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::gateway::route;
use tranzcast_proto::range::{Conditions, Decision, evaluate};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8])) % (1 << 42);
    let Ok(text) = std::str::from_utf8(&data[8..]) else { return };
    let mut lines = text.splitn(5, '\n');
    let (method, path) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    if route(method, path, "film").is_err() {
        return;
    }
    assert!(method == "GET" || method == "HEAD");
    let (range, if_range, if_none_match) = (lines.next(), lines.next(), lines.next());
    // The gateway takes at most 16 ranges of one request.
    if let Decision::Partial(ranges) = evaluate(&Conditions { range, if_range, if_none_match, max_ranges: 16 }, "\"film\"", len) {
        assert!(!ranges.is_empty() && ranges.len() <= 16);
        for r in &ranges {
            assert!(r.start < r.end && r.end <= len);
        }
        for w in ranges.windows(2) {
            assert!(w[0].end < w[1].start);
        }
    }
});
