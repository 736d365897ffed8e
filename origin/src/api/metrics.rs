//! The origin's request counters for `/metrics` (by route, protocol and
//! status; validations by result; response bytes by route; pushed bytes).

use super::*;

/// Request counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    validations: Mutex<BTreeMap<String, u64>>,
    /// Response body bytes by route (what leaves the origin when asked).
    response_bytes: Mutex<BTreeMap<&'static str, u64>>,
    /// Blob bytes pushed to nodes (staging) and peers (pre-casts).
    pub(crate) pushed_bytes: std::sync::atomic::AtomicU64,
    /// Times the title list (`GET /v1/titles`) was built from the catalog.
    pub(crate) title_list_builds: std::sync::atomic::AtomicU64,
}

impl Metrics {
    pub(super) fn request(&self, route: &str, proto: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), proto, status)).or_default() += 1;
        }
    }

    pub(super) fn response_bytes(&self, route: &'static str, n: u64) {
        if let Ok(mut m) = self.response_bytes.lock() {
            *m.entry(route).or_default() += n;
        }
    }

    pub(super) fn validation(&self, result: &str) {
        if let Ok(mut m) = self.validations.lock() {
            *m.entry(result.to_string()).or_default() += 1;
        }
    }

    pub(super) fn render(&self, inner: &Inner) -> String {
        let mut out = String::new();
        out.push_str("# HELP origin_requests_total HTTP requests by route, protocol and status.\n# TYPE origin_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, proto, status), n) in m.iter() {
                let _ = writeln!(out, "origin_requests_total{{route=\"{route}\",protocol=\"{proto}\",status=\"{status}\"}} {n}");
            }
        }
        out.push_str("# HELP origin_validations_total Ticket validations by result.\n# TYPE origin_validations_total counter\n");
        if let Ok(m) = self.validations.lock() {
            for (result, n) in m.iter() {
                let _ = writeln!(out, "origin_validations_total{{result=\"{result}\"}} {n}");
            }
        }
        out.push_str("# HELP origin_response_bytes_total Response body bytes by route.\n# TYPE origin_response_bytes_total counter\n");
        if let Ok(m) = self.response_bytes.lock() {
            for (route, n) in m.iter() {
                let _ = writeln!(out, "origin_response_bytes_total{{route=\"{route}\"}} {n}");
            }
        }
        out.push_str("# HELP origin_pushed_bytes_total Blob bytes pushed to nodes (staging) and peers (pre-casts).\n# TYPE origin_pushed_bytes_total counter\n");
        let _ = writeln!(out, "origin_pushed_bytes_total {}", self.pushed_bytes.load(std::sync::atomic::Ordering::Relaxed));
        out.push_str("# HELP origin_title_list_builds_total Times the public title list was built from the catalog (at most once per 2 s, and after a publish here).\n# TYPE origin_title_list_builds_total counter\n");
        let _ = writeln!(out, "origin_title_list_builds_total {}", self.title_list_builds.load(std::sync::atomic::Ordering::Relaxed));
        if let Ok(s) = inner.store.stats() {
            out.push_str("# TYPE origin_store_blobs gauge\n");
            let _ = writeln!(out, "origin_store_blobs {}", s.blobs);
            out.push_str("# TYPE origin_store_bytes gauge\n");
            let _ = writeln!(out, "origin_store_bytes {}", s.bytes);
        }
        inner.server.render("origin", &mut out);
        out
    }
}
