//! Outboard decoding and root merging: never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::outboard::Outboard;

fuzz_target!(|data: &[u8]| {
    if let Ok(ob) = Outboard::decode(data) {
        assert_eq!(ob.encode(), data);
        let _ = ob.root();
        let _ = ob.verify_group(0, &data[..data.len().min(16384)]);
    }
});
