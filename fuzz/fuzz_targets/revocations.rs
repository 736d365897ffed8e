//! The revocation list an edge pulls: never panic; what parses writes back to the same set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::revocations::{RevokedSerial, parse, to_json};

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = parse(data) {
        let list: Vec<RevokedSerial> = set.iter().map(|s| RevokedSerial { serial: *s, time: 0 }).collect();
        assert_eq!(parse(&to_json(&list)).ok(), Some(set));
    }
});
