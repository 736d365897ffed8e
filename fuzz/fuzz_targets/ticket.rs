//! Ticket and certificate parsing, binary and text: never panic; what decodes re-signs identically.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use tranzcast_proto::ticket::{SignedToken, Token};

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[4; 32]);
    if let Ok(st) = SignedToken::decode(data) {
        let _ = st.verify(&key.verifying_key());
        let again = match &st.token {
            Token::Ticket(t) => t.sign(&key),
            Token::Certificate(c) => c.sign(&key),
        };
        assert_eq!(again[..128], data[..128]);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = SignedToken::from_text(s);
    }
});
