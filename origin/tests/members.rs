//! Cluster membership over real HTTPS on 127.0.0.1: each node and edge joins
//! with its own credential, bound to its name and role; nobody takes another
//! member's record or push token; only edges receive playback keys; a
//! retired member is refused; a peer is bound to its certificate's serial.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use tranzcast_ingest::{IngestOptions, ingest};
use tranzcast_net::client::https;
use tranzcast_origin::Origin;
use tranzcast_proto::TitleId;
use tranzcast_proto::member::{MemberRole, issue};
use tranzcast_store::{BlobStore, StoreOptions};

const STOREFRONT: &str = "test-storefront-token-0123456789";
const CLUSTER: &str = "test-cluster-token-0123456789";
const MEMBER_KEY: &str = "test-member-key-0123456789-0123456789";

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn credential(name: &str, role: MemberRole) -> String {
    issue(MEMBER_KEY.as_bytes(), name, role, now_ms()).unwrap()
}

struct Cluster {
    _dir: tempfile::TempDir,
    origin: Origin,
    base: String,
    http: reqwest::Client,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(&["allow_local_peer_certificates=true"]).await
    }

    async fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("origin");
        {
            let store = BlobStore::open(&data, StoreOptions::default()).unwrap();
            let input = dir.path().join("film.bin");
            std::fs::write(&input, vec![5u8; 200_000]).unwrap();
            let mut o = IngestOptions::new(TitleId::new("film").unwrap());
            o.segment_size = Some(64 << 10);
            ingest(&store, &input, &o).unwrap();
        }
        let mut sets = vec!["precast.enabled=false".to_string()];
        sets.extend(extra.iter().map(|s| s.to_string()));
        let cfg = tranzcast_testkit::origin_config_with(&data, 0, &sets);
        let origin = Origin::start(cfg).await.unwrap();
        let http = https(origin.ca_pem().as_bytes()).unwrap();
        let base = format!("https://localhost:{}", origin.https_addr().port());
        Self { _dir: dir, origin, base, http }
    }

    /// Joins as `name`/`role` with `auth` (a full Authorization value); returns status and body.
    async fn join(&self, auth: &str, name: &str, role: &str, port: u16, extra: Value) -> (u16, Value) {
        let mut body = json!({"name": name, "role": role, "https": format!("https://localhost:{port}"), "h3": format!("127.0.0.1:{port}")});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let r =
            self.http.post(format!("{}/v1/cluster/heartbeat", self.base)).header("authorization", auth).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The public listing's entry for `name`.
    async fn listed(&self, name: &str) -> Option<Value> {
        let v: Value = self.http.get(format!("{}/v1/cluster", self.base)).send().await.unwrap().json().await.unwrap();
        v["members"].as_array().unwrap().iter().find(|m| m["name"] == name).cloned()
    }

    async fn storefront(&self, path: &str, body: Value) -> Value {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(STOREFRONT).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A certificate for `film` from a fresh bought ticket.
    async fn certificate(&self) -> String {
        let c = self.storefront("/v1/customers", json!({"name": "Ada"})).await;
        let o = self.storefront("/v1/orders", json!({"customer": c["customer"], "title": "film", "kind": "buy"})).await;
        let r = self.http.post(format!("{}/v1/play", self.base)).json(&json!({"ticket": o["ticket"]})).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        v["certificate"].as_str().unwrap().to_string()
    }
}

fn code(r: &(u16, Value)) -> &str {
    r.1["error"]["code"].as_str().unwrap_or("")
}

const KEY_A: &str = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_takes_another_members_name_role_or_keys() {
    let c = Cluster::start().await;
    let edge1 = format!("Bearer {}", credential("edge-1", MemberRole::Edge));
    let node1 = format!("Bearer {}", credential("node-1", MemberRole::Node));
    assert_eq!(c.join(&edge1, "edge-1", "edge", 1001, json!({"playback_key": KEY_A})).await.0, 200);
    assert_eq!(c.join(&node1, "node-1", "node", 2001, json!({})).await.0, 200);
    let before = c.listed("edge-1").await.unwrap();

    // The shared cluster token no longer joins anyone.
    let r = c.join(&format!("Bearer {CLUSTER}"), "edge-1", "edge", 6666, json!({})).await;
    assert_eq!((r.0, code(&r)), (403, "forbidden"), "{}", r.1);
    // Another member's credential cannot write edge-1's record.
    let r = c.join(&node1, "edge-1", "edge", 6666, json!({"playback_key": KEY_A})).await;
    assert_eq!((r.0, code(&r)), (403, "credential_mismatch"), "{}", r.1);
    // A node's credential cannot register it as an edge (no playback key for a node).
    let r = c.join(&node1, "node-1", "edge", 6666, json!({"playback_key": KEY_A})).await;
    assert_eq!((r.0, code(&r)), (403, "credential_mismatch"), "{}", r.1);
    let r = c.join(&node1, "node-1", "node", 2001, json!({"playback_key": KEY_A})).await;
    assert_eq!(r.0, 400, "a node cannot register a playback key: {}", r.1);
    // A credential minted elsewhere, or edited into another role, is refused.
    let forged = issue(b"not-the-member-key-0123456789-0123", "edge-2", MemberRole::Edge, now_ms()).unwrap();
    let r = c.join(&format!("Bearer {forged}"), "edge-2", "edge", 6666, json!({})).await;
    assert_eq!((r.0, code(&r)), (403, "forbidden"), "{}", r.1);
    let edited = node1.replace(".node.", ".edge.");
    let r = c.join(&edited, "node-1", "edge", 6666, json!({"playback_key": KEY_A})).await;
    assert_eq!((r.0, code(&r)), (403, "forbidden"), "{}", r.1);
    // A viewer's peer cannot take an operator's name.
    let cert = c.certificate().await;
    let r = c.join(&format!("Tranzcast {cert}"), "edge-1", "peer", 6666, json!({})).await;
    assert_eq!((r.0, code(&r)), (409, "name_taken"), "{}", r.1);
    assert_eq!(c.listed("edge-1").await.unwrap()["https"], before["https"], "edge-1's record is unchanged");
    assert_eq!(c.listed("edge-1").await.unwrap()["role"], "edge");
    assert_eq!(c.listed("node-1").await.unwrap()["role"], "node");

    // Playback keys are sealed to edges only: URL-mode plays name edge-1, never the node.
    let cust = c.storefront("/v1/customers", json!({"name": "Bo"})).await;
    let o = c.storefront("/v1/orders", json!({"customer": cust["customer"], "title": "film", "kind": "buy"})).await;
    let r = c.http.post(format!("{}/v1/play", c.base)).json(&json!({"ticket": o["ticket"], "mode": "url"})).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    let edges: Vec<&str> = v["urls"].as_array().unwrap().iter().map(|u| u["edge"].as_str().unwrap()).collect();
    assert_eq!(edges, ["edge-1"], "{v}");
    c.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_bound_to_their_certificate_and_retired_members_are_refused() {
    let c = Cluster::start().await;
    let (a, b) = (c.certificate().await, c.certificate().await);
    let r = c.join(&format!("Tranzcast {a}"), "peer-1", "peer", 3001, json!({})).await;
    assert_eq!(r.0, 200, "{}", r.1);
    let token = r.1["push_token"].as_str().unwrap().to_string();
    // Another viewer's certificate cannot take peer-1's record or its push token.
    let r = c.join(&format!("Tranzcast {b}"), "peer-1", "peer", 6666, json!({})).await;
    assert_eq!((r.0, code(&r)), (409, "name_taken"), "{}", r.1);
    assert!(!r.1.to_string().contains(&token));
    assert_eq!(c.listed("peer-1").await.unwrap()["https"], "https://localhost:3001");
    // Its certificate alone does not reach the record (clients send their
    // certificates to every source, peers included: a hostile peer holds
    // them): the heartbeat must carry the push token the first join gave.
    let r = c.join(&format!("Tranzcast {a}"), "peer-1", "peer", 6666, json!({})).await;
    assert_eq!((r.0, code(&r)), (403, "push_token_required"), "{}", r.1);
    assert!(!r.1.to_string().contains(&token));
    let r = c.join(&format!("Tranzcast {a}"), "peer-1", "peer", 6666, json!({"push_token": "00".repeat(16)})).await;
    assert_eq!((r.0, code(&r)), (403, "push_token_required"), "{}", r.1);
    assert_eq!(c.listed("peer-1").await.unwrap()["https"], "https://localhost:3001");
    let r = c.join(&format!("Tranzcast {a}"), "peer-1", "peer", 3001, json!({"push_token": token})).await;
    assert_eq!(r.1["push_token"], token.as_str());
    // Once its certificate is revoked, it cannot join, and the name is free again.
    let serial = {
        let cert = tranzcast_proto::ticket::SignedToken::from_text(&a).unwrap();
        match cert.verify(&c.origin.public_key()).unwrap() {
            tranzcast_proto::ticket::Token::Certificate(x) => hex::encode(x.serial),
            _ => unreachable!(),
        }
    };
    c.storefront("/v1/revoke", json!({"serial": serial})).await;
    let r = c.join(&format!("Tranzcast {a}"), "peer-1", "peer", 3001, json!({})).await;
    assert_eq!((r.0, code(&r)), (403, "revoked"), "{}", r.1);
    let r = c.join(&format!("Tranzcast {b}"), "peer-1", "peer", 4001, json!({})).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_ne!(r.1["push_token"], token.as_str(), "a new holder gets a new push token");

    // Retiring a member refuses its credential and removes its record; a new one joins.
    let old = format!("Bearer {}", credential("edge-9", MemberRole::Edge));
    assert_eq!(c.join(&old, "edge-9", "edge", 5001, json!({})).await.0, 200);
    let r = c.http.post(format!("{}/v1/cluster/members/edge-9/retire", c.base)).bearer_auth(CLUSTER).send().await.unwrap();
    assert_eq!(r.status(), 403, "only the operator retires members");
    c.storefront("/v1/cluster/members/edge-9/retire", json!({})).await;
    assert!(c.listed("edge-9").await.is_none());
    let r = c.join(&old, "edge-9", "edge", 5001, json!({})).await;
    assert_eq!((r.0, code(&r)), (403, "retired"), "{}", r.1);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let new = format!("Bearer {}", credential("edge-9", MemberRole::Edge));
    assert_eq!(c.join(&new, "edge-9", "edge", 5002, json!({})).await.0, 200);
    c.origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gets_a_certificate_for_its_own_address_and_never_a_ca_key() {
    use std::sync::Arc;
    use tranzcast_net::tls::{TlsIdentity, client_config};
    let c = Cluster::start().await;
    let ask = |auth: Option<String>| {
        let mut r = c.http.post(format!("{}/v1/cluster/peer-identity", c.base));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    assert_eq!(ask(None).await.unwrap().status(), 401, "only a viewer with a certificate gets one");
    assert_eq!(ask(Some(format!("Bearer {CLUSTER}"))).await.unwrap().status(), 401);
    let cert = c.certificate().await;
    let r = ask(Some(format!("Tranzcast {cert}"))).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["names"], json!(["127.0.0.1", "localhost"]), "the address it asked from, nothing else");
    let (chain, key) = (v["cert"].as_str().unwrap(), v["key"].as_str().unwrap());
    let ca_key = std::fs::read_to_string(c._dir.path().join("origin/tls/ca.key")).unwrap();
    assert!(!key.contains(ca_key.trim()) && !chain.contains("PRIVATE KEY"), "the CA's key left the origin");

    // It serves TLS that a client trusting the origin's CA accepts for the
    // peer's own address, and for no other name (not an edge's).
    let id = TlsIdentity::from_pem(chain.as_bytes(), key.as_bytes(), "cert", "key").unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(id.server_config(&[b"h2"]).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            let a = acceptor.clone();
            tokio::spawn(async move {
                let _ = a.accept(s).await;
            });
        }
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(c.origin.ca_pem().as_bytes(), &[b"h2"]).unwrap()));
    for (name, ok) in [("localhost", true), ("127.0.0.1", true), ("edge-1.example", false), ("127.0.0.2", false)] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let sn = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        assert_eq!(connector.connect(sn, tcp).await.is_ok(), ok, "{name}");
    }
    server.abort();

    // A revoked certificate gets none.
    let serial = match tranzcast_proto::ticket::SignedToken::from_text(&cert).unwrap().verify(&c.origin.public_key()).unwrap() {
        tranzcast_proto::ticket::Token::Certificate(x) => hex::encode(x.serial),
        _ => unreachable!(),
    };
    c.storefront("/v1/revoke", json!({"serial": serial})).await;
    assert_eq!(ask(Some(format!("Tranzcast {cert}"))).await.unwrap().status(), 403);
    c.origin.shutdown().await;

    // A public origin issues none to a local address (on a loopback cluster
    // every server is localhost): only with the test setting above.
    let public = Cluster::start_with(&[]).await;
    let cert = public.certificate().await;
    let r = public.http.post(format!("{}/v1/cluster/peer-identity", public.base)).header("authorization", format!("Tranzcast {cert}"));
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("local_address"));
    public.origin.shutdown().await;
}

