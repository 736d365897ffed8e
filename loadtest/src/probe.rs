//! What the servers say about themselves: their `/metrics`, scraped during
//! the run for hits per tier, origin offload and coalescing.

use std::collections::BTreeMap;

use serde::Serialize;

/// Sum of every series of metric `name` in Prometheus text (pure; a series
/// is `name value` or `name{labels} value`; anything malformed counts 0).
pub fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = match rest.as_bytes().first() {
                Some(b' ') => rest,
                Some(b'{') => &rest[rest.find('}')? + 1..],
                _ => return None,
            };
            rest.split_whitespace().next()?.parse::<f64>().ok().filter(|v| v.is_finite())
        })
        .sum()
}

/// One server's counters at one moment.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counters {
    /// Its role (origin, node, edge, peer).
    pub role: String,
    /// Response body bytes it sent (every request).
    pub bytes_out: f64,
    /// Blob bytes it pushed (the origin: staging and pre-casts).
    pub pushed: f64,
    /// Blob requests served from its own store.
    pub hits: f64,
    /// Blob requests it had to fetch upstream for.
    pub misses: f64,
    /// Fetches it made upstream.
    pub upstream_fetches: f64,
    /// Requests that joined a fetch already under way.
    pub coalesced: f64,
}

impl Counters {
    /// From a server's `/metrics` text.
    pub fn parse(role: &str, text: &str) -> Self {
        if role == "origin" {
            return Self {
                role: role.into(),
                bytes_out: sum(text, "origin_response_bytes_total"),
                pushed: sum(text, "origin_pushed_bytes_total"),
                ..Self::default()
            };
        }
        Self {
            role: role.into(),
            bytes_out: sum(text, "edge_http_response_bytes_total"),
            pushed: 0.0,
            hits: sum(text, "edge_hits_total"),
            misses: sum(text, "edge_misses_total"),
            upstream_fetches: sum(text, "edge_upstream_fetches_total"),
            coalesced: sum(text, "edge_coalesced_waiters_total"),
        }
    }

    /// What changed from `before` to `self` (counters only grow; a server
    /// killed in between keeps its last scrape).
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            role: self.role.clone(),
            bytes_out: self.bytes_out - before.bytes_out,
            pushed: self.pushed - before.pushed,
            hits: self.hits - before.hits,
            misses: self.misses - before.misses,
            upstream_fetches: self.upstream_fetches - before.upstream_fetches,
            coalesced: self.coalesced - before.coalesced,
        }
    }
}

/// Scrapes every server in `servers` (name -> (role, base URL)); a server
/// that does not answer keeps its entry in `last` (it was killed, say).
#[cfg(feature = "run")]
pub async fn scrape(http: &reqwest::Client, servers: &BTreeMap<String, (String, String)>, last: &mut BTreeMap<String, Counters>) {
    let got = futures_util::future::join_all(servers.iter().map(|(name, (role, url))| async move {
        let text = async {
            let r = tokio::time::timeout(std::time::Duration::from_secs(2), http.get(format!("{url}/metrics")).send()).await.ok()?.ok()?;
            r.text().await.ok()
        }
        .await;
        (name.clone(), text.map(|t| Counters::parse(role, &t)))
    }))
    .await;
    for (name, c) in got {
        if let Some(c) = c {
            last.insert(name, c);
        }
    }
}

/// Totals by role of what changed between two scrapes.
pub fn by_role(before: &BTreeMap<String, Counters>, after: &BTreeMap<String, Counters>) -> BTreeMap<String, Counters> {
    let mut out: BTreeMap<String, Counters> = BTreeMap::new();
    for (name, a) in after {
        let d = before.get(name).map_or_else(|| a.clone(), |b| a.since(b));
        let t = out.entry(a.role.clone()).or_insert_with(|| Counters { role: a.role.clone(), ..Counters::default() });
        t.bytes_out += d.bytes_out;
        t.pushed += d.pushed;
        t.hits += d.hits;
        t.misses += d.misses;
        t.upstream_fetches += d.upstream_fetches;
        t.coalesced += d.coalesced;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_series_and_ignores_lookalikes_and_garbage() {
        let text = "# TYPE edge_hits_total counter\nedge_hits_total 5\nedge_hits_total_x 100\nedge_hits_totalx 7\n\
                    edge_http_response_bytes_total{protocol=\"h2\",status=\"200\"} 1000\n\
                    edge_http_response_bytes_total{protocol=\"h3\",status=\"206\"} 24\n\
                    edge_misses_total NaN\nedge_misses_total{a=\"}\"\nedge_upstream_fetches_total  3  1700000000\n";
        assert_eq!(sum(text, "edge_hits_total"), 5.0);
        assert_eq!(sum(text, "edge_http_response_bytes_total"), 1024.0);
        assert_eq!(sum(text, "edge_misses_total"), 0.0);
        assert_eq!(sum(text, "edge_upstream_fetches_total"), 3.0, "a timestamp after the value is not summed");
        assert_eq!(sum("", "x"), 0.0);
        assert_eq!(sum("x{", "x"), 0.0);
    }

    #[test]
    fn differences_add_up_by_role() {
        let e = |hits: f64| Counters { role: "edge".into(), hits, bytes_out: hits * 10.0, ..Counters::default() };
        let before = BTreeMap::from([("edge-1".to_string(), e(1.0)), ("edge-2".to_string(), e(2.0))]);
        let after = BTreeMap::from([("edge-1".to_string(), e(5.0)), ("edge-2".to_string(), e(3.0)), ("edge-3".to_string(), e(4.0))]);
        let r = by_role(&before, &after);
        assert_eq!(r["edge"].hits, 4.0 + 1.0 + 4.0, "a server first seen counts from zero");
        assert_eq!(r["edge"].bytes_out, 90.0);
        let o = Counters::parse(
            "origin",
            "origin_response_bytes_total{route=\"blob\"} 10\norigin_response_bytes_total{route=\"play\"} 5\norigin_pushed_bytes_total 7\n",
        );
        assert_eq!((o.bytes_out, o.pushed), (15.0, 7.0));
    }
}
