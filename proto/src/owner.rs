//! Which title a stored blob belongs to, read from its own first bytes:
//! segment frames (`TZSF`) and manifests (`TZMF`) both carry the title id
//! at bytes 8..40 (docs/formats.md), so access to a blob is decided without
//! a catalog lookup, and a blob still arriving is placed as soon as its
//! first bytes are in.

use crate::{TitleId, frame, manifest};

/// Where the title id sits in a frame's and a manifest's header.
const TITLE_AT: std::ops::Range<usize> = 8..40;
/// Where a frame's sequence number sits.
const SEQUENCE_AT: std::ops::Range<usize> = 40..48;
/// The first bytes of a blob that say whose it is: enough for
/// [`blob_title`] and [`segment_of`] (a frame's fixed header).
pub const PREFIX_LEN: usize = frame::FIXED_HEADER_LEN;

/// The title a blob belongs to, from its first bytes (`None` if it is
/// neither a frame nor a manifest, or too short to say).
pub fn blob_title(prefix: &[u8]) -> Option<TitleId> {
    if prefix.len() < TITLE_AT.end || !(prefix[..4] == frame::MAGIC || prefix[..4] == manifest::MAGIC) {
        return None;
    }
    let mut t = [0u8; 32];
    t.copy_from_slice(&prefix[TITLE_AT]);
    TitleId::from_wire(&t).ok()
}

/// The title and position of a segment frame, from its first bytes
/// (`None` for anything else, manifests included).
pub fn segment_of(prefix: &[u8]) -> Option<(TitleId, u64)> {
    if prefix.len() < SEQUENCE_AT.end || prefix[..4] != frame::MAGIC {
        return None;
    }
    let title = blob_title(prefix)?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&prefix[SEQUENCE_AT]);
    Some((title, u64::from_be_bytes(seq)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn title_and_position_from_frame_and_manifest_headers() {
        let t = TitleId::new("film").unwrap();
        let mut b = b"TZSF\x01\x01\x00\x00".to_vec();
        b.extend_from_slice(&t.to_wire());
        b.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(blob_title(&b), Some(t.clone()));
        assert_eq!(segment_of(&b), Some((t.clone(), 7)));
        assert_eq!(segment_of(&b[..47]), None);
        b[..4].copy_from_slice(b"TZMF");
        assert_eq!(blob_title(&b), Some(t));
        assert_eq!(segment_of(&b), None, "a manifest is no segment");
        assert_eq!(blob_title(b"random bytes that are long enough to look like something"), None);
        assert_eq!(blob_title(b"TZSF"), None);
        for n in 0..b.len() {
            let _ = (blob_title(&b[..n]), segment_of(&b[..n]));
        }
    }
}
