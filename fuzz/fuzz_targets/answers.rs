//! The JSON answers clients read from servers, on hostile bytes: a source's
//! pulse (`proto::pulse`, read from every source), the origin's play grant,
//! cluster view and key, and any refusal's error body (`proto::answers`). Never panics; what is
//! accepted is bounded and writes back to something that reads again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::answers::{ClusterView, ErrorBody, OriginKey, PlayGrant};
use tranzcast_proto::pulse::{MAX_BITMAP_BYTES, Pulse};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Pulse::parse(data) {
        if let Some(s) = &p.segments {
            assert_eq!(s.bitmap.to_holds(1000).len(), 1000);
            assert!(serde_json::to_string(&s.bitmap).map_or(0, |t| t.len()) <= 2 * MAX_BITMAP_BYTES + 2);
        }
        let again = serde_json::to_vec(&p).expect("a pulse read is written");
        assert!(Pulse::parse(&again).is_ok());
    }
    if let Ok(g) = PlayGrant::parse(data) {
        let again = serde_json::to_vec(&g).expect("a grant read is written");
        assert!(PlayGrant::parse(&again).is_ok());
    }
    if let Ok(v) = ClusterView::parse(data) {
        let again = serde_json::to_vec(&v).expect("a view read is written");
        assert!(ClusterView::parse(&again).is_ok());
    }
    let _ = OriginKey::parse(data);
    let (code, reason) = ErrorBody::read(data);
    assert!(code.len() + reason.len() <= data.len().max(23));
});
