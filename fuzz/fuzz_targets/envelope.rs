//! Sealed secrets as a shared database hands them back (hostile: whoever
//! writes the database without the KEK): opening never panics, only what
//! was sealed for that row under that KEK opens, and to what was sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::envelope::Kek;

fuzz_target!(|data: &[u8]| {
    let kek = Kek::new([0x5a; 32]);
    let (name, sealed) = data.split_at(data.len().min(8));
    let name = String::from_utf8_lossy(name);
    // Arbitrary bytes: an error (a forgery would need the KEK).
    if let Ok(secret) = kek.open(&name, sealed) {
        // Only possible for bytes that really were sealed under this KEK.
        assert_eq!(kek.seal(&name, &secret).len(), sealed.len());
    }
    let _ = kek.open32(&name, sealed);
    // What is sealed opens for its row only.
    let s = kek.seal(&name, sealed);
    assert_eq!(kek.open(&name, &s).unwrap(), sealed);
    assert!(kek.open(&format!("{name}x"), &s).is_err());
    let _ = Kek::from_hex(&String::from_utf8_lossy(data));
});
