//! The origin's JSON request bodies, read and checked as pure functions:
//! one typed value per route, or why not. The origin's routes decide on
//! these values only, so everything a client can send in a body is read
//! here (and fuzzed, `fuzz/fuzz_targets/origin_bodies.rs`).
//!
//! Every reader takes the body's bytes, refuses unknown fields and returns
//! [`ProtoError::Invalid`] with a reason a client can act on.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::member::valid_name;
use crate::{ProtoError, TitleId};

const WHAT: &str = "request";

fn bad(reason: impl Into<String>) -> ProtoError {
    ProtoError::invalid(WHAT, reason)
}

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProtoError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

/// The body of `POST /v1/customers`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CustomerBody {
    /// The customer's name.
    pub name: String,
}

/// `POST /v1/customers`: the customer's name, trimmed, 1..=200 bytes.
pub fn new_customer(body: &[u8]) -> Result<String, ProtoError> {
    let r: CustomerBody = json(body)?;
    let name = r.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(bad("name must be 1 to 200 bytes"));
    }
    Ok(name.to_string())
}

/// What an order buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderTerms {
    /// Plays without limit, for ever.
    Buy,
    /// `plays` plays within `seconds` of the order.
    Rent {
        /// 1..=1000.
        plays: u32,
        /// 1..=366 days.
        seconds: u64,
    },
}

/// `POST /v1/orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The customer's number.
    pub customer: u64,
    /// The title bought or rented.
    pub title: TitleId,
    /// Its terms.
    pub terms: OrderTerms,
    /// What the request asked, as asked: an idempotency key's fingerprint
    /// (the same key with another request is refused).
    pub fingerprint: [u8; 32],
}

/// The body of `POST /v1/orders`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    /// The customer's number.
    pub customer: u64,
    /// The title.
    pub title: String,
    /// "buy" or "rent".
    pub kind: String,
    /// A rental's plays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plays: Option<u32>,
    /// A rental's length in hours...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u32>,
    /// ... or in seconds (short promotions, tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
}

impl OrderBody {
    /// A purchase.
    pub fn buy(customer: u64, title: impl Into<String>) -> Self {
        Self { customer, title: title.into(), kind: "buy".into(), plays: None, hours: None, seconds: None }
    }

    /// A rental of `plays` plays for `hours`.
    pub fn rent(customer: u64, title: impl Into<String>, plays: u32, hours: u32) -> Self {
        Self { customer, title: title.into(), kind: "rent".into(), plays: Some(plays), hours: Some(hours), seconds: None }
    }
}

/// Reads an order: `{"customer", "title", "kind": "buy"|"rent", "plays"?,
/// "hours"? | "seconds"?}`; a rental needs plays and a length, a purchase
/// takes neither.
pub fn new_order(body: &[u8]) -> Result<NewOrder, ProtoError> {
    let o: OrderBody = json(body)?;
    let title = TitleId::new(&o.title).map_err(|e| bad(e.to_string()))?;
    let secs = match (o.hours, o.seconds) {
        (Some(h), None) if (1..=24 * 366).contains(&h) => Some(u64::from(h) * 3600),
        (None, Some(s)) if (1..=366 * 86_400).contains(&s) => Some(s),
        (None, None) => None,
        _ => return Err(bad("give hours (1..=8784) or seconds (1..=31622400), not both")),
    };
    let terms = match (o.kind.as_str(), o.plays, secs) {
        ("buy", None, None) => OrderTerms::Buy,
        ("buy", _, _) => return Err(bad("a purchase takes no plays, hours or seconds")),
        ("rent", Some(plays), Some(seconds)) if (1..=1000).contains(&plays) => OrderTerms::Rent { plays, seconds },
        ("rent", _, _) => return Err(bad("a rental needs plays (1..=1000) and hours or seconds")),
        (k, _, _) => return Err(bad(format!("kind {k:?} is neither \"buy\" nor \"rent\""))),
    };
    let asked = serde_json::to_string(&(o.customer, &o.title, &o.kind, o.plays, o.hours, o.seconds)).unwrap_or_default();
    Ok(NewOrder { customer: o.customer, title, terms, fingerprint: *blake3::hash(asked.as_bytes()).as_bytes() })
}

