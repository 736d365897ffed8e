//! Title keys, per-segment keys and nonces, and sealing a segment into a frame.
//!
//! One random 256-bit key per title (`KM` in the patent). Each frame's own
//! AES-256-GCM-SIV key is `blake3::derive_key(SEGMENT_KEY_CONTEXT, KM || title
//! || kind || sequence)` and its nonce the first 12 bytes of
//! `blake3::derive_key(SEGMENT_NONCE_CONTEXT, ...)` over the same input. Both
//! are unique per segment; the nonce is deterministic so that an interrupted
//! ingest can be re-run and produce the same blobs (GCM-SIV stays safe even if
//! a key and nonce were ever reused: it would reveal only that two plaintexts
//! are equal).

use std::fmt;

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};

use crate::frame::{self, FIXED_HEADER_LEN, FrameHeader, FrameKind, TAG_LEN};
use crate::{ProtoError, TitleId};

/// blake3 `derive_key` context for segment keys.
pub const SEGMENT_KEY_CONTEXT: &str = "tranzcast 2026-11 segment key v1";
/// blake3 `derive_key` context for segment nonces.
pub const SEGMENT_NONCE_CONTEXT: &str = "tranzcast 2026-11 segment nonce v1";

/// A title's 256-bit master key (`KM`). Its bytes are wiped on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TitleKey([u8; 32]);

impl TitleKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(crate::random_bytes())
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// The raw key bytes: handle with care.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// `self xor other`: splits the key into two halves that each reveal nothing
    /// (`K2 = KM xor K1`), and joins them back.
    pub fn xor(&self, other: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other)) {
            *o = a ^ b;
        }
        out
    }

    fn derive_input(&self, title: &TitleId, kind: FrameKind, sequence: u64) -> [u8; 73] {
        let mut m = [0u8; 73];
        m[..32].copy_from_slice(&self.0);
        m[32..64].copy_from_slice(&title.to_wire());
        m[64] = kind as u8;
        m[65..73].copy_from_slice(&sequence.to_be_bytes());
        m
    }

    /// The AES-256-GCM-SIV key of one segment.
    pub fn segment_key(&self, title: &TitleId, kind: FrameKind, sequence: u64) -> [u8; 32] {
        blake3::derive_key(SEGMENT_KEY_CONTEXT, &self.derive_input(title, kind, sequence))
    }

    /// The nonce of one segment.
    pub fn segment_nonce(&self, title: &TitleId, kind: FrameKind, sequence: u64) -> [u8; 12] {
        let full = blake3::derive_key(SEGMENT_NONCE_CONTEXT, &self.derive_input(title, kind, sequence));
        let mut n = [0u8; 12];
        n.copy_from_slice(&full[..12]);
        n
    }
}

impl Drop for TitleKey {
    fn drop(&mut self) {
        // Best effort: the optimiser may keep copies elsewhere, but not this one.
        for b in self.0.iter_mut() {
            // black_box keeps the zeroing store from being optimised away.
            unsafe_free_wipe(b);
        }
    }
}

#[inline(never)]
fn unsafe_free_wipe(b: &mut u8) {
    *std::hint::black_box(b) = 0;
}

impl fmt::Debug for TitleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TitleKey(<redacted>)")
    }
}

/// A buffer with room for a frame header in front of the plaintext, so a
/// segment can be read straight into place and sealed without a copy.
pub fn frame_buffer(plaintext_capacity: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(FIXED_HEADER_LEN + plaintext_capacity + TAG_LEN);
    v.resize(FIXED_HEADER_LEN, 0);
    v
}

/// Seals a segment in place. `buf` must be `[FIXED_HEADER_LEN placeholder bytes][plaintext]`
/// (see [`frame_buffer`]); on return it holds the whole frame.
pub fn seal_in_place(key: &TitleKey, title: &TitleId, kind: FrameKind, sequence: u64, buf: &mut Vec<u8>) -> Result<(), ProtoError> {
    if buf.len() < FIXED_HEADER_LEN {
        return Err(ProtoError::invalid("frame buffer", "shorter than the header"));
    }
    let plain_len = buf.len() - FIXED_HEADER_LEN;
    let header = FrameHeader {
        kind,
        title: title.clone(),
        sequence,
        payload_len: (plain_len + TAG_LEN) as u64,
        nonce: key.segment_nonce(title, kind, sequence),
        extensions: Vec::new(),
    };
    let header_bytes = header.encode()?;
    debug_assert_eq!(header_bytes.len(), FIXED_HEADER_LEN);
    buf[..FIXED_HEADER_LEN].copy_from_slice(&header_bytes);
    let cipher = Aes256GcmSiv::new(&key.segment_key(title, kind, sequence).into());
    let nonce = Nonce::from(header.nonce);
    let (aad, body) = buf.split_at_mut(FIXED_HEADER_LEN);
    let tag =
        cipher.encrypt_inout_detached(&nonce, aad, body.into()).map_err(|_| ProtoError::invalid("segment", "too large to encrypt"))?;
    buf.extend_from_slice(tag.as_slice());
    Ok(())
}

/// Seals `plaintext` into a new frame.
pub fn seal(key: &TitleKey, title: &TitleId, kind: FrameKind, sequence: u64, plaintext: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut buf = frame_buffer(plaintext.len());
    buf.extend_from_slice(plaintext);
    seal_in_place(key, title, kind, sequence, &mut buf)?;
    Ok(buf)
}

