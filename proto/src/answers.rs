//! The origin's JSON answers that clients read, one type for both ends:
//! the play grant (`POST /v1/play`), the sources in it, and the error body
//! every server answers a refusal with. The origin writes them with serde;
//! clients read them with the bounded parsers here (hostile input: an
//! origin is trusted by TLS, but a proxy or a bug is not).

use serde::{Deserialize, Serialize};

use crate::ProtoError;
use crate::pulse::EdgeRole;

/// A granted play, for a smart client (`POST /v1/play` without `url`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlayGrant {
    /// The validation certificate (holds K1), text.
    pub certificate: String,
    /// The replacement ticket for a rental's next play, if any.
    #[serde(default)]
    pub ticket: Option<String>,
    /// The signed manifest, base64url.
    pub manifest: Option<String>,
    /// The manifest's blob address, hex.
    #[serde(default)]
    pub manifest_address: Option<String>,
    /// Where the title's blobs may be fetched.
    #[serde(default)]
    pub sources: Vec<SourceEntry>,
}

/// One server a client may fetch from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceEntry {
    /// Its name in the cluster.
    pub name: String,
    /// What it is.
    pub role: EdgeRole,
    /// Its HTTPS URL.
    pub https: String,
    /// Its HTTP/3 address, if it has one.
    #[serde(default)]
    pub h3: Option<String>,
    /// Its load as it last reported it (0 to 1).
    #[serde(default)]
    pub load: f64,
}

/// The body of every refusal: `{"error": {"code", "reason"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A refusal's code (stable, for programs) and reason (for people).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Stable, snake_case.
    pub code: String,
    /// A sentence.
    pub reason: String,
}

impl ErrorBody {
    /// A refusal's body.
    pub fn new(code: impl Into<String>, reason: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { code: code.into(), reason: reason.into() } }
    }

    /// The code and reason of a refusal's body; placeholders when it is not one.
    pub fn read(body: &[u8]) -> (String, String) {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => (b.error.code, b.error.reason),
            Err(_) => ("unknown".into(), "no reason given".into()),
        }
    }
}

/// The longest play grant read: the largest manifest the format allows, in
/// base64, and the rest.
pub const MAX_GRANT_BYTES: usize = (crate::manifest::MAX_SEGMENTS as usize * 32 + (1 << 20)) / 3 * 4 + (1 << 20);

impl PlayGrant {
    /// Reads a grant (bounded).
    pub fn parse(body: &[u8]) -> Result<PlayGrant, ProtoError> {
        if body.len() > MAX_GRANT_BYTES {
            return Err(ProtoError::invalid("play grant", format!("{} bytes, at most {MAX_GRANT_BYTES}", body.len())));
        }
        serde_json::from_slice(body).map_err(|e| ProtoError::invalid("play grant", e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_reads_back_and_hostile_ones_are_refused() {
        let g = PlayGrant {
            certificate: "TZC.x".into(),
            ticket: None,
            manifest: Some("AAAA".into()),
            manifest_address: None,
            sources: vec![SourceEntry {
                name: "n1".into(),
                role: EdgeRole::Node,
                https: "https://localhost:1".into(),
                h3: None,
                load: 0.5,
            }],
        };
        let text = serde_json::to_vec(&g).unwrap();
        assert_eq!(PlayGrant::parse(&text).unwrap(), g);
        // Written by older origins: no sources, no address.
        let old = br#"{"certificate":"c","ticket":"t","manifest":"m"}"#;
        assert_eq!(PlayGrant::parse(old).unwrap().sources, vec![]);
        for junk in [
            &br#"{"ticket":"t"}"#[..],
            br#"{"certificate":1}"#,
            b"[]",
            b"",
            br#"{"certificate":"c","manifest":null,"sources":[{"name":"a","role":"origin","https":"x"}]}"#,
        ] {
            assert!(PlayGrant::parse(junk).is_err(), "{}", String::from_utf8_lossy(junk));
        }
        assert!(PlayGrant::parse(&vec![b' '; MAX_GRANT_BYTES + 1]).is_err());
    }

    #[test]
    fn an_error_body_reads_back_and_anything_else_reads_as_unknown() {
        let b = serde_json::to_vec(&ErrorBody::new("spent", "the ticket was used")).unwrap();
        assert_eq!(b, br#"{"error":{"code":"spent","reason":"the ticket was used"}}"#);
        assert_eq!(ErrorBody::read(&b), ("spent".into(), "the ticket was used".into()));
        assert_eq!(ErrorBody::read(b"<html>502</html>"), ("unknown".into(), "no reason given".into()));
    }
}