/// Whom playback URLs are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// Anyone holding the URL.
    Anyone,
    /// The address the play request came from.
    Caller,
    /// This address.
    Address(IpAddr),
}

/// A play's "url" mode: playback URLs on edges for a standard player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlMode {
    /// Whom the URLs work for.
    pub bind: Bind,
    /// How many edges' URLs, 1..=8.
    pub urls: usize,
    /// How long they work, seconds (1..=`MAX_LIFETIME_SECS`), if shorter than the certificate.
    pub lifetime_s: Option<u64>,
}

/// `POST /v1/play`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayRequest {
    /// The ticket's text (read and verified by validation).
    pub ticket: String,
    /// `None`: the smart client's mode (certificate, manifest, sources).
    pub url: Option<UrlMode>,
}

/// The body of `POST /v1/play`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlayBody {
    /// The ticket's text.
    pub ticket: String,
    /// "client" (the default) or "url".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// "url": true (the caller's address), false, or an IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<Value>,
    /// "url": how many edges' URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<usize>,
    /// "url": how long they work, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_s: Option<u64>,
}

impl PlayBody {
    /// A smart client's play.
    pub fn client(ticket: impl Into<String>) -> Self {
        Self { ticket: ticket.into(), mode: None, bind: None, urls: None, lifetime_s: None }
    }

    /// Playback URLs on `urls` edges, for anyone holding them.
    pub fn urls(ticket: impl Into<String>, urls: usize) -> Self {
        Self { ticket: ticket.into(), mode: Some("url".into()), bind: None, urls: Some(urls), lifetime_s: None }
    }
}

/// Reads a play: `{"ticket", "mode"?: "client"|"url", "bind"?: true|false|"<ip>",
/// "urls"?: 1..=8, "lifetime_s"?}` (the last three for "url" only).
pub fn play(body: &[u8]) -> Result<PlayRequest, ProtoError> {
    let p: PlayBody = json(body)?;
    let url_mode = match p.mode.as_deref() {
        None | Some("client") => false,
        Some("url") => true,
        Some(m) => return Err(bad(format!("mode {m:?} is neither \"client\" nor \"url\""))),
    };
    let bind = match &p.bind {
        None | Some(Value::Bool(false)) | Some(Value::Null) => Bind::Anyone,
        Some(Value::Bool(true)) => Bind::Caller,
        Some(Value::String(a)) => Bind::Address(a.parse().map_err(|_| bad(format!("bind: {a:?} is not an IP address")))?),
        Some(_) => return Err(bad("bind must be true, false or an IP address")),
    };
    if !url_mode {
        if bind != Bind::Anyone || p.urls.is_some() || p.lifetime_s.is_some() {
            return Err(bad("bind, urls and lifetime_s are for mode \"url\""));
        }
        return Ok(PlayRequest { ticket: p.ticket, url: None });
    }
    if p.lifetime_s.is_some_and(|l| !(1..=crate::playback::MAX_LIFETIME_SECS).contains(&l)) {
        return Err(bad(format!("lifetime_s must be 1..={}", crate::playback::MAX_LIFETIME_SECS)));
    }
    let urls = p.urls.unwrap_or(2);
    if !(1..=8).contains(&urls) {
        return Err(bad("urls must be 1..=8"));
    }
    Ok(PlayRequest { ticket: p.ticket, url: Some(UrlMode { bind, urls, lifetime_s: p.lifetime_s }) })
}

/// `POST /v1/revoke`: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// A ticket's text (its whole order).
    Ticket(String),
    /// A ticket's serial (its whole order) or a certificate's (that session).
    Serial([u8; 16]),
    /// An order, every ticket and certificate of it.
    Order(u64),
    /// A customer: every order, and no new ones.
    Customer(u64),
}

/// The body of `POST /v1/revoke` (exactly one field), and what a revocation answer says it took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// A ticket's text (in an answer: its serial, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// A serial, 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// An order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u64>,
    /// A customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<u64>,
}

