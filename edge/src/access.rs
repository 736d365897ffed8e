//! Who may do what (pure): a request for a title's blob must carry a valid
//! validation certificate for that title in
//! `Authorization: Tranzcast <certificate>`; the operator's own servers
//! (staging, parent fetches, pushes) present the cluster token instead, and
//! the origin pushes pre-cast segments to a peer with that peer's push token.
//!
//! The decision is split in three, so each part runs where it is cheapest:
//! [`credentials`] checks the signature once per distinct header (the service
//! stack caches the answer, because an Ed25519 verification costs more than
//! serving a small range); [`admit`] checks expiry and revocation on every
//! request; [`allow_blob`] checks the title once the blob's first bytes are
//! known. The blob says which title it belongs to: frames and manifests both
//! carry the title id at bytes 8..40, so no catalog lookup is needed, and a
//! blob still arriving is checked as soon as its first verified group is in.

use ed25519_dalek::VerifyingKey;
use tranzcast_proto::TitleId;
use tranzcast_proto::ticket::{SignedToken, Token};

/// Why a request is refused: status (401, 403, or 503 before the first
/// revocation list), code, reason.
pub type Denial = (u16, &'static str, String);

/// What a request's `Authorization` header proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The cluster token: one of the operator's own servers.
    Cluster,
    /// A genuine validation certificate (its key part is not kept).
    Certificate {
        /// The title it unlocks.
        title: TitleId,
        /// Its serial, for revocation.
        serial: [u8; 16],
        /// Expiry, Unix seconds.
        expires: u64,
    },
}

