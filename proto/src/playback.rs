//! Playback tokens: what a standard player's URL carries so that one edge can
//! decrypt one title for one session, and nothing else.
//!
//! The origin signs the token and seals the title key to the X25519 public key
//! of the edge the URL names. Each edge makes its key pair in memory at start
//! (never on disk) and rotates it every [`MAX_LIFETIME_SECS`], keeping the
//! older ones for as long as tokens sealed to them can live. So a token opens
//! one title on one edge until it expires; another edge, or the same edge after
//! a restart, cannot unseal it.
//!
//! ```text
//! off size
//!   0   4 magic "TZPB"
//!   4   1 version (1)
//!   5   1 binding: 0 none, 4 IPv4, 6 IPv6
//!   6   2 reserved, zero
//!   8  16 session id (the validation certificate's serial: revoked with it)
//!  24   8 not before, Unix seconds
//!  32   8 expires, Unix seconds
//!  40  32 title id
//!  72  16 bound client address (IPv4 in the first 4 bytes, rest zero)
//!  88   8 edge key id = first 8 bytes of blake3(edge's X25519 public key)
//!  96  32 ephemeral X25519 public key
//! 128  48 sealed title key: AES-256-GCM-SIV(seal key, nonce = session[..12],
//!         title key, associated data = bytes 0..128), 32 + 16 tag
//! 176  64 Ed25519 signature by the origin over bytes 0..176
//! ```
//! seal key = blake3 derive_key("tranzcast playback seal v1",
//! X25519(ephemeral, edge) || ephemeral public || edge public || session id).
//! Travels as unpadded base64url (320 characters), in the URL's path.

use std::net::IpAddr;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::keys::TitleKey;
use crate::title::TITLE_ID_LEN;
use crate::{ProtoError, TitleId, read_u64};

/// Magic of a playback token.
pub const MAGIC: [u8; 4] = *b"TZPB";
const VERSION: u8 = 1;
/// Encoded length.
pub const TOKEN_LEN: usize = 240;
/// Bytes covered by the signature.
pub const SIGNED_LEN: usize = 176;
/// Bytes authenticated as the sealed key's associated data.
const HEADER_LEN: usize = 128;
/// Length of the base64url text form.
pub const TEXT_LEN: usize = 320;
/// The longest a token lives; edges rotate their key pair this often and keep
/// the two before, so a token never outlives the key it is sealed to.
pub const MAX_LIFETIME_SECS: u64 = 6 * 3600;
const SEAL_CONTEXT: &str = "tranzcast playback seal v1";
const WHAT: &str = "playback token";

/// An edge's playback key pair (X25519), made in memory at start.
pub struct EdgeKey {
    secret: [u8; 32],
    /// The public key the origin seals to.
    pub public: [u8; 32],
    /// Its id, as tokens name it.
    pub id: [u8; 8],
}

impl EdgeKey {
    /// From 32 random bytes (clamped by X25519).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let public = x25519_base(secret);
        Self { secret, public, id: key_id(&public) }
    }
}

impl Drop for EdgeKey {
    fn drop(&mut self) {
        self.secret = [0; 32];
    }
}

impl std::fmt::Debug for EdgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeKey").field("id", &hex::encode(self.id)).finish_non_exhaustive()
    }
}

/// X25519 with the base point: the public key of `secret` (RFC 7748).
fn x25519_base(secret: [u8; 32]) -> [u8; 32] {
    MontgomeryPoint::mul_base_clamped(secret).to_bytes()
}

