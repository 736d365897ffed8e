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

/// A customer created at the storefront (`POST /v1/customers`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct CustomerCreated {
    /// The customer's id.
    pub customer: u64,
}

/// An order placed at the storefront (`POST /v1/orders`): its play ticket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderPlaced {
    /// The signed play ticket (holds K2), text: hand it to the viewer.
    pub ticket: String,
    /// The order's id.
    pub order: u64,
    /// The ticket's serial, hex.
    pub serial: String,
}

/// The origin's signing key (`GET /v1/origin-key`), hex.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OriginKey {
    /// The Ed25519 public key, 64 hex digits.
    pub ed25519: String,
}

impl OriginKey {
    /// The key's 32 bytes, from an answer (bounded; `None` if it is not one).
    pub fn parse(body: &[u8]) -> Option<[u8; 32]> {
        if body.len() > 4096 {
            return None;
        }
        let k: OriginKey = serde_json::from_slice(body).ok()?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(k.ed25519, &mut out).ok()?;
        Some(out)
    }
}

/// The live members of the cluster (`GET /v1/cluster`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterView {
    /// Every member heard from within the origin's member timeout.
    pub members: Vec<ClusterMember>,
}

/// One live member: where it is, as a play's sources list it, and when it
/// was last heard from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterMember {
    /// Its name, role, URLs and load.
    #[serde(flatten)]
    pub entry: SourceEntry,
    /// Its last heartbeat, Unix milliseconds.
    #[serde(default)]
    pub last_seen_ms: u64,
}

/// The longest cluster view read.
pub const MAX_CLUSTER_VIEW_BYTES: usize = 4 << 20;

impl ClusterView {
    /// Reads a cluster view (bounded).
    pub fn parse(body: &[u8]) -> Result<ClusterView, ProtoError> {
        parse_bounded("cluster view", MAX_CLUSTER_VIEW_BYTES, body)
    }
}

/// The origin's answer to a join or heartbeat (`POST /v1/cluster/join`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JoinAnswer {
    /// The origin's signing key, hex.
    pub origin_key: String,
    /// Seconds between heartbeats.
    pub heartbeat_s: u64,
    /// A peer's token for the origin's pushes to it (pre-cast segments).
    #[serde(default)]
    pub push_token: Option<String>,
}

/// A peer's TLS identity issued by the origin (`POST /v1/cluster/peer-identity`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The certificate chain, PEM.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
    /// The names it is valid for.
    pub names: Vec<String>,
    /// Its end, Unix seconds.
    pub expires: u64,
}

// Printed without the private key.
impl std::fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerIdentity").field("names", &self.names).field("expires", &self.expires).finish_non_exhaustive()
    }
}

pub use crate::json::{parse_bounded, parse_small};

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
        parse_bounded("play grant", MAX_GRANT_BYTES, body)
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
    fn the_origin_key_and_the_cluster_view_read_back_and_refuse_junk() {
        let k = serde_json::to_vec(&OriginKey { ed25519: hex::encode([7u8; 32]) }).unwrap();
        assert_eq!(OriginKey::parse(&k), Some([7u8; 32]));
        for junk in [&br#"{"ed25519":"00"}"#[..], br#"{"ed25519":1}"#, b"{}", &[b'x'; 5000]] {
            assert_eq!(OriginKey::parse(junk), None);
        }
        let v = ClusterView {
            members: vec![ClusterMember {
                entry: SourceEntry {
                    name: "node-1".into(),
                    role: EdgeRole::Node,
                    https: "https://localhost:1".into(),
                    h3: Some("127.0.0.1:1".into()),
                    load: 0.0,
                },
                last_seen_ms: 5,
            }],
        };
        assert_eq!(ClusterView::parse(&serde_json::to_vec(&v).unwrap()).unwrap(), v);
        assert!(ClusterView::parse(br#"{"members":[{"name":"x","role":"origin","https":"y"}]}"#).is_err());
        assert!(ClusterView::parse(&vec![b' '; MAX_CLUSTER_VIEW_BYTES + 1]).is_err());
    }

    #[test]
    fn an_error_body_reads_back_and_anything_else_reads_as_unknown() {
        let b = serde_json::to_vec(&ErrorBody::new("spent", "the ticket was used")).unwrap();
        assert_eq!(b, br#"{"error":{"code":"spent","reason":"the ticket was used"}}"#);
        assert_eq!(ErrorBody::read(&b), ("spent".into(), "the ticket was used".into()));
        assert_eq!(ErrorBody::read(b"<html>502</html>"), ("unknown".into(), "no reason given".into()));
    }
}