fn same_secret(a: &[u8], b: &[u8]) -> bool {
    // Constant time in the contents; an empty secret opens nothing.
    !b.is_empty() && a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the header's credentials for reading blobs: the cluster token, or
/// a certificate signed by the origin. Pure; verifies one signature.
pub fn credentials(authorization: Option<&str>, cluster_token: &str, origin_key: &VerifyingKey) -> Result<Credentials, Denial> {
    let auth = authorization.map(str::trim).unwrap_or("");
    if let Some(t) = auth.strip_prefix("Bearer ") {
        if same_secret(t.trim().as_bytes(), cluster_token.as_bytes()) {
            return Ok(Credentials::Cluster);
        }
        return Err((403, "forbidden", "wrong cluster token".into()));
    }
    let Some(text) = auth.strip_prefix("Tranzcast ") else {
        return Err((401, "unauthorized", "this blob needs Authorization: Tranzcast <validation certificate>".into()));
    };
    match SignedToken::from_text(text.trim()).ok().as_ref().map(|s| s.verify(origin_key).cloned()) {
        Some(Ok(Token::Certificate(c))) => Ok(Credentials::Certificate { title: c.title, serial: c.serial, expires: c.expires }),
        _ => Err((403, "forged", "not a validation certificate signed by the origin".into())),
    }
}

/// Checks the credentials are still good now: not expired, not revoked
/// (and a revocation list read: see [`crate::revocation`]).
pub fn admit(creds: &Credentials, revoked: &crate::revocation::Revocations, now: u64) -> Result<(), Denial> {
    match creds {
        Credentials::Cluster => Ok(()),
        Credentials::Certificate { expires, .. } if now >= *expires => Err((403, "expired", "the certificate has expired".into())),
        Credentials::Certificate { serial, .. } => revoked.check(serial),
    }
}

/// Decides access to a blob of `title` (None: the blob is no title's frame or manifest).
pub fn allow_blob(creds: &Credentials, title: Option<&TitleId>) -> Result<(), Denial> {
    match (creds, title) {
        (Credentials::Cluster, _) => Ok(()),
        (Credentials::Certificate { .. }, None) => Err((403, "forbidden", "this blob belongs to no title a certificate can unlock".into())),
        (Credentials::Certificate { title: mine, .. }, Some(t)) if mine != t => {
            Err((403, "wrong_title", format!("the certificate is for {mine}, not {t}")))
        }
        (Credentials::Certificate { .. }, Some(_)) => Ok(()),
    }
}

/// Checks a write (staging, pushes): `Bearer` with the cluster token or, on a
/// peer, the push token the origin gave it.
pub fn authorize_write(authorization: Option<&str>, cluster_token: &str, push_token: Option<&str>) -> Result<(), Denial> {
    let Some(t) = authorization.map(str::trim).and_then(|v| v.strip_prefix("Bearer ")) else {
        return Err((401, "unauthorized", "staging calls need the cluster token (or a peer's push token)".into()));
    };
    let t = t.trim().as_bytes();
    if same_secret(t, cluster_token.as_bytes()) || push_token.is_some_and(|p| same_secret(t, p.as_bytes())) {
        Ok(())
    } else {
        Err((403, "forbidden", "wrong token".into()))
    }
}

pub use tranzcast_proto::owner::{blob_title, segment_of};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use ed25519_dalek::SigningKey;
    use tranzcast_proto::ticket::{Certificate, to_text};

    use super::*;
    use crate::revocation::Revocations;

    fn cert(title: &str, expires: u64, key: &SigningKey) -> (String, [u8; 16]) {
        let c = Certificate { serial: [3; 16], customer: 1, created: 100, expires, title: TitleId::new(title).unwrap(), key_part: [0; 32] };
        (to_text(&c.sign(key)), c.serial)
    }

    fn decide(
        auth: Option<&str>,
        token: &str,
        title: Option<&TitleId>,
        vk: &VerifyingKey,
        revoked: &Revocations,
        now: u64,
    ) -> Result<(), Denial> {
        let c = credentials(auth, token, vk)?;
        admit(&c, revoked, now)?;
        allow_blob(&c, title)
    }

    #[test]
    fn decisions() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let vk = key.verifying_key();
        let film = TitleId::new("film").unwrap();
        let mut none = Revocations::default();
        none.replace(HashSet::new(), Instant::now());
        let mut revoked = Revocations::default();
        let (good, serial) = cert("film", 1000, &key);
        let auth = format!("Tranzcast {good}");
        assert!(decide(Some(&auth), "cluster-secret-000", Some(&film), &vk, &none, 500).is_ok());
        assert_eq!(decide(None, "cluster-secret-000", Some(&film), &vk, &none, 500).unwrap_err().0, 401);
        assert_eq!(decide(Some(&auth), "x", Some(&film), &vk, &none, 1000).unwrap_err().1, "expired");
        assert_eq!(decide(Some(&auth), "x", Some(&TitleId::new("other").unwrap()), &vk, &none, 500).unwrap_err().1, "wrong_title");
        revoked.replace(HashSet::from([serial]), Instant::now());
        assert_eq!(decide(Some(&auth), "x", Some(&film), &vk, &revoked, 500).unwrap_err().1, "revoked");
        let unread = Revocations::default();
        assert_eq!(decide(Some(&auth), "x", Some(&film), &vk, &unread, 500).unwrap_err().1, "revocations_unknown");
        assert!(
            decide(Some("Bearer cluster-secret-000"), "cluster-secret-000", None, &vk, &unread, 500).is_ok(),
            "the cluster's own reads need no list"
        );
        let (forged, _) = cert("film", 1000, &SigningKey::from_bytes(&[2; 32]));
        assert_eq!(decide(Some(&format!("Tranzcast {forged}")), "x", Some(&film), &vk, &none, 500).unwrap_err().1, "forged");
        assert_eq!(decide(Some("Tranzcast garbage"), "x", Some(&film), &vk, &none, 500).unwrap_err().1, "forged");
        assert!(decide(Some("Bearer cluster-secret-000"), "cluster-secret-000", None, &vk, &none, 500).is_ok());
        assert_eq!(decide(Some("Bearer nope"), "cluster-secret-000", Some(&film), &vk, &none, 500).unwrap_err().0, 403);
        assert!(decide(Some("Bearer "), "", Some(&film), &vk, &none, 500).is_err(), "an empty cluster token opens nothing");
        assert_eq!(decide(Some(&auth), "x", None, &vk, &none, 500).unwrap_err().0, 403);
        assert_eq!(decide(Some("Basic abc"), "x", Some(&film), &vk, &none, 500).unwrap_err().0, 401);
    }

    #[test]
    fn writes_need_the_cluster_or_push_token() {
        assert!(authorize_write(Some("Bearer cluster-secret-000"), "cluster-secret-000", None).is_ok());
        assert!(authorize_write(Some("Bearer push-1"), "cluster-secret-000", Some("push-1")).is_ok());
        assert_eq!(authorize_write(None, "cluster-secret-000", None).unwrap_err().0, 401);
        assert_eq!(authorize_write(Some("Bearer push-2"), "cluster-secret-000", Some("push-1")).unwrap_err().0, 403);
        assert!(authorize_write(Some("Bearer "), "", Some("")).is_err(), "empty secrets open nothing");
        assert!(authorize_write(Some("Bearer  x"), "", Some("")).is_err(), "empty secrets open nothing");
    }
}