/// The id tokens use to name an edge's public key.
pub fn key_id(public: &[u8; 32]) -> [u8; 8] {
    let h = blake3::hash(public);
    let mut id = [0u8; 8];
    id.copy_from_slice(&h.as_bytes()[..8]);
    id
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybackGrant {
    /// The session: the serial of the validation certificate issued with it.
    pub session: [u8; 16],
    /// Not valid before, Unix seconds.
    pub not_before: u64,
    /// Expires, Unix seconds.
    pub expires: u64,
    /// The title.
    pub title: TitleId,
    /// Only this client address may use it, when set.
    pub client: Option<IpAddr>,
    /// The edge key it is sealed to.
    pub edge_key: [u8; 8],
}

/// Why a genuine token is refused now: HTTP-style code and reason.
pub type Refusal = (&'static str, String);

impl PlaybackGrant {
    /// Encodes, seals the title key to `edge_public` with the one-time
    /// `ephemeral` secret (32 random bytes), and signs. `edge_key` is set from
    /// `edge_public`.
    pub fn seal(
        &self,
        title_key: &TitleKey,
        edge_public: &[u8; 32],
        ephemeral: [u8; 32],
        signing: &SigningKey,
    ) -> Result<[u8; TOKEN_LEN], ProtoError> {
        if self.expires <= self.not_before || self.expires - self.not_before > MAX_LIFETIME_SECS + 120 {
            return Err(ProtoError::invalid(WHAT, "lifetime must be positive and at most MAX_LIFETIME_SECS"));
        }
        let mut b = [0u8; TOKEN_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        match self.client {
            None => {}
            Some(IpAddr::V4(a)) => {
                b[5] = 4;
                b[72..76].copy_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                b[5] = 6;
                b[72..88].copy_from_slice(&a.octets());
            }
        }
        b[8..24].copy_from_slice(&self.session);
        b[24..32].copy_from_slice(&self.not_before.to_be_bytes());
        b[32..40].copy_from_slice(&self.expires.to_be_bytes());
        b[40..72].copy_from_slice(&self.title.to_wire());
        b[88..96].copy_from_slice(&key_id(edge_public));
        let eph_public = x25519_base(ephemeral);
        b[96..128].copy_from_slice(&eph_public);
        let key = seal_key(&ephemeral, edge_public, &eph_public, edge_public, &self.session)?;
        let sealed = Aes256GcmSiv::new(&key.into())
            .encrypt(&nonce(&self.session), Payload { msg: title_key.expose(), aad: &b[..HEADER_LEN] })
            .map_err(|_| ProtoError::Decrypt)?;
        b[HEADER_LEN..SIGNED_LEN].copy_from_slice(&sealed);
        let sig = signing.sign(&b[..SIGNED_LEN]);
        b[SIGNED_LEN..].copy_from_slice(&sig.to_bytes());
        Ok(b)
    }

    /// Whether the grant holds now for a request from `client` (pure).
    pub fn check(&self, now: u64, client: IpAddr) -> Result<(), Refusal> {
        if now < self.not_before {
            return Err(("not_yet_valid", "the playback URL is not valid yet".into()));
        }
        if now >= self.expires {
            return Err(("expired", "the playback URL has expired; ask the origin for a new one".into()));
        }
        if let Some(bound) = self.client
            && canonical(bound) != canonical(client)
        {
            return Err(("wrong_client", "the playback URL is bound to another client address".into()));
        }
        Ok(())
    }
}

fn nonce(session: &[u8; 16]) -> Nonce {
    let mut n = [0u8; 12];
    n.copy_from_slice(&session[..12]);
    Nonce::from(n)
}

fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// X25519 with `secret` and `their_public`, then the derivation; refuses a
/// low-order point (an all-zero shared secret).
fn seal_key(
    secret: &[u8; 32],
    their_public: &[u8; 32],
    eph_public: &[u8; 32],
    edge_public: &[u8; 32],
    session: &[u8; 16],
) -> Result<[u8; 32], ProtoError> {
    let shared = MontgomeryPoint(*their_public).mul_clamped(*secret).to_bytes();
    if shared == [0u8; 32] {
        return Err(ProtoError::invalid(WHAT, "ephemeral key is a low-order point"));
    }
    let mut h = blake3::Hasher::new_derive_key(SEAL_CONTEXT);
    h.update(&shared);
    h.update(eph_public);
    h.update(edge_public);
    h.update(session);
    Ok(*h.finalize().as_bytes())
}

/// A decoded token, signature not yet checked. `Debug` shows the grant, not
/// the bytes (a bearer credential with the sealed title key).
#[derive(Clone)]
pub struct PlaybackToken {
    grant: PlaybackGrant,
    bytes: [u8; TOKEN_LEN],
}

impl std::fmt::Debug for PlaybackToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackToken").field("grant", &self.grant).finish_non_exhaustive()
    }
}

impl PlaybackToken {
    /// Parses the binary form (structure only).
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let bytes: [u8; TOKEN_LEN] = b.try_into().map_err(|_| ProtoError::invalid(WHAT, format!("{} bytes, need {TOKEN_LEN}", b.len())))?;
        ProtoError::check_lead(b, MAGIC, VERSION, WHAT)?;
        if b[6..8] != [0; 2] {
            return Err(ProtoError::invalid(WHAT, "reserved bytes must be zero"));
        }
        let client = match b[5] {
            0 if b[72..88] == [0; 16] => None,
            4 if b[76..88] == [0; 12] => Some(IpAddr::from([b[72], b[73], b[74], b[75]])),
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[72..88]);
                Some(IpAddr::from(a))
            }
            0 | 4 => return Err(ProtoError::invalid(WHAT, "unused address bytes must be zero")),
            k => return Err(ProtoError::invalid(WHAT, format!("binding kind {k} is none of 0, 4, 6"))),
        };
        let mut session = [0u8; 16];
        session.copy_from_slice(&b[8..24]);
        let not_before = read_u64(b, 24);
        let expires = read_u64(b, 32);
        if expires <= not_before {
            return Err(ProtoError::invalid(WHAT, "expires before it is valid"));
        }
        let mut t = [0u8; TITLE_ID_LEN];
        t.copy_from_slice(&b[40..72]);
        let title = TitleId::from_wire(&t)?;
        let mut edge_key = [0u8; 8];
        edge_key.copy_from_slice(&b[88..96]);
        Ok(Self { grant: PlaybackGrant { session, not_before, expires, title, client, edge_key }, bytes })
    }

    /// Parses the base64url text form.
    pub fn from_text(s: &str) -> Result<Self, ProtoError> {
        if s.len() != TEXT_LEN {
            return Err(ProtoError::invalid(WHAT, format!("{} characters, need {TEXT_LEN}", s.len())));
        }
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|e| ProtoError::invalid(WHAT, format!("not base64url: {e}")))?;
        Self::decode(&raw)
    }

    /// Checks the origin's signature.
    pub fn verify(&self, origin: &VerifyingKey) -> Result<&PlaybackGrant, ProtoError> {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&self.bytes[SIGNED_LEN..]);
        origin
            .verify_strict(&self.bytes[..SIGNED_LEN], &Signature::from_bytes(&sig))
            .map_err(|_| ProtoError::BadSignature { what: WHAT })?;
        Ok(&self.grant)
    }

    /// The fields (unverified until [`verify`](Self::verify) says so).
    pub fn grant(&self) -> &PlaybackGrant {
        &self.grant
    }

    /// Opens the sealed title key with the edge's key pair (which must be the
    /// one the token names).
    pub fn unseal(&self, edge: &EdgeKey) -> Result<TitleKey, ProtoError> {
        if edge.id != self.grant.edge_key {
            return Err(ProtoError::invalid(WHAT, "sealed to another edge key"));
        }
        let mut eph_public = [0u8; 32];
        eph_public.copy_from_slice(&self.bytes[96..128]);
        let key = seal_key(&edge.secret, &eph_public, &eph_public, &edge.public, &self.grant.session)?;
        let mut plain = Aes256GcmSiv::new(&key.into())
            .decrypt(&nonce(&self.grant.session), Payload { msg: &self.bytes[HEADER_LEN..SIGNED_LEN], aad: &self.bytes[..HEADER_LEN] })
            .map_err(|_| ProtoError::Decrypt)?;
        let mut k = [0u8; 32];
        if plain.len() != 32 {
            return Err(ProtoError::Decrypt);
        }
        k.copy_from_slice(&plain);
        plain.fill(0);
        Ok(TitleKey::from_bytes(k))
    }

    /// The binary form.
    pub fn as_bytes(&self) -> &[u8; TOKEN_LEN] {
        &self.bytes
    }
}

