//! Manifest decoding: never panic; whatever decodes re-signs to a manifest that decodes the same.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use tranzcast_proto::manifest::{self, SignedManifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(sm) = SignedManifest::decode(data) {
        let key = SigningKey::from_bytes(&[3; 32]);
        let _ = sm.verify(&key.verifying_key());
        let again = sm.manifest.sign(&key).expect("decoded manifest re-signs");
        assert_eq!(manifest::open(&again, &key.verifying_key()).expect("re-signed opens"), sm.manifest);
    }
});
