//! Frame parsing and opening: never panic, and whatever parses re-encodes to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::frame::{self, FrameKind};
use tranzcast_proto::keys::{self, Expected, TitleKey};

fuzz_target!(|data: &[u8]| {
    if let Ok((h, len)) = frame::parse_header(data) {
        assert_eq!(h.encode().expect("parsed header encodes"), &data[..len]);
    }
    if let Ok(f) = frame::parse_frame(data) {
        let key = TitleKey::from_bytes([7; 32]);
        let exp = Expected { title: &f.header.title, kind: FrameKind::Media, sequence: f.header.sequence };
        let _ = keys::open(&key, data, &exp);
    }
});
