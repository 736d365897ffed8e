//! Play tickets (Fig. 9) and validation certificates (Fig. 10).
//!
//! Both are 192 bytes, signed by the origin's Ed25519 key over the first
//! 128, and travel as unpadded base64url text (256 characters).
//!
//! ```text
//! play ticket                          validation certificate
//! off size                             off size
//!   0   4 magic "TZPT"                   0   4 magic "TZVC"
//!   4   1 version (1)                    4   1 version (1)
//!   5   3 reserved, zero                 5   3 reserved, zero
//!   8  16 serial number                  8  16 serial number
//!  24   8 customer number               24   8 customer number
//!  32   8 created, Unix seconds         32   8 created, Unix seconds
//!  40   8 expires, Unix s (0 = never)   40   8 expires, Unix seconds
//!  48  32 title id                      48  32 title id
//!  80   4 plays (0xFFFFFFFF = unlimited) 80  16 reserved, zero
//!  84  12 reserved, zero
//!  96  32 key part K2 = KM xor K1       96  32 key part K1
//! 128  64 Ed25519 signature           128  64 Ed25519 signature
//! ```
//!
//! Neither half of the title key alone says anything about it: `K1` is fresh
//! and random per ticket, so `K2` is a one-time pad of `KM`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::title::TITLE_ID_LEN;
use crate::{ProtoError, TitleId, read_u32, read_u64};

/// Encoded length of a ticket or certificate.
pub const TOKEN_LEN: usize = 192;
/// Bytes covered by the signature.
pub const SIGNED_LEN: usize = 128;
/// Length of the base64url text form.
pub const TEXT_LEN: usize = 256;
/// The `plays` value of a bought (unlimited) ticket.
pub const UNLIMITED: u32 = u32::MAX;
/// Magic of a play ticket.
pub const TICKET_MAGIC: [u8; 4] = *b"TZPT";
/// Magic of a validation certificate.
pub const CERTIFICATE_MAGIC: [u8; 4] = *b"TZVC";
const VERSION: u8 = 1;

/// A play ticket's fields. `Debug` leaves the key part out.
#[derive(Clone, PartialEq, Eq)]
pub struct PlayTicket {
    /// Serial number: the ticket database's key.
    pub serial: [u8; 16],
    /// Customer number.
    pub customer: u64,
    /// Created, Unix seconds.
    pub created: u64,
    /// Expires, Unix seconds; 0 for never (bought tickets).
    pub expires: u64,
    /// The title.
    pub title: TitleId,
    /// Plays left, or [`UNLIMITED`].
    pub plays: u32,
    /// Key part K2.
    pub key_part: [u8; 32],
}

/// A validation certificate's fields. `Debug` leaves the key part out.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Serial number.
    pub serial: [u8; 16],
    /// Customer number.
    pub customer: u64,
    /// Created, Unix seconds.
    pub created: u64,
    /// Expires, Unix seconds.
    pub expires: u64,
    /// The title.
    pub title: TitleId,
    /// Key part K1.
    pub key_part: [u8; 32],
}

fn header(magic: [u8; 4], serial: &[u8; 16], customer: u64, created: u64, expires: u64, title: &TitleId) -> [u8; TOKEN_LEN] {
    let mut b = [0u8; TOKEN_LEN];
    b[0..4].copy_from_slice(&magic);
    b[4] = VERSION;
    b[8..24].copy_from_slice(serial);
    b[24..32].copy_from_slice(&customer.to_be_bytes());
    b[32..40].copy_from_slice(&created.to_be_bytes());
    b[40..48].copy_from_slice(&expires.to_be_bytes());
    b[48..80].copy_from_slice(&title.to_wire());
    b
}

/// What signs tickets and certificates: Ed25519 with the origin's key,
/// deterministic as RFC 8032 specifies, so that the same bytes always get
/// the same signature ([`SignedToken::verify_own`] relies on it). The
/// dalek [`SigningKey`] is one; the origin uses a faster implementation of
/// the same function, tested to give the same signatures.
pub trait TokenSigner {
    /// The RFC 8032 Ed25519 signature of `signed`.
    fn sign_token(&self, signed: &[u8]) -> [u8; 64];
}

