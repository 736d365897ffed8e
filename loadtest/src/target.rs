//! A running cluster to load, described by the `cluster.json` that
//! `tranzcast demo --serve` writes (parsing is pure; see the README for the
//! fields).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::LoadtestError;

/// Longest accepted `cluster.json`.
pub const MAX_CLUSTER_FILE: usize = 1 << 20;

/// A server in `cluster.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerEntry {
    /// Its name in the cluster.
    #[serde(default)]
    pub name: String,
    /// Its HTTPS base URL.
    pub https: String,
    /// Its HTTP/3 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h3: Option<String>,
}

/// `cluster.json`, as `tranzcast demo --serve` writes it (see the README).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterDescription {
    /// The CA certificate file (PEM).
    pub ca: String,
    /// The storefront token.
    pub storefront_token: String,
    /// The origin.
    pub origin: ServerEntry,
    /// Nodes.
    #[serde(default)]
    pub nodes: Vec<ServerEntry>,
    /// Edges.
    #[serde(default)]
    pub edges: Vec<ServerEntry>,
    /// Peers.
    #[serde(default)]
    pub peers: Vec<ServerEntry>,
    /// The demo's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Titles to watch, most popular first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub titles: Vec<String>,
    /// The demo's input file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// A 2-play rental of the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// A validation certificate for the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Playback URLs for standard players, one per edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback_urls: Option<Vec<tranzcast_proto::answers::PlaybackUrl>>,
    /// The first of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback_url: Option<String>,
    /// The title's first segment's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

/// What the load test needs of a running cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFile {
    /// The CA certificate file (PEM) that signs every server's certificate.
    pub ca: String,
    /// The storefront token (to create customers and orders).
    pub storefront_token: String,
    /// The origin's base URL.
    pub origin: String,
    /// Servers to scrape: name -> (role, base URL).
    pub servers: BTreeMap<String, (String, String)>,
    /// Titles to watch, most popular first.
    pub titles: Vec<String>,
}

fn loopback_https(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else { return false };
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, p)| if p.parse::<u16>().is_ok() { h } else { "" });
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

impl ClusterFile {
    /// Parses a `cluster.json`. Only loopback HTTPS URLs are accepted: the
    /// load test never sends traffic anywhere else.
    pub fn parse(bytes: &[u8]) -> Result<Self, LoadtestError> {
        let bad = |m: String| LoadtestError::ClusterFile(m);
        if bytes.len() > MAX_CLUSTER_FILE {
            return Err(bad(format!("over {MAX_CLUSTER_FILE} bytes")));
        }
        let raw: ClusterDescription = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let mut servers = BTreeMap::new();
        let check = |url: &str| {
            if loopback_https(url) {
                Ok(url.trim_end_matches('/').to_string())
            } else {
                Err(bad(format!("{url}: not an https URL on loopback")))
            }
        };
        let origin = check(&raw.origin.https)?;
        servers.insert("origin".to_string(), ("origin".to_string(), origin.clone()));
        for (role, list) in [("node", &raw.nodes), ("edge", &raw.edges), ("peer", &raw.peers)] {
            for s in list {
                if s.name.is_empty() || s.name.len() > 64 || s.name == "origin" || servers.contains_key(&s.name) {
                    return Err(bad(format!("server name {:?} is empty, too long or repeated", s.name)));
                }
                servers.insert(s.name.clone(), (role.to_string(), check(&s.https)?));
            }
        }
        let mut titles = raw.titles;
        if let Some(t) = raw.title
            && !titles.contains(&t)
        {
            titles.insert(0, t);
        }
        if titles.is_empty() || titles.len() > 1000 {
            return Err(bad("1 to 1000 titles (\"title\" or \"titles\")".into()));
        }
        for t in &titles {
            tranzcast_proto::TitleId::new(t).map_err(|e| bad(format!("title {t:?}: {e}")))?;
        }
        if raw.storefront_token.is_empty() || raw.ca.is_empty() {
            return Err(bad("storefront_token and ca are needed".into()));
        }
        Ok(Self { ca: raw.ca, storefront_token: raw.storefront_token, origin, servers, titles })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DEMO: &str = r#"{"ca":"/tmp/x/ca.pem","storefront_token":"s3","origin":{"https":"https://localhost:4433","h3":"127.0.0.1:4433"},
        "nodes":[{"name":"node-1","https":"https://localhost:5000"}],"edges":[{"name":"edge-1","https":"https://127.0.0.1:5001/"}],
        "peers":[],"title":"demo","ticket":"ignored"}"#;

    #[test]
    fn reads_what_demo_serve_writes() {
        let c = ClusterFile::parse(DEMO.as_bytes()).unwrap();
        assert_eq!(c.origin, "https://localhost:4433");
        assert_eq!(c.titles, vec!["demo"]);
        assert_eq!(c.servers.len(), 3);
        assert_eq!(c.servers["edge-1"], ("edge".to_string(), "https://127.0.0.1:5001".to_string()));
    }

    #[test]
    fn refuses_other_hosts_and_hostile_files() {
        for (from, to, needle) in [
            ("https://localhost:4433", "https://example.com:4433", "not an https URL on loopback"),
            ("https://localhost:4433", "http://localhost:4433", "loopback"),
            ("https://localhost:4433", "https://localhost.evil.com", "loopback"),
            ("https://localhost:4433", "https://localhost:99999", "loopback"),
            ("https://localhost:4433", "https://127.0.0.1@10.0.0.1:1", "loopback"),
            ("\"node-1\"", "\"edge-1\"", "repeated"),
            ("\"title\":\"demo\"", "\"title\":\"../x\"", "title"),
            ("\"title\":\"demo\"", "\"titlex\":\"demo\"", "1 to 1000 titles"),
            ("\"s3\"", "\"\"", "storefront_token"),
        ] {
            let text = DEMO.replacen(from, to, 1);
            let e = ClusterFile::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(needle), "{to}: {e}");
        }
        for junk in [&b""[..], b"{", b"[]", b"null", &[0xff; 10], &vec![b' '; MAX_CLUSTER_FILE + 1]] {
            assert!(ClusterFile::parse(junk).is_err());
        }
    }
}