/// Reads a revocation: exactly one of `"ticket"`, `"serial"` (32 hex digits), `"order"`, `"customer"`.
pub fn revoke(body: &[u8]) -> Result<Revoke, ProtoError> {
    let r: RevokeBody = json(body)?;
    Ok(match (r.ticket, r.serial, r.order, r.customer) {
        (Some(t), None, None, None) => Revoke::Ticket(t),
        (None, Some(s), None, None) => {
            let mut out = [0u8; 16];
            hex::decode_to_slice(s.trim(), &mut out).map_err(|_| bad("serial must be 32 hex digits"))?;
            Revoke::Serial(out)
        }
        (None, None, Some(o), None) => Revoke::Order(o),
        (None, None, None, Some(c)) => Revoke::Customer(c),
        _ => return Err(bad("give exactly one of \"ticket\", \"serial\", \"order\" or \"customer\"")),
    })
}

/// The roles a server joins the cluster as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRole {
    /// A node or an edge: its member credential names which.
    Member(crate::member::MemberRole),
    /// A viewer's peer service, with a certificate.
    Peer,
}

/// `POST /v1/cluster/join` and `/heartbeat`.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// The member's name.
    pub name: String,
    /// What it joins as.
    pub role: JoinRole,
    /// Its HTTPS base URL (`https://`).
    pub https: String,
    /// Its HTTP/3 address.
    pub h3: std::net::SocketAddr,
    /// Requests in hand against its most (0..=1).
    pub load: f64,
    /// Edges: the X25519 public key playback tokens are sealed to (64 hex digits).
    pub playback_key: Option<String>,
    /// "ok", or why it is unhealthy (1..=32 of a-z and '_').
    pub health: Option<String>,
    /// Peers, after their first join: the push token it gave them (32 hex
    /// digits), which proves the record is theirs (a certificate alone does
    /// not: clients send theirs to every source, peers included).
    pub push_token: Option<String>,
}

/// The body of `POST /v1/cluster/join` and `/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    /// The member's name.
    pub name: String,
    /// "node", "edge" or "peer".
    pub role: String,
    /// Its HTTPS base URL.
    pub https: String,
    /// Its HTTP/3 address (host:port).
    pub h3: String,
    /// Requests in hand against its most (0..=1).
    #[serde(default)]
    pub load: f64,
    /// Edges: the X25519 public key playback tokens are sealed to (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback_key: Option<String>,
    /// "ok", or why it is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Peers, after their first join: their push token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_token: Option<String>,
}

/// Reads a join or heartbeat.
pub fn join(body: &[u8]) -> Result<Join, ProtoError> {
    let j: JoinBody = json(body)?;
    if !valid_name(&j.name) {
        return Err(bad("name: 1..=64 of a-z, A-Z, 0-9, '-', '_'"));
    }
    let role = match j.role.as_str() {
        "peer" => JoinRole::Peer,
        r => JoinRole::Member(crate::member::MemberRole::parse(r).ok_or_else(|| bad("role must be node, edge or peer"))?),
    };
    let h3 = j.h3.parse().ok().filter(|_| j.https.starts_with("https://") && j.https.len() <= 2048);
    let h3 = h3.ok_or_else(|| bad("https must be an https:// URL and h3 a host:port address"))?;
    if !j.load.is_finite() || !(0.0..=1.0).contains(&j.load) {
        return Err(bad("load must be in 0..=1"));
    }
    if let Some(k) = &j.playback_key
        && (role != JoinRole::Member(crate::member::MemberRole::Edge) || k.len() != 64 || !k.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(bad("playback_key: 64 hex digits, from edges only"));
    }
    if j.health.as_ref().is_some_and(|h| h.is_empty() || h.len() > 32 || !h.bytes().all(|c| c.is_ascii_lowercase() || c == b'_')) {
        return Err(bad("health: 1..=32 of a-z and '_'"));
    }
    if let Some(t) = &j.push_token
        && (role != JoinRole::Peer || t.len() != 32 || !t.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(bad("push_token: 32 hex digits, from peers only"));
    }
    Ok(Join {
        name: j.name,
        role,
        https: j.https,
        h3,
        load: j.load,
        playback_key: j.playback_key,
        health: j.health,
        push_token: j.push_token,
    })
}

