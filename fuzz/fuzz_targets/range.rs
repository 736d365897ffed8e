//! Range and conditional evaluation on hostile header values: never panic,
//! and every range of a 206 is non-empty, inside the representation, in
//! ascending order and apart from the next (merged), never more than asked;
//! the one-pass path for `bytes=a-b` gives what the general parser gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::range::{Conditions, Decision, evaluate, parse_range_general, parse_range_max};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8])) % (1 << 40);
    let max_ranges = usize::from(data[8] % 80);
    let Ok(text) = std::str::from_utf8(&data[9..]) else { return };
    let mut parts = text.splitn(3, '\n');
    let (range, if_range, inm) = (parts.next(), parts.next(), parts.next());
    if let Some(v) = range {
        assert_eq!(parse_range_max(v, max_ranges), parse_range_general(v, max_ranges), "{v:?}");
    }
    match evaluate(&Conditions { range, if_range, if_none_match: inm, max_ranges }, "\"etag\"", len) {
        Decision::Partial(ranges) => {
            assert!(!ranges.is_empty() && ranges.len() <= max_ranges.clamp(1, 64));
            for r in &ranges {
                assert!(r.start < r.end && r.end <= len, "{r:?} of {len}");
            }
            for w in ranges.windows(2) {
                assert!(w[0].end < w[1].start, "{ranges:?} not merged");
            }
        }
        Decision::NotModified | Decision::Full | Decision::Unsatisfiable | Decision::BadRequest(_) => {}
    }
});
