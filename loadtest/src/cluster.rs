//! A whole cluster on loopback, in this process: origin, nodes, edges and
//! peers (viewers' homes), real servers on 127.0.0.1 (ports chosen by the
//! OS), real TLS from one local CA, real RocksDB stores. `tranzcast demo`
//! and the load test both start it; the load test also kills servers in it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tranzcast_config::{EdgeConfig, Layers, OriginConfig};
use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_origin::Origin;

use crate::LoadtestError;

/// Servers of each kind.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Origin processes (more than one share a PostgreSQL).
    pub origins: u32,
    /// Neuro nodes.
    pub nodes: u32,
    /// Edges.
    pub edges: u32,
    /// Peers: viewers' own peer services (the demo's two viewers, the load
    /// test's homes), each joining with a certificate for `titles[0]`.
    pub peers: u32,
    /// Whether the origin pre-casts to the peers (its window is set around now).
    pub precast: bool,
    /// Segments pre-cast per title.
    pub precast_segments: u32,
    /// Titles pre-cast (the most popular).
    pub precast_titles: u32,
}

/// The running cluster.
#[derive(Debug)]
pub struct LocalCluster {
    /// The origin (`origin-1`: it ingested the titles).
    pub origin: Origin,
    /// More origins on the same shared state (`origin-2`, ...); a killed one is gone from here.
    pub more_origins: BTreeMap<String, Origin>,
    /// Every origin's URL, `origin-1` first (killed ones included: clients find out).
    origin_urls: Vec<String>,
    /// Nodes by name (`node-1`, ...); a killed one is gone from here.
    pub nodes: BTreeMap<String, EdgeServer>,
    /// Edges by name (`edge-1`, ...).
    pub edges: BTreeMap<String, EdgeServer>,
    /// Peers by name (`peer-1`, ...), shared with the sessions that use them.
    pub peers: BTreeMap<String, Arc<EdgeServer>>,
    /// Servers hung by [`LocalCluster::hang`] (killed at shutdown).
    hung: Vec<EdgeServer>,
    /// A client trusting the cluster's CA.
    pub http: reqwest::Client,
    /// The storefront's bearer token.
    pub storefront_token: String,
    /// The cluster token (reads and writes on every node and edge).
    pub cluster_token: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate's file.
    pub ca_path: PathBuf,
}