impl JoinRole {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member(r) => r.as_str(),
            Self::Peer => "peer",
        }
    }
}

/// `POST /v1/titles`: an uploaded title to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The title.
    pub title: TitleId,
    /// The title key (the caller is the storefront; it is kept at the origin only).
    pub key: [u8; 32],
    /// The manifest as ingested (its fields are kept, its signature replaced).
    pub manifest: Vec<u8>,
}

/// The body of `POST /v1/titles`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// The title.
    pub title: String,
    /// Its key, 64 hex digits.
    pub key: String,
    /// The manifest as ingested, base64url.
    pub manifest: String,
}

/// The body of `POST /v1/staging/missing` at a node: blobs to ask about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MissingBody {
    /// Addresses (hex).
    pub blobs: Vec<String>,
}

/// Reads a publish: `{"title", "key": 64 hex digits, "manifest": base64url}`.
pub fn publish(body: &[u8]) -> Result<Publish, ProtoError> {
    let p: PublishBody = json(body)?;
    let title = TitleId::new(&p.title).map_err(|e| bad(e.to_string()))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(p.key.trim(), &mut key).map_err(|_| bad("key must be 64 hex digits"))?;
    let manifest = URL_SAFE_NO_PAD.decode(p.manifest.trim()).map_err(|_| bad("manifest must be base64url"))?;
    Ok(Publish { title, key, manifest })
}