pub use crate::ticket::to_text;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn origin() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn grant(client: Option<IpAddr>) -> PlaybackGrant {
        PlaybackGrant {
            session: [3; 16],
            not_before: 1_790_000_000,
            expires: 1_790_007_200,
            title: TitleId::new("film").unwrap(),
            client,
            edge_key: [0; 8],
        }
    }

    fn sealed(client: Option<IpAddr>, edge: &EdgeKey) -> [u8; TOKEN_LEN] {
        grant(client).seal(&TitleKey::from_bytes([7; 32]), &edge.public, [9; 32], &origin()).unwrap()
    }

    #[test]
    fn round_trip_and_unseal_on_the_named_edge_only() {
        let edge = EdgeKey::from_secret([1; 32]);
        for client in [None, Some("10.1.2.3".parse().unwrap()), Some("::1".parse().unwrap())] {
            let text = to_text(&sealed(client, &edge));
            assert_eq!(text.len(), TEXT_LEN);
            let t = PlaybackToken::from_text(&text).unwrap();
            let g = t.verify(&origin().verifying_key()).unwrap();
            assert_eq!(g, &PlaybackGrant { edge_key: edge.id, ..grant(client) });
            assert_eq!(t.unseal(&edge).unwrap().expose(), &[7; 32]);
        }
        let t = PlaybackToken::decode(&sealed(None, &edge)).unwrap();
        let other = EdgeKey::from_secret([2; 32]);
        assert!(t.unseal(&other).is_err());
        // Even an edge that forges the id cannot open it.
        let mut impostor = EdgeKey::from_secret([2; 32]);
        impostor.id = edge.id;
        assert!(matches!(t.unseal(&impostor), Err(ProtoError::Decrypt)));
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let edge = EdgeKey::from_secret([1; 32]);
        let b = sealed(Some("10.1.2.3".parse().unwrap()), &edge);
        crate::assert_every_flip_refused(b, |m| {
            PlaybackToken::decode(m).and_then(|t| t.verify(&origin().verifying_key()).map(|_| ())).is_ok()
        });
        // The sealed key is bound to the header even without the signature.
        for at in 0..SIGNED_LEN {
            let mut m = b;
            m[at] ^= 1;
            if let Ok(t) = PlaybackToken::decode(&m) {
                assert!(t.unseal(&edge).is_err(), "flip at {at} still unseals");
            }
        }
    }

    #[test]
    fn x25519_matches_rfc_7748() {
        let h = |s: &str| -> [u8; 32] { hex::decode(s).unwrap().try_into().unwrap() };
        let alice = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let bob = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        assert_eq!(x25519_base(alice), h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
        assert_eq!(x25519_base(bob), h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"));
        let shared = MontgomeryPoint(x25519_base(bob)).mul_clamped(alice).to_bytes();
        assert_eq!(shared, h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"));
    }

    #[test]
    fn validity_window_and_binding() {
        let g = grant(Some("10.1.2.3".parse().unwrap()));
        let me: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(g.check(1_790_000_000, me).is_ok());
        assert_eq!(g.check(1_789_999_999, me).unwrap_err().0, "not_yet_valid");
        assert_eq!(g.check(1_790_007_200, me).unwrap_err().0, "expired");
        assert_eq!(g.check(1_790_000_000, "10.1.2.4".parse().unwrap()).unwrap_err().0, "wrong_client");
        assert!(g.check(1_790_000_000, "::ffff:10.1.2.3".parse().unwrap()).is_ok());
        assert!(grant(None).check(1_790_000_000, "192.0.2.1".parse().unwrap()).is_ok());
    }

    #[test]
    fn hostile_input() {
        let edge = EdgeKey::from_secret([1; 32]);
        let good = sealed(None, &edge);
        for bad in ["", "x", &"A".repeat(319), &"A".repeat(321), &"!".repeat(320), &"A".repeat(320)] {
            assert!(PlaybackToken::from_text(bad).is_err(), "{bad:?}");
        }
        assert!(PlaybackToken::decode(&good[..239]).is_err());
        let mut m = good;
        m[5] = 9;
        assert!(PlaybackToken::decode(&m).is_err());
        let mut m = good;
        m[80] = 1; // an address with binding "none"
        assert!(PlaybackToken::decode(&m).is_err());
        // Too long a lifetime is not signed at all.
        let long = PlaybackGrant { expires: 1_790_000_000 + MAX_LIFETIME_SECS + 1000, ..grant(None) };
        assert!(long.seal(&TitleKey::from_bytes([7; 32]), &edge.public, [9; 32], &origin()).is_err());
        // A low-order ephemeral point (all zero) is refused, not turned into a known key.
        let mut m = good;
        m[96..128].fill(0);
        assert!(PlaybackToken::decode(&m).unwrap().unseal(&edge).is_err());
    }
}