/// What the caller expects a frame to be; anything else is refused before decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The title the frame must belong to.
    pub title: &'a TitleId,
    /// The kind it must be.
    pub kind: FrameKind,
    /// The position it must hold.
    pub sequence: u64,
}

/// Parses, checks and decrypts a frame, returning its plaintext.
///
/// The key is derived from the header's own title, kind and sequence and the
/// header is the associated data, so a frame moved elsewhere fails to decrypt
/// even if the caller's expectations were wrong.
pub fn open(key: &TitleKey, frame_bytes: &[u8], expected: &Expected<'_>) -> Result<Vec<u8>, ProtoError> {
    let f = frame::parse_frame(frame_bytes)?;
    let h = &f.header;
    if &h.title != expected.title || h.kind != expected.kind || h.sequence != expected.sequence {
        return Err(ProtoError::invalid(
            "frame",
            format!("is {} {:?} #{}, expected {} {:?} #{}", h.title, h.kind, h.sequence, expected.title, expected.kind, expected.sequence),
        ));
    }
    let cipher = Aes256GcmSiv::new(&key.segment_key(&h.title, h.kind, h.sequence).into());
    let split = f.payload.len() - TAG_LEN;
    let mut plain = f.payload[..split].to_vec();
    let tag = Tag::try_from(&f.payload[split..]).map_err(|_| ProtoError::Decrypt)?;
    cipher
        .decrypt_inout_detached(&Nonce::from(h.nonce), f.header_bytes, plain.as_mut_slice().into(), &tag)
        .map_err(|_| ProtoError::Decrypt)?;
    Ok(plain)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> TitleId {
        TitleId::new(s).unwrap()
    }

    #[test]
    fn seal_open_round_trip_and_sizes() {
        let k = TitleKey::generate();
        for len in [0usize, 1, 15, 16, 17, 4096, 100_000] {
            let p: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let f = seal(&k, &t("a"), FrameKind::Media, 3, &p).unwrap();
            assert_eq!(f.len(), FIXED_HEADER_LEN + len + TAG_LEN);
            let back = open(&k, &f, &Expected { title: &t("a"), kind: FrameKind::Media, sequence: 3 }).unwrap();
            assert_eq!(back, p);
        }
    }

    #[test]
    fn ciphertext_hides_plaintext_and_keys_differ_per_segment() {
        let k = TitleKey::generate();
        let p = b"MARKER-MARKER-MARKER-MARKER".repeat(100);
        let f0 = seal(&k, &t("a"), FrameKind::Media, 0, &p).unwrap();
        let f1 = seal(&k, &t("a"), FrameKind::Media, 1, &p).unwrap();
        assert!(!f0.windows(6).any(|w| w == b"MARKER"));
        assert_ne!(f0[FIXED_HEADER_LEN..], f1[FIXED_HEADER_LEN..]);
        assert_ne!(k.segment_key(&t("a"), FrameKind::Media, 0), k.segment_key(&t("a"), FrameKind::Media, 1));
        assert_ne!(k.segment_key(&t("a"), FrameKind::Media, 0), k.segment_key(&t("b"), FrameKind::Media, 0));
        assert_ne!(k.segment_nonce(&t("a"), FrameKind::Media, 0), k.segment_nonce(&t("a"), FrameKind::Media, 1));
    }

    #[test]
    fn moved_or_altered_frames_fail() {
        let k = TitleKey::generate();
        let f = seal(&k, &t("a"), FrameKind::Media, 5, b"hello world").unwrap();
        let exp = |title: &'static str, seq: u64| (t(title), seq);
        // Header rewritten to claim another position or title: key and AAD change.
        for (title, seq) in [exp("a", 6), exp("b", 5)] {
            let mut moved = f.clone();
            moved[8..40].copy_from_slice(&title.to_wire());
            moved[40..48].copy_from_slice(&seq.to_be_bytes());
            let e = open(&k, &moved, &Expected { title: &title, kind: FrameKind::Media, sequence: seq });
            assert_eq!(e, Err(ProtoError::Decrypt));
        }
        // Untouched frame asked for at the wrong place is refused.
        assert!(open(&k, &f, &Expected { title: &t("a"), kind: FrameKind::Media, sequence: 4 }).is_err());
        // Every single flipped bit in the payload fails.
        for at in FIXED_HEADER_LEN..f.len() {
            let mut bad = f.clone();
            bad[at] ^= 1;
            assert!(open(&k, &bad, &Expected { title: &t("a"), kind: FrameKind::Media, sequence: 5 }).is_err());
        }
        // Wrong key fails.
        assert_eq!(
            open(&TitleKey::generate(), &f, &Expected { title: &t("a"), kind: FrameKind::Media, sequence: 5 }),
            Err(ProtoError::Decrypt)
        );
    }

    #[test]
    fn xor_split_rejoins() {
        let km = TitleKey::generate();
        let k1: [u8; 32] = crate::random_bytes();
        let k2 = km.xor(&k1);
        assert_eq!(TitleKey::from_bytes(k2).xor(&k1), *km.expose());
        assert_ne!(k2, *km.expose());
        assert!(!format!("{km:?}").contains(&format!("{}", km.expose()[0])) || format!("{km:?}").contains("redacted"));
    }
}