/// Plays reuse their list of sources for a second (it is a hint, and reading
/// every member's record on every play cost more the larger the cluster),
/// but a member that joins, a peer whose certificate is revoked and a member
/// retired are named, or dropped, by the very next play; heartbeats that only
/// change a load do not read the list again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_play_names_a_new_member_and_drops_a_revoked_peer_and_a_retired_member() {
    let c = Cluster::start().await;
    let sources = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v["sources"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    let play = || async {
        let cust = c.storefront("/v1/customers", json!({"name": "Cy"})).await;
        let o = c.storefront("/v1/orders", json!({"customer": cust["customer"], "title": "film", "kind": "buy"})).await;
        let r = c.http.post(format!("{}/v1/play", c.base)).json(&json!({"ticket": o["ticket"]})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v
    };
    let started = std::time::Instant::now();
    let node = format!("Bearer {}", credential("node-1", MemberRole::Node));
    assert_eq!(c.join(&node, "node-1", "node", 2001, json!({})).await.0, 200);
    let first = play().await;
    assert_eq!(sources(&first), ["node-1"]);
    // A new edge: named by the next play, within the second the list is kept.
    let edge = format!("Bearer {}", credential("edge-1", MemberRole::Edge));
    assert_eq!(c.join(&edge, "edge-1", "edge", 1001, json!({})).await.0, 200);
    assert_eq!(sources(&play().await), ["edge-1", "node-1"]);
    // A peer joins with its certificate, then the certificate is revoked.
    let cert = first["certificate"].as_str().unwrap();
    let r = c.join(&format!("Tranzcast {cert}"), "peer-1", "peer", 3001, json!({})).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(sources(&play().await), ["edge-1", "node-1", "peer-1"]);
    let serial = match tranzcast_proto::ticket::SignedToken::from_text(cert).unwrap().verify(&c.origin.public_key()).unwrap() {
        tranzcast_proto::ticket::Token::Certificate(x) => hex::encode(x.serial),
        _ => unreachable!(),
    };
    c.storefront("/v1/revoke", json!({"serial": serial})).await;
    assert_eq!(sources(&play().await), ["edge-1", "node-1"], "a revoked peer was still named");
    let read = std::time::Instant::now();
    // A heartbeat that changes a load only: the list read just now is kept.
    let load =
        |v: &Value, name: &str| v["sources"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["load"].as_f64().unwrap();
    assert_eq!(c.join(&node, "node-1", "node", 2001, json!({"load": 0.5})).await.0, 200);
    let kept = play().await;
    if read.elapsed() < std::time::Duration::from_millis(900) {
        assert_eq!(load(&kept, "node-1"), 0.0, "the list was read again for a heartbeat: {kept}");
    }
    // Retired: gone from the next play (and the list read again: the new load shows).
    c.storefront("/v1/cluster/members/edge-1/retire", json!({})).await;
    let after = play().await;
    assert_eq!(sources(&after), ["node-1"], "a retired member was still named");
    assert_eq!(load(&after, "node-1"), 0.5);
    eprintln!("steps took {:?} (the list is kept for a second)", started.elapsed());
    c.origin.shutdown().await;
}
