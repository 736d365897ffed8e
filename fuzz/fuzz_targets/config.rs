//! Config loading from hostile TOML and overrides: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_config::{EdgeConfig, Layers, OriginConfig, Source};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (file, set) = text.split_once('\u{0}').unwrap_or((text, ""));
    let sets: Vec<String> = set.lines().map(str::to_string).collect();
    let src = || Source::File("fuzz.toml".into());
    if let Ok(l) = Layers::new("origin").toml(file, src()).and_then(|l| l.overrides(&sets)) {
        let _ = l.build::<OriginConfig>();
    }
    if let Ok(l) = Layers::new("edge").toml(file, src()) {
        let _ = l.build::<EdgeConfig>();
    }
});
