//! Who may read a blob (pure): a request for a title's blob must carry a
//! valid validation certificate for that title in
//! `Authorization: Tranzcast <certificate>`; the operator's own servers
//! (staging, parent fetches) present the cluster token instead.
//!
//! The blob says which title it belongs to: frames and manifests both carry
//! the title id at bytes 8..40 after their magic, so the check needs no
//! catalog lookup, and works for a blob that is still arriving as soon as its
//! first verified group is in.

use std::collections::HashSet;

use ed25519_dalek::VerifyingKey;
use tranzcast_proto::TitleId;
use tranzcast_proto::ticket::{SignedToken, Token};

/// Why a request is refused: status (401 or 403), code, reason.
pub type Denial = (u16, &'static str, String);

/// The title a blob belongs to, from its first bytes (`None` if it is neither a frame nor a manifest).
pub fn blob_title(prefix: &[u8]) -> Option<TitleId> {
    if prefix.len() < 40 || !(prefix[..4] == *b"TZSF" || prefix[..4] == *b"TZMF") {
        return None;
    }
    let mut t = [0u8; 32];
    t.copy_from_slice(&prefix[8..40]);
    TitleId::from_wire(&t).ok()
}

/// What can be decided before the blob's title is known: the credentials
/// themselves (cluster token, or a genuine, live, unrevoked certificate).
/// Run before any upstream fetch, so forged or stale certificates cost no
/// fetch.
pub fn precheck(
    authorization: Option<&str>,
    cluster_token: &str,
    origin_key: &VerifyingKey,
    revoked: &HashSet<[u8; 16]>,
    now: u64,
) -> Result<(), Denial> {
    let auth = authorization.map(str::trim).unwrap_or("");
    if auth.starts_with("Bearer ") {
        return authorize(authorization, cluster_token, None, origin_key, revoked, now);
    }
    let Some(text) = auth.strip_prefix("Tranzcast ") else {
        return Err((401, "unauthorized", "this blob needs Authorization: Tranzcast <validation certificate>".into()));
    };
    match SignedToken::from_text(text).ok().as_ref().map(|s| s.verify(origin_key).cloned()) {
        Some(Ok(Token::Certificate(c))) => {
            let title = c.title.clone();
            authorize(authorization, cluster_token, Some(&title), origin_key, revoked, now)
        }
        _ => Err((403, "forged", "not a validation certificate signed by the origin".into())),
    }
}

/// Decides access to a blob of `title` (None: not a title's blob).
pub fn authorize(
    authorization: Option<&str>,
    cluster_token: &str,
    title: Option<&TitleId>,
    origin_key: &VerifyingKey,
    revoked: &HashSet<[u8; 16]>,
    now: u64,
) -> Result<(), Denial> {
    let auth = authorization.map(str::trim).unwrap_or("");
    if let Some(t) = auth.strip_prefix("Bearer ") {
        let (a, b) = (t.trim().as_bytes(), cluster_token.as_bytes());
        if !b.is_empty() && a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
            return Ok(());
        }
        return Err((403, "forbidden", "wrong cluster token".into()));
    }
    let Some(text) = auth.strip_prefix("Tranzcast ") else {
        return Err((401, "unauthorized", "this blob needs Authorization: Tranzcast <validation certificate>".into()));
    };
    let Some(title) = title else {
        return Err((403, "forbidden", "this blob belongs to no title a certificate can unlock".into()));
    };
    let cert = match SignedToken::from_text(text).ok().as_ref().map(|s| s.verify(origin_key).cloned()) {
        Some(Ok(Token::Certificate(c))) => c,
        _ => return Err((403, "forged", "not a validation certificate signed by the origin".into())),
    };
    if cert.is_expired(now) {
        return Err((403, "expired", "the certificate has expired".into()));
    }
    if &cert.title != title {
        return Err((403, "wrong_title", format!("the certificate is for {}, not {title}", cert.title)));
    }
    if revoked.contains(&cert.serial) {
        return Err((403, "revoked", "the certificate was revoked".into()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ed25519_dalek::SigningKey;
    use tranzcast_proto::ticket::{Certificate, to_text};

    use super::*;

    fn cert(title: &str, expires: u64, key: &SigningKey) -> (String, [u8; 16]) {
        let c = Certificate { serial: [3; 16], customer: 1, created: 100, expires, title: TitleId::new(title).unwrap(), key_part: [0; 32] };
        (to_text(&c.sign(key)), c.serial)
    }

    #[test]
    fn decisions() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let vk = key.verifying_key();
        let film = TitleId::new("film").unwrap();
        let none = HashSet::new();
        let (good, serial) = cert("film", 1000, &key);
        let auth = format!("Tranzcast {good}");
        assert!(authorize(Some(&auth), "cluster-secret-000", Some(&film), &vk, &none, 500).is_ok());
        assert_eq!(authorize(None, "cluster-secret-000", Some(&film), &vk, &none, 500).unwrap_err().0, 401);
        assert_eq!(authorize(Some(&auth), "x", Some(&film), &vk, &none, 1000).unwrap_err().1, "expired");
        assert_eq!(authorize(Some(&auth), "x", Some(&TitleId::new("other").unwrap()), &vk, &none, 500).unwrap_err().1, "wrong_title");
        assert_eq!(authorize(Some(&auth), "x", Some(&film), &vk, &HashSet::from([serial]), 500).unwrap_err().1, "revoked");
        let (forged, _) = cert("film", 1000, &SigningKey::from_bytes(&[2; 32]));
        assert_eq!(authorize(Some(&format!("Tranzcast {forged}")), "x", Some(&film), &vk, &none, 500).unwrap_err().1, "forged");
        assert_eq!(authorize(Some("Tranzcast garbage"), "x", Some(&film), &vk, &none, 500).unwrap_err().1, "forged");
        assert!(authorize(Some("Bearer cluster-secret-000"), "cluster-secret-000", None, &vk, &none, 500).is_ok());
        assert_eq!(authorize(Some("Bearer nope"), "cluster-secret-000", Some(&film), &vk, &none, 500).unwrap_err().0, 403);
        assert!(authorize(Some("Bearer "), "", Some(&film), &vk, &none, 500).is_err(), "an empty cluster token opens nothing");
        assert_eq!(authorize(Some(&auth), "x", None, &vk, &none, 500).unwrap_err().0, 403);
    }

    #[test]
    fn title_from_frame_and_manifest_headers() {
        let t = TitleId::new("film").unwrap();
        let mut b = b"TZSF\x01\x01\x00\x00".to_vec();
        b.extend_from_slice(&t.to_wire());
        assert_eq!(blob_title(&b), Some(t.clone()));
        b[..4].copy_from_slice(b"TZMF");
        assert_eq!(blob_title(&b), Some(t));
        assert_eq!(blob_title(b"random bytes that are long enough to look like something"), None);
        assert_eq!(blob_title(b"TZSF"), None);
    }
}