impl TokenSigner for SigningKey {
    fn sign_token(&self, signed: &[u8]) -> [u8; 64] {
        self.sign(signed).to_bytes()
    }
}

fn sign_into(mut b: [u8; TOKEN_LEN], key: &(impl TokenSigner + ?Sized)) -> [u8; TOKEN_LEN] {
    let sig = key.sign_token(&b[..SIGNED_LEN]);
    b[SIGNED_LEN..].copy_from_slice(&sig);
    b
}

impl PlayTicket {
    /// Encodes and signs.
    pub fn sign(&self, key: &(impl TokenSigner + ?Sized)) -> [u8; TOKEN_LEN] {
        let mut b = header(TICKET_MAGIC, &self.serial, self.customer, self.created, self.expires, &self.title);
        b[80..84].copy_from_slice(&self.plays.to_be_bytes());
        b[96..128].copy_from_slice(&self.key_part);
        sign_into(b, key)
    }

    /// Whether the ticket is unlimited (bought).
    pub fn is_unlimited(&self) -> bool {
        self.plays == UNLIMITED
    }

    /// Whether it has expired at `now` (Unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires != 0 && now >= self.expires
    }
}

impl Certificate {
    /// Encodes and signs.
    pub fn sign(&self, key: &(impl TokenSigner + ?Sized)) -> [u8; TOKEN_LEN] {
        let mut b = header(CERTIFICATE_MAGIC, &self.serial, self.customer, self.created, self.expires, &self.title);
        b[96..128].copy_from_slice(&self.key_part);
        sign_into(b, key)
    }

    /// Whether it has expired at `now` (Unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires
    }
}

/// A decoded ticket or certificate, signature not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A play ticket.
    Ticket(PlayTicket),
    /// A validation certificate.
    Certificate(Certificate),
}

/// Decoded bytes and their still-unverified signature. `Debug` shows the
/// fields (key part left out), not the bytes (a bearer credential).
#[derive(Clone)]
pub struct SignedToken {
    /// The fields.
    pub token: Token,
    bytes: [u8; TOKEN_LEN],
}

// Key parts never reach a log or a panic message: half of a title key each,
// and the ticket's K2 with a certificate's K1 is the key.
crate::debug_redacted!(PlayTicket { serial: hex::encode, customer, created, expires, title, plays } redact { key_part });
crate::debug_redacted!(Certificate { serial: hex::encode, customer, created, expires, title } redact { key_part });

impl std::fmt::Debug for SignedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedToken").field("token", &self.token).finish_non_exhaustive()
    }
}

