//! Envelope encryption of the origin's secrets (its signing key, title
//! keys) under a key-encryption key (KEK), for a shared database: whoever
//! reads the database without the KEK learns nothing, and a sealed value
//! moved to another row (another title's key) does not open there.
//!
//! Layout (49 + secret bytes): version `1` (1 byte), nonce (12), then the
//! secret sealed with AES-256-GCM-SIV (its length + a 16-byte tag), the
//! row's name as associated data. GCM-SIV: a repeated random nonce leaks
//! only whether two sealed values are equal, never the key.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};

use crate::ProtoError;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A key-encryption key.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A KEK from text holding exactly 64 hex digits (surrounding white
    /// space, such as a file's last newline, ignored).
    pub fn from_hex(text: &str) -> Result<Self, ProtoError> {
        let t = text.trim();
        let mut b = [0u8; 32];
        if t.len() != 64 || hex::decode_to_slice(t, &mut b).is_err() {
            return Err(ProtoError::invalid("key-encryption key", "must be exactly 64 hex digits"));
        }
        Ok(Self(b))
    }

    /// An identifier of this KEK that reveals nothing of it (to tell which
    /// KEK sealed a database without trying to open a secret).
    pub fn id(&self) -> [u8; 8] {
        let h = blake3::keyed_hash(&self.0, b"tranzcast kek id");
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.as_bytes()[..8]);
        id
    }

    /// Seals `secret` for the row `name`, with a fresh random nonce.
    pub fn seal(&self, name: &str, secret: &[u8]) -> Vec<u8> {
        self.seal_with_nonce(name, secret, crate::random_bytes())
    }

    fn seal_with_nonce(&self, name: &str, secret: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + NONCE_LEN + secret.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        // Encryption of a slice cannot fail with this cipher (only lengths
        // above 2^36 bytes would): an empty result would not open.
        let sealed = Aes256GcmSiv::new(&self.0.into())
            .encrypt(&Nonce::from(nonce), Payload { msg: secret, aad: name.as_bytes() })
            .unwrap_or_default();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value sealed for `name` (pure: hostile bytes give an error).
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, ProtoError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(ProtoError::invalid("sealed secret", "too short"));
        }
        if sealed[0] != VERSION {
            return Err(ProtoError::invalid("sealed secret", format!("unknown version {}", sealed[0])));
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| ProtoError::invalid("sealed secret", "too short"))?;
        Aes256GcmSiv::new(&self.0.into()).decrypt(&Nonce::from(nonce), Payload { msg: body, aad: name.as_bytes() }).map_err(|_| {
            ProtoError::invalid("sealed secret", "does not open under this key-encryption key (wrong KEK, or moved from another row)")
        })
    }

    /// Opens a sealed 32-byte key.
    pub fn open32(&self, name: &str, sealed: &[u8]) -> Result<[u8; 32], ProtoError> {
        self.open(name, sealed)?.try_into().map_err(|_| ProtoError::invalid("sealed secret", "not a 32-byte key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_its_row_and_kek() {
        let kek = Kek::new([7; 32]);
        let s = kek.seal("title/abc", &[9; 32]);
        assert_eq!(s.len(), 1 + 12 + 32 + 16);
        assert_eq!(kek.open32("title/abc", &s).unwrap(), [9; 32]);
        assert!(kek.open("title/abd", &s).is_err(), "moved to another row");
        assert!(Kek::new([8; 32]).open("title/abc", &s).is_err(), "another KEK");
        assert_ne!(kek.seal("title/abc", &[9; 32]), s, "fresh nonce each time");
    }

    #[test]
    fn hostile_sealed_bytes_are_errors() {
        let kek = Kek::new([1; 32]);
        let good = kek.seal_with_nonce("n", b"secret", [3; 12]);
        for cut in 0..good.len() {
            assert!(kek.open("n", &good[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 1;
            assert!(kek.open("n", &bad).is_err(), "flip at {i}");
        }
        assert_eq!(kek.open("n", &good).unwrap(), b"secret");
        assert!(kek.open32("n", &good).is_err(), "not 32 bytes");
    }

    #[test]
    fn kek_text_is_exactly_64_hex_digits() {
        assert!(Kek::from_hex(&"ab".repeat(32)).is_ok());
        assert!(Kek::from_hex(&format!("{}\n", "ab".repeat(32))).is_ok());
        assert!(Kek::from_hex(&"ab".repeat(31)).is_err());
        assert!(Kek::from_hex(&"zz".repeat(32)).is_err());
        assert!(Kek::from_hex("").is_err());
        assert_ne!(Kek::from_hex(&"ab".repeat(32)).unwrap().id(), Kek::new([0; 32]).id());
    }
}
