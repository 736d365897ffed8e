//! Playback token parsing, binary and text, then the validity check and an
//! unseal attempt with an edge key: never panic, whatever the bytes.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use tranzcast_proto::playback::{EdgeKey, PlaybackToken};

fuzz_target!(|data: &[u8]| {
    let origin = SigningKey::from_bytes(&[4; 32]);
    let edge = EdgeKey::from_secret([1; 32]);
    let tokens = [PlaybackToken::decode(data).ok(), std::str::from_utf8(data).ok().and_then(|s| PlaybackToken::from_text(s).ok())];
    for t in tokens.into_iter().flatten() {
        let _ = t.verify(&origin.verifying_key());
        let _ = t.grant().check(1_790_000_000, std::net::IpAddr::from([127, 0, 0, 1]));
        // A structurally valid token may name our key: unsealing garbage must fail cleanly.
        assert!(t.unseal(&edge).is_err());
    }
});