impl SignedToken {
    /// Parses the binary form (structure only).
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let bytes: [u8; TOKEN_LEN] =
            b.try_into().map_err(|_| ProtoError::invalid("ticket or certificate", format!("{} bytes, need {TOKEN_LEN}", b.len())))?;
        let magic = [b[0], b[1], b[2], b[3]];
        let what = match magic {
            TICKET_MAGIC => "play ticket",
            CERTIFICATE_MAGIC => "validation certificate",
            _ => return Err(ProtoError::BadMagic { what: "ticket or certificate" }),
        };
        if b[4] != VERSION {
            return Err(ProtoError::UnsupportedVersion { what, version: b[4] });
        }
        if b[5..8] != [0; 3] {
            return Err(ProtoError::invalid(what, "reserved bytes must be zero"));
        }
        let mut serial = [0u8; 16];
        serial.copy_from_slice(&b[8..24]);
        let customer = read_u64(b, 24);
        let created = read_u64(b, 32);
        let expires = read_u64(b, 40);
        let mut t = [0u8; TITLE_ID_LEN];
        t.copy_from_slice(&b[48..80]);
        let title = TitleId::from_wire(&t)?;
        let mut key_part = [0u8; 32];
        key_part.copy_from_slice(&b[96..128]);
        let token = if magic == TICKET_MAGIC {
            if b[84..96] != [0; 12] {
                return Err(ProtoError::invalid(what, "reserved bytes must be zero"));
            }
            let plays = read_u32(b, 80);
            if plays == 0 {
                return Err(ProtoError::invalid(what, "zero plays"));
            }
            Token::Ticket(PlayTicket { serial, customer, created, expires, title, plays, key_part })
        } else {
            if b[80..96] != [0; 16] {
                return Err(ProtoError::invalid(what, "reserved bytes must be zero"));
            }
            if expires == 0 {
                return Err(ProtoError::invalid(what, "a certificate must expire"));
            }
            Token::Certificate(Certificate { serial, customer, created, expires, title, key_part })
        };
        Ok(Self { token, bytes })
    }

    /// Parses the base64url text form (whitespace around it is ignored).
    pub fn from_text(s: &str) -> Result<Self, ProtoError> {
        let s = s.trim();
        if s.len() != TEXT_LEN {
            return Err(ProtoError::invalid("ticket or certificate", format!("{} characters, need {TEXT_LEN}", s.len())));
        }
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|e| ProtoError::invalid("ticket or certificate", format!("not base64url: {e}")))?;
        Self::decode(&raw)
    }

    /// Checks the origin's signature.
    pub fn verify(&self, origin: &VerifyingKey) -> Result<&Token, ProtoError> {
        let what = self.what();
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&self.bytes[SIGNED_LEN..]);
        origin.verify_strict(&self.bytes[..SIGNED_LEN], &Signature::from_bytes(&sig)).map_err(|_| ProtoError::BadSignature { what })?;
        Ok(&self.token)
    }

    /// Checks a token signed with `own`, the key of the process checking it
    /// (the origin, on every play), by signing its bytes again and comparing
    /// in constant time. Ed25519 signing is deterministic (RFC 8032), so a
    /// token this key issued carries exactly that signature, and any other
    /// signature is refused: this accepts a subset of what [`Self::verify`]
    /// accepts. Signing is one fixed-base multiplication, well under half the
    /// cost of verifying (a decompression and a double multiplication). The
    /// comparison is constant-time, or its timing would leak the right
    /// signature of a forged body byte by byte.
    pub fn verify_own(&self, own: &(impl TokenSigner + ?Sized)) -> Result<&Token, ProtoError> {
        use subtle::ConstantTimeEq;
        let expected = own.sign_token(&self.bytes[..SIGNED_LEN]);
        if bool::from(expected[..].ct_eq(&self.bytes[SIGNED_LEN..])) {
            Ok(&self.token)
        } else {
            Err(ProtoError::BadSignature { what: self.what() })
        }
    }

    fn what(&self) -> &'static str {
        match self.token {
            Token::Ticket(_) => "play ticket",
            Token::Certificate(_) => "validation certificate",
        }
    }

    /// The binary form.
    pub fn as_bytes(&self) -> &[u8; TOKEN_LEN] {
        &self.bytes
    }
}