/// An `Idempotency-Key` header's value: 1..=64 of A-Z, a-z, 0-9, '-', '_', '.', ':'.
pub fn idempotency_key(value: &[u8]) -> Result<&str, ProtoError> {
    let ok = (1..=64).contains(&value.len()) && value.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c));
    if !ok {
        return Err(bad("Idempotency-Key: 1..=64 of A-Z, a-z, 0-9, '-', '_', '.', ':'"));
    }
    std::str::from_utf8(value).map_err(|_| bad("Idempotency-Key is not text"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn good_bodies_read_to_their_values() {
        assert_eq!(new_customer(br#"{"name": "  Ada "}"#).unwrap(), "Ada");
        let o = new_order(br#"{"customer": 3, "title": "film", "kind": "rent", "plays": 2, "hours": 48}"#).unwrap();
        assert_eq!((o.customer, o.title.as_str(), o.terms), (3, "film", OrderTerms::Rent { plays: 2, seconds: 48 * 3600 }));
        let same = new_order(br#"{"kind": "rent", "customer": 3, "hours": 48, "plays": 2, "title": "film"}"#).unwrap();
        assert_eq!(o.fingerprint, same.fingerprint, "the fingerprint is what was asked, not how it was written");
        assert_eq!(new_order(br#"{"customer": 1, "title": "film", "kind": "buy"}"#).unwrap().terms, OrderTerms::Buy);
        let p = play(br#"{"ticket": "t", "mode": "url", "bind": "::1", "urls": 3, "lifetime_s": 60}"#).unwrap();
        assert_eq!(p.url, Some(UrlMode { bind: Bind::Address("::1".parse().unwrap()), urls: 3, lifetime_s: Some(60) }));
        assert_eq!(play(br#"{"ticket": "t"}"#).unwrap().url, None);
        assert_eq!(revoke(br#"{"order": 9}"#).unwrap(), Revoke::Order(9));
        assert_eq!(revoke(format!(r#"{{"serial": "{}"}}"#, "ab".repeat(16)).as_bytes()).unwrap(), Revoke::Serial([0xab; 16]));
        let j = join(br#"{"name": "edge-1", "role": "edge", "https": "https://e:1", "h3": "127.0.0.1:1", "load": 0.5}"#).unwrap();
        assert_eq!((j.role, j.h3.port()), (JoinRole::Member(crate::member::MemberRole::Edge), 1));
        let p = publish(format!(r#"{{"title": "film", "key": "{}", "manifest": "AAEC"}}"#, "00".repeat(32)).as_bytes()).unwrap();
        assert_eq!(p.manifest, [0, 1, 2]);
        assert_eq!(idempotency_key(b"k-1:2").unwrap(), "k-1:2");
    }

    #[test]
    fn hostile_bodies_are_refused_with_a_reason() {
        type Refused = fn(&[u8]) -> bool;
        let cases: &[(&str, Refused)] = &[
            (r#"{"name": ""}"#, |b| new_customer(b).is_err()),
            (r#"{"name": "a", "admin": true}"#, |b| new_customer(b).is_err()),
            ("{\"name\": \"\u{0}\"", |b| new_customer(b).is_err()),
            (r#"{"customer": 1, "title": "film", "kind": "buy", "plays": 2}"#, |b| new_order(b).is_err()),
            (r#"{"customer": 1, "title": "film", "kind": "rent", "plays": 0, "hours": 1}"#, |b| new_order(b).is_err()),
            (r#"{"customer": 1, "title": "film", "kind": "rent", "plays": 1, "hours": 1, "seconds": 1}"#, |b| new_order(b).is_err()),
            (r#"{"customer": -1, "title": "film", "kind": "buy"}"#, |b| new_order(b).is_err()),
            (r#"{"customer": 1, "title": "../etc", "kind": "buy"}"#, |b| new_order(b).is_err()),
            (r#"{"customer": 1, "title": "film", "kind": "steal"}"#, |b| new_order(b).is_err()),
            (r#"{"ticket": "t", "bind": true}"#, |b| play(b).is_err()),
            (r#"{"ticket": "t", "mode": "url", "urls": 9}"#, |b| play(b).is_err()),
            (r#"{"ticket": "t", "mode": "url", "lifetime_s": 0}"#, |b| play(b).is_err()),
            (r#"{"ticket": "t", "mode": "url", "bind": "not-an-ip"}"#, |b| play(b).is_err()),
            (r#"{"ticket": "t", "mode": "url", "bind": 7}"#, |b| play(b).is_err()),
            (r#"{"ticket": "t", "mode": "tv"}"#, |b| play(b).is_err()),
            (r#"{"order": 1, "customer": 2}"#, |b| revoke(b).is_err()),
            (r#"{}"#, |b| revoke(b).is_err()),
            (r#"{"serial": "zz"}"#, |b| revoke(b).is_err()),
            (r#"{"serial": "éééééééééééééééé"}"#, |b| revoke(b).is_err()),
            (r#"{"name": "a.b", "role": "edge", "https": "https://x", "h3": "127.0.0.1:1"}"#, |b| join(b).is_err()),
            (r#"{"name": "a", "role": "admin", "https": "https://x", "h3": "127.0.0.1:1"}"#, |b| join(b).is_err()),
            (r#"{"name": "a", "role": "edge", "https": "http://x", "h3": "127.0.0.1:1"}"#, |b| join(b).is_err()),
            (r#"{"name": "a", "role": "edge", "https": "https://x", "h3": "127.0.0.1:1", "load": 2}"#, |b| join(b).is_err()),
            (r#"{"name": "a", "role": "node", "https": "https://x", "h3": "127.0.0.1:1", "playback_key": "00"}"#, |b| join(b).is_err()),
            (r#"{"name": "a", "role": "edge", "https": "https://x", "h3": "127.0.0.1:1", "health": "BAD"}"#, |b| join(b).is_err()),
            (r#"{"title": "film", "key": "00", "manifest": ""}"#, |b| publish(b).is_err()),
            (r#"{"title": "film", "key": "0000000000000000000000000000000000000000000000000000000000000000", "manifest": "!!"}"#, |b| {
                publish(b).is_err()
            }),
            ("", |b| play(b).is_err()),
            ("[]", |b| join(b).is_err()),
            ("null", |b| new_order(b).is_err()),
        ];
        for (body, refused) in cases {
            assert!(refused(body.as_bytes()), "accepted: {body}");
        }
        for k in [&b""[..], b"a b", &[b'k'; 65], b"\xff"] {
            assert!(idempotency_key(k).is_err());
        }
        let e = new_order(br#"{"customer": 1, "title": "film", "kind": "steal"}"#).unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
    }
}
