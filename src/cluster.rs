//! A whole cluster on loopback for `tranzcast demo`: origin, 2 nodes, 3
//! edges and 2 peers, real servers on 127.0.0.1 (ports chosen by the OS),
//! real TLS from one local CA, in this process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tranzcast_config::{EdgeConfig, Layers, OriginConfig};
use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_origin::Origin;

/// The running cluster.
pub struct Cluster {
    pub origin: Origin,
    pub nodes: Vec<EdgeServer>,
    pub edges: Vec<EdgeServer>,
    pub peers: Vec<EdgeServer>,
    pub http: reqwest::Client,
    pub storefront_token: String,
    pub ca_pem: String,
    pub ca_path: PathBuf,
}

fn secret() -> String {
    let mut b = [0u8; 24];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

fn edge_config(role: &str, name: &str, data: &Path, origin: &str, cluster_token: &str, extra: &[String]) -> Result<EdgeConfig> {
    let mut sets = vec![
        format!("role={role}"),
        format!("name={name}"),
        format!("data_dir={}", data.display()),
        format!("origin={origin}"),
        "listen.https=127.0.0.1:0".to_string(),
        "heartbeat=500ms".to_string(),
    ];
    if role != "peer" {
        sets.push(format!("cluster_token={cluster_token}"));
    }
    sets.extend(extra.iter().cloned());
    Ok(Layers::new("edge").overrides(&sets)?.build()?)
}

impl Cluster {
    /// Starts everything over the origin store in `dir/origin` (already holding
    /// `title`), and waits until both nodes hold the complete set and the
    /// peers have their pre-cast segments.
    pub async fn start(dir: &Path, title: &str) -> Result<Self> {
        let storefront_token = secret();
        let cluster_token = secret();
        // Pre-cast now: a window around the current minute.
        let now_min = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() % 86_400 / 60) as u16;
        let (a, b) = ((now_min + 1439) % 1440, (now_min + 120) % 1440);
        let window = format!("{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60);
        let oc: OriginConfig = Layers::new("origin")
            .overrides(&[
                format!("data_dir={}", dir.join("origin").display()),
                format!("storefront_token={storefront_token}"),
                format!("cluster_token={cluster_token}"),
                "listen.https=127.0.0.1:0".into(),
                "staging_interval=300ms".into(),
                format!("precast.window={window}"),
                "precast.segments=2".into(),
            ])?
            .build()?;
        let origin = Origin::start(oc).await.context("starting the origin")?;
        let origin_url = format!("https://localhost:{}", origin.https_addr().port());
        let ca_dir = origin.ca_dir();
        let ca_pem = origin.ca_pem().to_string();
        let http = tranzcast_net::client::https(ca_pem.as_bytes())?;
        let tls = EdgeTls::from_config(&edge_config("node", "x", dir, &origin_url, &cluster_token, &[])?, &ca_dir)?;
        let mut nodes = Vec::new();
        for i in 1..=2 {
            let c = edge_config("node", &format!("node-{i}"), &dir.join(format!("node-{i}")), &origin_url, &cluster_token, &[])?;
            nodes.push(EdgeServer::start(c, tls.clone()).await.with_context(|| format!("starting node-{i}"))?);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !(1..=2).all(|i| origin.staging_status().get(&format!("node-{i}")).and_then(|t| t.get(title)).is_some_and(|p| p.complete)) {
            if Instant::now() > deadline {
                bail!("staging did not complete: {:?}", origin.staging_status());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut edges = Vec::new();
        for i in 1..=3 {
            // No parents configured: each edge learns the nodes from the origin.
            let c = edge_config("edge", &format!("edge-{i}"), &dir.join(format!("edge-{i}")), &origin_url, &cluster_token, &[])?;
            edges.push(EdgeServer::start(c, tls.clone()).await.with_context(|| format!("starting edge-{i}"))?);
        }
        let mut cluster = Self { origin, nodes, edges, peers: Vec::new(), http, storefront_token, ca_pem, ca_path: ca_dir.join("ca.pem") };
        // Peers are viewers' clients that bought the title; they join with their certificate.
        for i in 1..=2 {
            let ticket = cluster.order(title, "buy", None).await?;
            let v: serde_json::Value = cluster
                .http
                .post(format!("{origin_url}/v1/play"))
                .json(&serde_json::json!({"ticket": ticket}))
                .send()
                .await?
                .json()
                .await?;
            let cert = v["certificate"].as_str().context("no certificate for a peer")?;
            let c = edge_config(
                "peer",
                &format!("peer-{i}"),
                &dir.join(format!("peer-{i}")),
                &origin_url,
                "",
                &[format!("certificate={cert}")],
            )?;
            cluster.peers.push(EdgeServer::start(c, tls.clone()).await.with_context(|| format!("starting peer-{i}"))?);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(1..=2)
            .all(|i| cluster.origin.precast_status().get(&format!("peer-{i}")).and_then(|t| t.get(title)).is_some_and(|p| p.complete))
        {
            if Instant::now() > deadline {
                tracing::warn!("pre-cast to the peers did not complete; playing without it");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(cluster)
    }

    pub fn origin_url(&self) -> String {
        format!("https://localhost:{}", self.origin.https_addr().port())
    }

    /// A customer orders `title` (`"buy"`, or `"rent"` with plays); returns the ticket.
    pub async fn order(&self, title: &str, kind: &str, plays: Option<u32>) -> Result<String> {
        let o = self.origin_url();
        let c: serde_json::Value = self
            .http
            .post(format!("{o}/v1/customers"))
            .bearer_auth(&self.storefront_token)
            .json(&serde_json::json!({"name": "demo viewer"}))
            .send()
            .await?
            .json()
            .await?;
        let mut body = serde_json::json!({"customer": c["customer"], "title": title, "kind": kind});
        if let Some(p) = plays {
            body["plays"] = p.into();
            body["hours"] = 24.into();
        }
        let v: serde_json::Value =
            self.http.post(format!("{o}/v1/orders")).bearer_auth(&self.storefront_token).json(&body).send().await?.json().await?;
        Ok(v["ticket"].as_str().with_context(|| format!("order refused: {v}"))?.to_string())
    }

    /// The `cluster.json` description (see the README).
    pub fn describe(&self) -> serde_json::Value {
        let server = |s: &EdgeServer| serde_json::json!({"name": s.name(), "https": format!("https://localhost:{}", s.https_addr().port()), "h3": s.https_addr().to_string()});
        serde_json::json!({
            "ca": self.ca_path.display().to_string(),
            "storefront_token": self.storefront_token,
            "origin": {"https": self.origin_url(), "h3": self.origin.https_addr().to_string()},
            "nodes": self.nodes.iter().map(server).collect::<Vec<_>>(),
            "edges": self.edges.iter().map(server).collect::<Vec<_>>(),
            "peers": self.peers.iter().map(server).collect::<Vec<_>>(),
        })
    }

    pub async fn shutdown(self) {
        for s in self.peers.into_iter().chain(self.edges).chain(self.nodes) {
            s.shutdown().await;
        }
        self.origin.shutdown().await;
    }
}
