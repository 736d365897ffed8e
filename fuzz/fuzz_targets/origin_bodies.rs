//! The origin's JSON request bodies and Idempotency-Key on hostile bytes
//! (`proto::api`, what every route decides on): never panic; what is
//! accepted holds the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::api::{self, OrderTerms};

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = api::new_customer(data) {
        assert!(!name.is_empty() && name.len() <= 200 && name.trim() == name);
    }
    if let Ok(o) = api::new_order(data) {
        if let OrderTerms::Rent { plays, seconds } = o.terms {
            assert!((1..=1000).contains(&plays) && (1..=366 * 86_400).contains(&seconds));
        }
    }
    if let Ok(p) = api::play(data) {
        if let Some(u) = p.url {
            assert!((1..=8).contains(&u.urls));
            assert!(u.lifetime_s.is_none_or(|l| l >= 1 && l <= tranzcast_proto::playback::MAX_LIFETIME_SECS));
        }
    }
    let _ = api::revoke(data);
    if let Ok(j) = api::join(data) {
        assert!(j.https.starts_with("https://") && (0.0..=1.0).contains(&j.load));
        assert!(tranzcast_proto::member::valid_name(&j.name));
    }
    if let Ok(p) = api::publish(data) {
        assert!(!p.title.as_str().is_empty());
    }
    if let Ok(k) = api::idempotency_key(data) {
        assert!((1..=64).contains(&k.len()));
    }
});