/// The text form of a signed token (a ticket, a certificate, a playback token).
pub fn to_text<const N: usize>(bytes: &[u8; N]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn ticket(plays: u32) -> PlayTicket {
        PlayTicket {
            serial: [1; 16],
            customer: 42,
            created: 1_790_000_000,
            expires: if plays == UNLIMITED { 0 } else { 1_790_086_400 },
            title: TitleId::new("film").unwrap(),
            plays,
            key_part: [9; 32],
        }
    }

    fn cert() -> Certificate {
        Certificate {
            serial: [2; 16],
            customer: 42,
            created: 1_790_000_000,
            expires: 1_790_007_200,
            title: TitleId::new("film").unwrap(),
            key_part: [8; 32],
        }
    }

    #[test]
    fn round_trips_through_text() {
        for t in [ticket(3), ticket(UNLIMITED)] {
            let text = to_text(&t.sign(&key()));
            assert_eq!(text.len(), TEXT_LEN);
            let st = SignedToken::from_text(&text).unwrap();
            assert_eq!(st.verify(&key().verifying_key()).unwrap(), &Token::Ticket(t));
        }
        let text = to_text(&cert().sign(&key()));
        let st = SignedToken::from_text(&format!("  {text}\n")).unwrap();
        assert_eq!(st.verify(&key().verifying_key()).unwrap(), &Token::Certificate(cert()));
    }

    #[test]
    fn debug_output_carries_no_key_part_and_no_token_bytes() {
        let mut t = ticket(3);
        t.key_part = [0xc3; 32];
        let mut c = cert();
        c.key_part = [0x5e; 32];
        let st = SignedToken::decode(&t.sign(&key())).unwrap();
        let sc = SignedToken::decode(&c.sign(&key())).unwrap();
        let text = format!("{t:?} {c:?} {st:?} {sc:?} {:?}", Token::Ticket(t.clone()));
        assert!(!text.contains("c3c3") && !text.contains("5e5e"), "{text}");
        assert!(!text.contains("195, 195") && !text.contains("94, 94"), "{text}");
        assert!(text.contains("<redacted>") && text.contains(&hex::encode(t.serial)), "{text}");
    }

    #[test]
    fn every_altered_byte_is_refused() {
        for signed in [ticket(2).sign(&key()), cert().sign(&key())] {
            crate::assert_every_flip_refused(signed, |b| {
                SignedToken::decode(b).and_then(|s| s.verify(&key().verifying_key()).map(|_| ())).is_ok()
            });
        }
    }

    #[test]
    fn own_key_check_accepts_exactly_what_this_key_signed() {
        for signed in [ticket(2).sign(&key()), ticket(UNLIMITED).sign(&key()), cert().sign(&key())] {
            let st = SignedToken::decode(&signed).unwrap();
            assert_eq!(st.verify_own(&key()).unwrap(), st.verify(&key().verifying_key()).unwrap());
            crate::assert_every_flip_refused(signed, |b| SignedToken::decode(b).and_then(|s| s.verify_own(&key()).map(|_| ())).is_ok());
            let other = SigningKey::from_bytes(&[6; 32]);
            assert!(matches!(st.verify_own(&other), Err(ProtoError::BadSignature { .. })));
        }
        // A valid signature by this key that is not the deterministic one
        // (another nonce: R and S differ) passes `verify` but not
        // `verify_own`: the own-key check is the narrower of the two.
        use curve25519_dalek::{EdwardsPoint, Scalar};
        use sha2::{Digest, Sha512};
        let mut b = ticket(3).sign(&key());
        let r = Scalar::from(0x1234_5678_u64);
        let big_r = EdwardsPoint::mul_base(&r).compress();
        let k = Scalar::from_hash(
            Sha512::new().chain_update(big_r.as_bytes()).chain_update(key().verifying_key().as_bytes()).chain_update(&b[..SIGNED_LEN]),
        );
        let s = k * key().to_scalar() + r;
        b[SIGNED_LEN..SIGNED_LEN + 32].copy_from_slice(big_r.as_bytes());
        b[SIGNED_LEN + 32..].copy_from_slice(s.as_bytes());
        let st = SignedToken::decode(&b).unwrap();
        assert!(st.verify(&key().verifying_key()).is_ok());
        assert!(matches!(st.verify_own(&key()), Err(ProtoError::BadSignature { .. })));
    }

    #[test]
    fn other_keys_and_hostile_text_are_refused() {
        let b = ticket(1).sign(&key());
        let other = SigningKey::from_bytes(&[6; 32]);
        assert!(matches!(SignedToken::decode(&b).unwrap().verify(&other.verifying_key()), Err(ProtoError::BadSignature { .. })));
        for bad in ["", "x", &"A".repeat(255), &"A".repeat(257), &"!".repeat(256), &"A".repeat(256)] {
            assert!(SignedToken::from_text(bad).is_err(), "{bad:?}");
        }
        assert!(SignedToken::decode(&b[..191]).is_err());
        let zero_plays = ticket(1);
        let mut raw = zero_plays.sign(&key());
        raw[80..84].copy_from_slice(&0u32.to_be_bytes());
        assert!(SignedToken::decode(&raw).is_err());
    }

    #[test]
    fn expiry() {
        assert!(!ticket(UNLIMITED).is_expired(u64::MAX));
        assert!(ticket(1).is_expired(1_790_086_400));
        assert!(!ticket(1).is_expired(1_790_086_399));
        assert!(cert().is_expired(1_790_007_200));
    }
}