fn secret() -> String {
    let mut b = [0u8; 24];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

fn cluster_err(what: impl std::fmt::Display) -> impl FnOnce(String) -> LoadtestError {
    move |e| LoadtestError::Cluster(format!("{what}: {e}"))
}

fn edge_config(
    role: &str,
    name: &str,
    data: &Path,
    origin: &str,
    (cluster_token, member_key): (&str, &str),
    extra: &[String],
) -> Result<EdgeConfig, LoadtestError> {
    let mut sets = vec![
        format!("role={role}"),
        format!("name={name}"),
        format!("data_dir={}", data.display()),
        format!("origin={origin}"),
        "listen.https=127.0.0.1:0".to_string(),
        "heartbeat=500ms".to_string(),
        // The whole crowd connects from 127.0.0.1: one address, thousands of clients.
        "limits.max_connections_per_ip=16384".to_string(),
        "limits.connection_rate_per_ip=100000".to_string(),
    ];
    if let Some(role) = tranzcast_proto::member::MemberRole::parse(role) {
        sets.push(format!("cluster_token={cluster_token}"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let credential = tranzcast_proto::member::issue(member_key.as_bytes(), name, role, now)
            .map_err(|e| cluster_err(format!("credential of {name}"))(e.to_string()))?;
        sets.push(format!("member_credential={credential}"));
    }
    sets.extend(extra.iter().cloned());
    Layers::new("edge").overrides(&sets).and_then(|l| l.build()).map_err(|e| cluster_err(format!("config of {name}"))(e.to_string()))
}

/// A JSON answer of the cluster's origin.
/// A small typed answer of the origin's (bounded).
async fn answer<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<T, LoadtestError> {
    let r = req.send().await.map_err(|e| LoadtestError::Network(e.to_string()))?;
    let b = r.bytes().await.map_err(|e| LoadtestError::Network(e.to_string()))?;
    tranzcast_proto::json::parse_bounded("answer", 1 << 20, &b).map_err(|e| LoadtestError::Network(e.to_string()))
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), LoadtestError> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(LoadtestError::Cluster(format!("{what} did not happen within {limit:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

impl LocalCluster {
    /// Starts everything over the origin store in `dir/origin` (already
    /// holding `titles`), and waits until every node holds every title.
    /// Peers are started but pre-casts are not waited for: see
    /// [`LocalCluster::wait_precast`] (pre-casts follow orders).
    pub async fn start(dir: &Path, titles: &[String], shape: &Shape) -> Result<Self, LoadtestError> {
        Self::start_shared(dir, titles, shape, None).await
    }

    /// As [`LocalCluster::start`], with `shape.origins` origins sharing the
    /// PostgreSQL at `state_url` (an empty database) when it is given.
    pub async fn start_shared(dir: &Path, titles: &[String], shape: &Shape, state_url: Option<&str>) -> Result<Self, LoadtestError> {
        let storefront_token = secret();
        let cluster_token = secret();
        let member_key = secret();
        let keys = (cluster_token.as_str(), member_key.as_str());
        let mut sets = vec![
            format!("data_dir={}", dir.join("origin").display()),
            format!("storefront_token={storefront_token}"),
            format!("cluster_token={cluster_token}"),
            format!("member_key={member_key}"),
            "listen.https=127.0.0.1:0".into(),
            // Every viewer's peer runs on 127.0.0.1 here (a test setting).
            "allow_local_peer_certificates=true".into(),
            "staging_interval=300ms".into(),
            // Every simulated viewer plays from 127.0.0.1: a per-address
            // limit would count the whole crowd as one client.
            "rate.play_per_s=1000000".into(),
            "rate.play_burst=1000000".into(),
            "limits.max_connections_per_ip=16384".into(),
            "limits.connection_rate_per_ip=100000".into(),
        ];
        if shape.precast {
            // Pre-cast now: a window around the current minute.
            let now_min = (tranzcast_origin::now_secs() % 86_400 / 60) as u16;
            let (a, b) = ((now_min + 1439) % 1440, (now_min + 120) % 1440);
            sets.push(format!("precast.window={:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60));
            sets.push(format!("precast.segments={}", shape.precast_segments));
            sets.push(format!("precast.titles={}", shape.precast_titles.max(1)));
        } else {
            sets.push("precast.enabled=false".into());
        }
        if let Some(url) = state_url {
            let kek = dir.join("kek.hex");
            std::fs::write(&kek, secret() + &secret()[..16]).map_err(|e| cluster_err("kek")(e.to_string()))?;
            sets.extend(["state.backend=postgres".into(), format!("state.url={url}"), format!("keys.kek_file={}", kek.display())]);
        }
        let oc: OriginConfig =
            Layers::new("origin").overrides(&sets).and_then(|l| l.build()).map_err(|e| cluster_err("origin config")(e.to_string()))?;
        let origin = Origin::start(oc).await.map_err(|e| cluster_err("starting the origin")(e.to_string()))?;
        let ca_dir = origin.ca_dir();
        let mut more_origins = BTreeMap::new();
        for i in 2..=shape.origins.max(1) {
            // The others start empty with the first's CA: one cluster, one CA.
            let name = format!("origin-{i}");
            let d = dir.join(&name);
            drop(
                tranzcast_store::BlobStore::open(&d, tranzcast_store::StoreOptions { create: true, ..Default::default() })
                    .map_err(|e| cluster_err(&name)(e.to_string()))?,
            );
            copy_dir(&ca_dir, &d.join("tls")).map_err(cluster_err(&name))?;
            let mut s = sets.clone();
            s[0] = format!("data_dir={}", d.display());
            let oc: OriginConfig =
                Layers::new("origin").overrides(&s).and_then(|l| l.build()).map_err(|e| cluster_err(&name)(e.to_string()))?;
            more_origins.insert(name.clone(), Origin::start(oc).await.map_err(|e| cluster_err(&name)(e.to_string()))?);
        }
        let origin_urls: Vec<String> =
            std::iter::once(&origin).chain(more_origins.values()).map(|o| format!("https://localhost:{}", o.https_addr().port())).collect();
        let origin_url = origin_urls.join(",");
        let ca_pem = origin.ca_pem().to_string();
        let http = tranzcast_net::client::https(ca_pem.as_bytes()).map_err(|e| cluster_err("client")(e.to_string()))?;
        let tls = EdgeTls::from_config(&edge_config("node", "x", dir, &origin_url, keys, &[])?, &ca_dir)
            .map_err(|e| cluster_err("TLS")(e.to_string()))?;
        let mut nodes = BTreeMap::new();
        for i in 1..=shape.nodes {
            let name = format!("node-{i}");
            let c = edge_config("node", &name, &dir.join(&name), &rotated(&origin_url, i as usize), keys, &[])?;
            nodes.insert(name.clone(), EdgeServer::start(c, tls.clone()).await.map_err(|e| cluster_err(&name)(e.to_string()))?);
        }
        let staged = |origin: &Origin| {
            let s = origin.staging_status();
            nodes.keys().all(|n| titles.iter().all(|t| s.get(n).and_then(|m| m.get(t)).is_some_and(|p| p.complete)))
        };
        wait_until("staging every title to every node", Duration::from_secs(300), || staged(&origin)).await?;
        let mut edges = BTreeMap::new();
        for i in 1..=shape.edges {
            // No parents configured: each edge learns the nodes from the origin.
            let name = format!("edge-{i}");
            let c = edge_config("edge", &name, &dir.join(&name), &rotated(&origin_url, i as usize), keys, &[])?;
            edges.insert(name.clone(), EdgeServer::start(c, tls.clone()).await.map_err(|e| cluster_err(&name)(e.to_string()))?);
        }
        let first_origin = origin_urls[0].clone();
        let mut cluster = Self {
            origin,
            more_origins,
            origin_urls,
            nodes,
            edges,
            peers: BTreeMap::new(),
            hung: Vec::new(),
            http,
            storefront_token,
            cluster_token,
            ca_pem,
            ca_path: ca_dir.join("ca.pem"),
        };
        // Peers are viewers' clients that bought a title; they join with their certificate.
        for i in 1..=shape.peers {
            let name = format!("peer-{i}");
            let title = titles.first().ok_or_else(|| LoadtestError::Cluster("no titles".into()))?;
            let ticket = cluster.order(title, None).await?;
            let grant: tranzcast_proto::answers::PlayGrant =
                answer(cluster.http.post(format!("{first_origin}/v1/play")).json(&tranzcast_proto::api::PlayBody::client(ticket))).await?;
            let cert = grant.certificate;
            // A viewer's peer service gets its TLS identity from the origin (a
            // leaf for its own address), never from the CA itself.
            let auth = format!("Tranzcast {cert}");
            let id: tranzcast_proto::answers::PeerIdentity =
                answer(cluster.http.post(format!("{first_origin}/v1/cluster/peer-identity")).header("authorization", auth)).await?;
            let (pem, key) = (id.cert.as_str(), id.key.as_str());
            let ca = cluster.ca_path.clone();
            let peer_tls = EdgeTls::for_peer(pem, key, &ca).map_err(|e| cluster_err(&name)(e.to_string()))?;
            let c = edge_config(
                "peer",
                &name,
                &dir.join(&name),
                &origin_url,
                ("", ""),
                &[format!("certificate={cert}"), format!("ca={}", ca.display())],
            )?;
            let peer = EdgeServer::start(c, peer_tls).await.map_err(|e| cluster_err(&name)(e.to_string()))?;
            cluster.peers.insert(name, Arc::new(peer));
        }
        Ok(cluster)
    }

    /// Waits until every peer holds the pre-cast of each of `titles`.
    pub async fn wait_precast(&self, titles: &[String], limit: Duration) -> Result<(), LoadtestError> {
        wait_until("pre-casting to every peer", limit, || {
            let s = self.origin.precast_status();
            self.peers.keys().all(|p| titles.iter().all(|t| s.get(p).and_then(|m| m.get(t)).is_some_and(|x| x.complete)))
        })
        .await
    }

    /// The first origin's URL (the storefront's: orders and the cluster's own calls).
    pub fn origin_url(&self) -> String {
        self.origin_urls[0].clone()
    }

    /// Every origin's URL, `origin-1` first, separated by commas (what
    /// viewers, nodes and edges are given; one URL with one origin).
    pub fn origin_list(&self) -> String {
        self.origin_urls.join(",")
    }

    /// Every running server's base URL by name (origin, nodes, edges, peers).
    pub fn servers(&self) -> BTreeMap<String, (String, String)> {
        let url = |s: &EdgeServer| format!("https://localhost:{}", s.https_addr().port());
        let mut m = BTreeMap::new();
        m.insert("origin".to_string(), ("origin".to_string(), self.origin_url()));
        for (name, o) in &self.more_origins {
            m.insert(name.clone(), ("origin".to_string(), format!("https://localhost:{}", o.https_addr().port())));
        }
        for (n, s) in &self.nodes {
            m.insert(n.clone(), ("node".to_string(), url(s)));
        }
        for (n, s) in &self.edges {
            m.insert(n.clone(), ("edge".to_string(), url(s)));
        }
        for (n, s) in &self.peers {
            m.insert(n.clone(), ("peer".to_string(), url(s)));
        }
        m
    }

    /// A customer orders `title`: bought (`plays` None) or rented for `plays`
    /// plays over a day. Returns the ticket.
    pub async fn order(&self, title: &str, plays: Option<u32>) -> Result<String, LoadtestError> {
        order(&self.http, &self.origin_url(), &self.storefront_token, title, plays).await
    }

    /// Hangs a node or an edge (see [`EdgeServer::hang`]).
    pub fn hang(&mut self, name: &str) -> Result<(), LoadtestError> {
        let s = self
            .edges
            .remove(name)
            .or_else(|| self.nodes.remove(name))
            .ok_or_else(|| LoadtestError::Cluster(format!("no server {name} to hang")))?;
        s.hang();
        self.hung.push(s);
        Ok(())
    }

    /// Kills a node, an edge or an origin after the first at once (see
    /// [`EdgeServer::kill`], [`Origin::kill`]).
    pub async fn kill(&mut self, name: &str) -> Result<(), LoadtestError> {
        if let Some(o) = self.more_origins.remove(name) {
            o.kill().await;
            return Ok(());
        }
        let s = self
            .edges
            .remove(name)
            .or_else(|| self.nodes.remove(name))
            .ok_or_else(|| LoadtestError::Cluster(format!("no server {name} to kill")))?;
        s.kill().await;
        Ok(())
    }

    /// The `cluster.json` description (see the README).
    pub fn describe(&self) -> crate::target::ClusterDescription {
        use crate::target::ServerEntry;
        let server = |s: &EdgeServer| ServerEntry {
            name: s.name().to_string(),
            https: format!("https://localhost:{}", s.https_addr().port()),
            h3: Some(s.https_addr().to_string()),
        };
        crate::target::ClusterDescription {
            ca: self.ca_path.display().to_string(),
            storefront_token: self.storefront_token.clone(),
            origin: ServerEntry { name: "origin".into(), https: self.origin_url(), h3: Some(self.origin.https_addr().to_string()) },
            nodes: self.nodes.values().map(server).collect(),
            edges: self.edges.values().map(server).collect(),
            peers: self.peers.values().map(|p| server(p)).collect(),
            ..Default::default()
        }
    }

    /// Stops everything (gracefully). Peers still shared with a session are
    /// left to stop when it drops them.
    pub async fn shutdown(self) {
        for s in self.hung {
            s.kill().await;
        }
        for (_, p) in self.peers {
            if let Ok(p) = Arc::try_unwrap(p) {
                p.shutdown().await;
            }
        }
        for (_, s) in self.edges.into_iter().chain(self.nodes) {
            s.shutdown().await;
        }
        for (_, o) in self.more_origins {
            o.shutdown().await;
        }
        self.origin.shutdown().await;
    }
}

/// A comma-separated list of URLs rotated by `by` (each server and viewer
/// starts at a different origin, as DNS or a load balancer would spread them).
pub fn rotated(urls: &str, by: usize) -> String {
    let list: Vec<&str> = urls.split(',').collect();
    let n = list.len();
    (0..n).map(|i| list[(by + i) % n]).collect::<Vec<_>>().join(",")
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for f in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let f = f.map_err(|e| e.to_string())?;
        std::fs::copy(f.path(), to.join(f.file_name())).map_err(|e| format!("{}: {e}", f.path().display()))?;
    }
    Ok(())
}

/// A new customer orders `title` at the storefront: bought (`plays` None)
/// or rented for `plays` plays over a day. Returns the ticket.
pub async fn order(
    http: &reqwest::Client,
    origin: &str,
    storefront_token: &str,
    title: &str,
    plays: Option<u32>,
) -> Result<String, LoadtestError> {
    use tranzcast_proto::answers::{CustomerCreated, ErrorBody, OrderPlaced, parse_small};
    let post = |path: &str, body: serde_json::Value| {
        let req = http.post(format!("{origin}{path}")).bearer_auth(storefront_token).json(&body);
        async move {
            let net = |e: reqwest::Error| LoadtestError::Network(format!("{origin}: {e}"));
            let r = req.send().await.map_err(net)?;
            let status = r.status();
            let body = r.bytes().await.map_err(net)?;
            if !status.is_success() {
                let (code, reason) = ErrorBody::read(&body);
                return Err(LoadtestError::Network(format!("{origin}: {status}: {reason} ({code})")));
            }
            Ok(body)
        }
    };
    let bad = |e: tranzcast_proto::ProtoError| LoadtestError::Network(format!("{origin}: {e}"));
    let customer = serde_json::to_value(tranzcast_proto::api::CustomerBody { name: "viewer".into() }).unwrap_or_default();
    let c: CustomerCreated = parse_small("customer", &post("/v1/customers", customer).await?).map_err(bad)?;
    let order = match plays {
        Some(p) => tranzcast_proto::api::OrderBody::rent(c.customer, title, p, 24),
        None => tranzcast_proto::api::OrderBody::buy(c.customer, title),
    };
    let o: OrderPlaced = parse_small("order", &post("/v1/orders", serde_json::to_value(order).unwrap_or_default()).await?).map_err(bad)?;
    Ok(o.ticket)
}
