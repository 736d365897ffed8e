//! Who may read or write blobs on a node, an edge or a peer, from the
//! request's `Authorization` header (pure; fuzzed,
//! `fuzz/fuzz_targets/credentials.rs`): the operator's servers present the
//! cluster token, a viewer an origin-signed validation certificate for the
//! blob's title, the origin a peer's push token. Expiry and revocation,
//! which need the clock and the revocation list, are the server's
//! (`edge::access::admit`).

use ed25519_dalek::VerifyingKey;

use crate::TitleId;
use crate::ticket::{SignedToken, Token};

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
/// Whether the header carries the cluster token (compared in constant time).
pub fn is_cluster(authorization: Option<&str>, cluster_token: &str) -> bool {
    authorization
        .map(str::trim)
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same_secret(t.trim().as_bytes(), cluster_token.as_bytes()))
}

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_token_is_recognised_and_nothing_else() {
        assert!(is_cluster(Some(" Bearer  cluster-secret-000 "), "cluster-secret-000"));
        assert!(!is_cluster(Some("Bearer cluster-secret-001"), "cluster-secret-000"));
        assert!(!is_cluster(Some("Tranzcast cluster-secret-000"), "cluster-secret-000"));
        assert!(!is_cluster(None, "cluster-secret-000"));
        assert!(!is_cluster(Some("Bearer "), ""), "an empty token opens nothing");
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

    #[test]
    fn hostile_headers_are_refused_without_panic() {
        let vk = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        for h in ["", "Bearer", "Bearer  ", "Tranzcast", "Tranzcast é", "tranzcast x", "Bearer\u{0}x", &"A".repeat(100_000)] {
            assert!(credentials(Some(h), "cluster-secret-000", &vk).is_err(), "{h:?}");
        }
    }
}
