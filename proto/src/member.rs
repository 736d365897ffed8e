//! Member credentials: the bearer text a node or an edge joins the cluster
//! with, issued by the operator and bound to one name and one role.
//!
//! ```text
//! tzm1.<name>.<role>.<issued_ms>.<mac>
//! ```
//!
//! `name` is 1..=64 of `a-z A-Z 0-9 - _`, `role` is `node` or `edge`,
//! `issued_ms` the issue time in Unix milliseconds (decimal, no leading
//! zero), `mac` 64 lowercase hex digits: the keyed blake3 of
//! `name \0 role \0 issued_ms` under a key derived from the origin's
//! `member_key`. Whoever holds the member key mints credentials (the origin
//! and `tranzcast cluster add-member`); nobody else can, and no credential can
//! be edited into another name or role. Retiring a member refuses every
//! credential of that name issued up to then, so a re-enrolled server gets a
//! newer one. The origin stores no credential, so its database holds nothing
//! to steal.

use crate::ProtoError;

const PREFIX: &str = "tzm1.";
const CONTEXT: &str = "tranzcast 2026-12 member credential v1";
/// The longest credential text: prefix, a 64-byte name, role, 20 digits, mac, dots.
pub const MAX_LEN: usize = 5 + 64 + 1 + 4 + 1 + 20 + 1 + 64;

/// The role a credential lets its holder join as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberRole {
    /// Holds complete staged sets (a Neuro Node); never receives playback keys.
    Node,
    /// Serves viewers; the only role the origin seals playback keys to.
    Edge,
}

impl MemberRole {
    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Edge => "edge",
        }
    }

    /// Reads a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "node" => Some(Self::Node),
            "edge" => Some(Self::Edge),
            _ => None,
        }
    }
}

/// A credential's claims, read but not yet checked against the member key.
#[derive(Clone, PartialEq, Eq)]
pub struct MemberCredential {
    /// The member's name (its record at the origin).
    pub name: String,
    /// The role it joins as.
    pub role: MemberRole,
    /// When it was issued, Unix milliseconds.
    pub issued_ms: u64,
    mac: [u8; 32],
}

// The MAC is the secret part of a bearer credential: never printed.
crate::debug_redacted!(MemberCredential { name, role, issued_ms } redact { mac });

/// Whether `name` is a valid member name: 1..=64 of `a-z A-Z 0-9 - _`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn mac(member_key: &[u8], name: &str, role: MemberRole, issued_ms: u64) -> [u8; 32] {
    let key = blake3::derive_key(CONTEXT, member_key);
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(name.as_bytes());
    h.update(&[0]);
    h.update(role.as_str().as_bytes());
    h.update(&[0]);
    h.update(issued_ms.to_string().as_bytes());
    *h.finalize().as_bytes()
}

/// Mints the credential text for `name` as `role`.
///
/// # Errors
/// An invalid name.
pub fn issue(member_key: &[u8], name: &str, role: MemberRole, issued_ms: u64) -> Result<String, ProtoError> {
    if !valid_name(name) {
        return Err(ProtoError::invalid("member name", "1..=64 of a-z, A-Z, 0-9, '-', '_'"));
    }
    let m = mac(member_key, name, role, issued_ms);
    Ok(format!("{PREFIX}{name}.{}.{issued_ms}.{}", role.as_str(), hex::encode(m)))
}

