//! Every JSON answer of our servers, one type for both ends: the play
//! grant (`POST /v1/play`) and the sources in it, playback URLs, the
//! storefront's answers, the catalog, revocations, membership, staging,
//! an edge's demand, health, and the error body every server answers a
//! refusal with. Servers write them with serde; clients read them with the
//! bounded parsers here (hostile input: an origin is trusted by TLS, but a
//! proxy or a bug is not). Request bodies are in [`crate::api`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ProtoError;
use crate::pulse::EdgeRole;

/// A granted play, for a smart client (`POST /v1/play` without `url`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlayGrant {
    /// The validation certificate (holds K1), text.
    pub certificate: String,
    /// The replacement ticket for a rental's next play, if any.
    pub ticket: Option<String>,
    /// The signed manifest, base64url.
    pub manifest: Option<String>,
    /// The manifest's blob address, hex.
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
crate::debug_redacted!(PeerIdentity { names, expires } redact { key });

pub use crate::json::{parse_bounded, parse_small};

/// `GET /healthz` of every server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// "ok".
    pub status: String,
    /// "origin", "node", "edge" or "peer".
    pub role: String,
    /// Its name in the cluster (nodes, edges, peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `GET /v1/storefront/check`: the storefront token works.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StorefrontCheck {
    /// "ok".
    pub storefront: String,
}

/// A blob stored (`PUT /v1/blobs/<addr>` at the origin or a node).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stored {
    /// Its address (hex).
    pub stored: String,
}

/// A title published (`POST /v1/titles`) or a manifest recorded (`PUT
/// /v1/titles/<id>/manifest` at a node).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Published {
    /// The title.
    pub title: String,
    /// The signed manifest's address (hex).
    pub manifest: String,
    /// Its segments (the origin's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<usize>,
}

/// A chapter of a title, as the catalog lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Chapter {
    /// Its start in the running time.
    pub start_ms: u64,
    /// Where it starts in the plaintext.
    pub byte_offset: u64,
    /// Its name.
    pub name: String,
}

/// A title in the catalog (`GET /v1/titles`, `GET /v1/titles/<id>`); the
/// details are missing when its manifest is not in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TitleSummary {
    /// The title.
    pub title: String,
    /// Its signed manifest's address (hex).
    pub manifest: String,
    /// Segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<usize>,
    /// Plaintext bytes of each segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_size: Option<u32>,
    /// Plaintext bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Running time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_time_s: Option<f64>,
    /// Its media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Its chapters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chapters: Option<Vec<Chapter>>,
    /// `GET /v1/titles/<id>` only: the signed manifest itself (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_blob: Option<String>,
}

/// `GET /v1/titles`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Titles {
    /// Every title.
    pub titles: Vec<TitleSummary>,
}

/// What a revocation took (`POST /v1/revoke`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Revoked {
    /// What was asked to be revoked (a ticket by its serial).
    pub revoked: crate::api::RevokeBody,
    /// Orders revoked.
    pub orders: u64,
    /// Tickets revoked.
    pub tickets: u64,
    /// Certificates revoked.
    pub certificates: u64,
}

/// A member retired (`POST /v1/cluster/members/<name>/retire`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Retired {
    /// Its name.
    pub retired: String,
    /// Credentials issued up to this time (ms since the epoch) no longer work.
    pub credentials_issued_until_ms: u64,
}

/// Progress of one title on one member (staging to nodes, pre-casts to peers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TitleProgress {
    /// Blobs the member holds (segments and manifest).
    pub held: u64,
    /// Blobs the title has.
    pub total: u64,
    /// The member holds the whole set and its manifest.
    pub complete: bool,
}

/// Member name -> title -> progress.
pub type ProgressByMember = BTreeMap<String, BTreeMap<String, TitleProgress>>;

/// `GET /v1/staging`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct StagingView {
    /// Staging to nodes.
    pub nodes: ProgressByMember,
    /// Pre-casts to peers.
    pub peers: ProgressByMember,
}

/// One playback URL on one edge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlaybackUrl {
    /// The edge's name.
    pub edge: String,
    /// Its HTTP/3 address.
    pub h3: Option<String>,
    /// The URL.
    pub url: String,
}

/// A granted play for a standard player (`POST /v1/play` with `"mode": "url"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlaybackUrls {
    /// URLs on the best edges, best first.
    pub urls: Vec<PlaybackUrl>,
    /// The playback session (the certificate's serial, hex).
    pub session: String,
    /// The URLs work from (seconds since the epoch)...
    pub not_before: u64,
    /// ... to.
    pub expires: u64,
    /// The title's media type.
    pub media_type: String,
    /// Plaintext bytes.
    pub bytes: u64,
    /// The replacement ticket (rentals with plays left).
    pub ticket: Option<String>,
}

impl PlaybackUrls {
    /// Reads the answer (bounded).
    pub fn parse(body: &[u8]) -> Result<PlaybackUrls, ProtoError> {
        parse_bounded("playback URLs", 64 << 10, body)
    }
}

/// `POST /v1/staging/missing` at a node: which of the blobs asked about it lacks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Missing {
    /// Addresses (hex).
    pub missing: Vec<String>,
}

/// A segment's requests at an edge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentDemand {
    /// The segment.
    pub segment: u64,
    /// Requests for it.
    pub requests: u64,
}

/// A title's demand at an edge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TitleDemand {
    /// The title.
    pub title: String,
    /// Reads started in the last minute.
    pub last_minute: u64,
    /// Reads started since the edge started.
    pub total: u64,
    /// At or over the hot threshold.
    pub hot: bool,
    /// Its most requested segments.
    pub top_segments: Vec<SegmentDemand>,
}

/// `GET /v1/demand` at an edge: titles with demand in the last minute, hottest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Demand {
    /// Reads a minute that make a title hot.
    pub hot_requests_per_min: u64,
    /// Segments prefetched when a title turns hot.
    pub prefetch_segments: u64,
    /// Titles.
    pub titles: Vec<TitleDemand>,
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
