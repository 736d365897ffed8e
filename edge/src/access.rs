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
//! A blob not held is checked against the title's manifest before it is
//! fetched ([`crate::titles`]).

pub use tranzcast_proto::access::{Credentials, Denial, allow_blob, authorize_write, credentials, is_cluster};

/// Checks the credentials are still good now: not expired, not revoked
/// (and a revocation list read: see [`crate::revocation`]).
pub fn admit(creds: &Credentials, revoked: &crate::revocation::Revocations, now: u64) -> Result<(), Denial> {
    match creds {
        Credentials::Cluster => Ok(()),
        Credentials::Certificate { expires, .. } if now >= *expires => Err((403, "expired", "the certificate has expired".into())),
        Credentials::Certificate { serial, .. } => revoked.check(serial),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use ed25519_dalek::{SigningKey, VerifyingKey};
    use tranzcast_proto::TitleId;
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
}