impl MemberCredential {
    /// Reads a credential's text strictly (no surrounding space, lowercase
    /// hex, canonical decimal). Pure; never panics.
    ///
    /// # Errors
    /// Anything that is not a well-formed credential.
    pub fn parse(text: &str) -> Result<Self, ProtoError> {
        let bad = |reason: &str| ProtoError::invalid("member credential", reason);
        if text.len() > MAX_LEN {
            return Err(bad("too long"));
        }
        let rest = text.strip_prefix(PREFIX).ok_or(ProtoError::BadMagic { what: "member credential" })?;
        let mut parts = rest.split('.');
        let (Some(name), Some(role), Some(issued), Some(mac_hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected tzm1.<name>.<role>.<issued_ms>.<mac>"));
        };
        if !valid_name(name) {
            return Err(bad("name: 1..=64 of a-z, A-Z, 0-9, '-', '_'"));
        }
        let role = MemberRole::parse(role).ok_or_else(|| bad("role must be node or edge"))?;
        let canonical = !issued.is_empty()
            && issued.len() <= 20
            && issued.bytes().all(|c| c.is_ascii_digit())
            && (issued == "0" || !issued.starts_with('0'));
        let issued_ms = issued.parse::<u64>().ok().filter(|_| canonical).ok_or_else(|| bad("issued_ms: a decimal number"))?;
        if mac_hex.len() != 64 || !mac_hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
            return Err(bad("mac: 64 lowercase hex digits"));
        }
        let mut mac = [0u8; 32];
        hex::decode_to_slice(mac_hex, &mut mac).map_err(|_| bad("mac: 64 lowercase hex digits"))?;
        Ok(Self { name: name.to_string(), role, issued_ms, mac })
    }

    /// Checks the MAC under `member_key` (in constant time).
    ///
    /// # Errors
    /// A credential not minted with this key, or edited since.
    pub fn verify(&self, member_key: &[u8]) -> Result<(), ProtoError> {
        let expected = blake3::Hash::from(mac(member_key, &self.name, self.role, self.issued_ms));
        // blake3::Hash's equality is constant-time.
        if expected == blake3::Hash::from(self.mac) { Ok(()) } else { Err(ProtoError::BadSignature { what: "member credential" }) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &[u8] = b"member-key-for-tests-0123456789abcdef";

    #[test]
    fn issued_credentials_verify_and_carry_their_claims() {
        let text = issue(KEY, "edge-1", MemberRole::Edge, 1_790_000_000_000).unwrap();
        assert!(text.len() <= MAX_LEN);
        let c = MemberCredential::parse(&text).unwrap();
        assert_eq!((c.name.as_str(), c.role, c.issued_ms), ("edge-1", MemberRole::Edge, 1_790_000_000_000));
        c.verify(KEY).unwrap();
        assert!(!format!("{c:?}").contains(&text[text.len() - 64..]), "the MAC is never printed");
    }

    #[test]
    fn another_key_or_an_edited_claim_fails() {
        let text = issue(KEY, "node-1", MemberRole::Node, 5).unwrap();
        assert!(MemberCredential::parse(&text).unwrap().verify(b"another key").is_err());
        for edited in [text.replace("node-1", "node-2"), text.replace(".node.", ".edge."), text.replace(".5.", ".6.")] {
            let c = MemberCredential::parse(&edited).unwrap();
            assert_eq!(c.verify(KEY), Err(ProtoError::BadSignature { what: "member credential" }), "{edited}");
        }
    }

    #[test]
    fn hostile_text_is_refused_without_panic() {
        let good = issue(KEY, "e", MemberRole::Edge, 7).unwrap();
        let mac = &good[good.len() - 64..];
        let cases = [
            String::new(),
            "tzm1.".into(),
            "tzm1....".into(),
            format!("tzm2.e.edge.7.{mac}"),
            format!("tzm1.e.edge.7.{mac}.x"),
            format!("tzm1.e.peer.7.{mac}"),
            format!("tzm1.e.edge.07.{mac}"),
            format!("tzm1.e.edge.+7.{mac}"),
            format!("tzm1.e.edge.99999999999999999999.{mac}"),
            format!("tzm1.e.edge..{mac}"),
            format!("tzm1.e.edge.7.{}", mac.to_uppercase()),
            format!("tzm1.e.edge.7.{}", &mac[1..]),
            format!("tzm1.é.edge.7.{mac}"),
            format!("tzm1.{}.edge.7.{mac}", "a".repeat(65)),
            format!(" {good}"),
            "tzm1.\u{0}.edge.7.ff".into(),
            "x".repeat(10_000),
        ];
        for c in cases {
            assert!(MemberCredential::parse(&c).is_err(), "{c:?}");
        }
        assert!(issue(KEY, "bad.name", MemberRole::Edge, 1).is_err());
    }
}
