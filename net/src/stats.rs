//! What a server counts, kept in atomics so the request path takes no lock:
//! requests, bytes and latency by protocol and status; connections, requests
//! and tasks in hand now (gauges); refusals by reason. Rendered as
//! Prometheus text under the role's prefix (`edge_`, `origin_`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;

use crate::Protocol;

/// Why a server refused a connection or a request, or closed a connection.
/// One counter each in `/metrics` (`<prefix>_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `limits.max_connections`: the new connection is closed (QUIC: refused).
    ConnectionsTotal,
    /// The client's address holds `limits.max_connections_per_ip`.
    ConnectionsPerAddress,
    /// The client's address opens connections faster than `limits.connection_rate_per_ip`.
    ConnectionRate,
    /// The client's address is serving `limits.abuse_penalty`.
    Penalized,
    /// No TLS or QUIC handshake within `limits.header_read_timeout`, or a failed one.
    Handshake,
    /// No complete request head within `limits.header_read_timeout`: the connection is closed.
    HeaderTimeout,
    /// A request head over `limits.max_header_bytes` (431).
    HeadersTooLarge,
    /// More than `limits.max_headers` header fields (431).
    TooManyHeaders,
    /// A body over the route's cap (413).
    BodyTooLarge,
    /// A body slower than `limits.body_min_rate` (408).
    BodyTimeout,
    /// Bodies in memory at `limits.max_body_memory` (503).
    BodyMemory,
    /// `limits.max_concurrent_requests` in hand (503 with Retry-After).
    Overloaded,
    /// No response head within `limits.request_timeout` (504).
    RequestTimeout,
    /// A connection whose address cancelled more requests before their
    /// answer than `limits.max_cancelled_requests` allows (closed).
    CancelFlood,
    /// A connection with requests in hand and no answer byte sent for
    /// `limits.idle_timeout` (a client that stopped reading; closed).
    Stalled,
    /// Missing credentials (401).
    Unauthorized,
    /// Credentials that do not open this (403).
    Forbidden,
    /// An address over its rate (429 with Retry-After).
    RateLimited,
    /// Upstream fetches at `limits.max_flights` (503 with Retry-After).
    UpstreamBusy,
    /// The server cannot decide on credentials yet (an edge that has not
    /// read the origin's revocation list; 503 with Retry-After).
    NotReady,
    /// A request the protocol layer rejected (malformed, a stream error).
    Malformed,
}

impl Refusal {
    const ALL: [Refusal; 21] = [
        Refusal::ConnectionsTotal,
        Refusal::ConnectionsPerAddress,
        Refusal::ConnectionRate,
        Refusal::Penalized,
        Refusal::Handshake,
        Refusal::HeaderTimeout,
        Refusal::HeadersTooLarge,
        Refusal::TooManyHeaders,
        Refusal::BodyTooLarge,
        Refusal::BodyTimeout,
        Refusal::BodyMemory,
        Refusal::Overloaded,
        Refusal::RequestTimeout,
        Refusal::CancelFlood,
        Refusal::Stalled,
        Refusal::Unauthorized,
        Refusal::Forbidden,
        Refusal::RateLimited,
        Refusal::UpstreamBusy,
        Refusal::NotReady,
        Refusal::Malformed,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ConnectionsTotal => "connections_total",
            Refusal::ConnectionsPerAddress => "connections_per_address",
            Refusal::ConnectionRate => "connection_rate",
            Refusal::Penalized => "penalized",
            Refusal::Handshake => "handshake",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::TooManyHeaders => "too_many_headers",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyMemory => "body_memory",
            Refusal::Overloaded => "overloaded",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::CancelFlood => "cancel_flood",
            Refusal::Stalled => "stalled",
            Refusal::Unauthorized => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::RateLimited => "rate_limited",
            Refusal::UpstreamBusy => "upstream_busy",
            Refusal::NotReady => "not_ready",
            Refusal::Malformed => "malformed",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const PROTOCOLS: [Protocol; 4] = [Protocol::H1, Protocol::H2, Protocol::H3, Protocol::Plain];

fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::H1 => 0,
        Protocol::H2 => 1,
        Protocol::H3 => 2,
        Protocol::Plain => 3,
    }
}

/// A lock-free histogram (Prometheus cumulative buckets are computed when rendered).
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|b| s <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// A server's counters and gauges. Shared (`Arc`) between the listeners,
/// which write it, and the application, which renders it in `/metrics` and
/// reads its load from it.
#[derive(Debug)]
pub struct ServerStats {
    /// [protocol][status - 100]
    requests: Vec<AtomicU64>,
    bytes: Vec<AtomicU64>,
    head: [Histogram; 4],
    whole: [Histogram; 4],
    refused: [AtomicU64; Refusal::ALL.len()],
    /// Open connections by protocol (h1 and h2 are known after the TLS handshake; before, h1).
    pub(crate) connections: [AtomicI64; 4],
    pub(crate) accepted: AtomicU64,
    pub(crate) closed_idle: AtomicU64,
    pub(crate) penalties: AtomicU64,
    /// Addresses whose new connections the kernel drops now (the listener's socket filter).
    pub(crate) filtered_addresses: AtomicU64,
    pub(crate) in_flight: AtomicI64,
    pub(crate) exempt_in_flight: AtomicI64,
    pub(crate) tasks: AtomicI64,
    /// HTTP/2 connections' stream executors alive (server/h2_local.rs).
    pub(crate) h2_executors: AtomicI64,
    /// Requests whose handler or answer panicked (contained to the request).
    pub(crate) panics: AtomicU64,
    pub(crate) body_bytes_held: AtomicI64,
    bytes_out: AtomicU64,
    /// HTTP/3 response body bytes handed to quinn as they were (no copy),
    /// and copied on the way (`h3_transport`).
    pub(crate) h3_body_zero_copy: AtomicU64,
    pub(crate) h3_body_copied: AtomicU64,
    /// HTTP/3 endpoints running, and the connections each has taken.
    h3_endpoints: AtomicU64,
    h3_taken: [AtomicU64; tranzcast_config::MAX_H3_ENDPOINTS as usize],
    /// Short-header QUIC packets naming a connection ID no endpoint issued (dropped unanswered).
    pub(crate) h3_foreign_ids: std::sync::Arc<AtomicU64>,
    /// HTTP/3 send windows reserved now, bytes (server/send_windows.rs).
    pub(crate) h3_send_reserved: std::sync::Arc<AtomicU64>,
    /// Times an HTTP/3 send window grew less than the budget had free,
    /// held to its address's share (server/send_windows.rs).
    pub(crate) h3_send_capped: std::sync::Arc<AtomicU64>,
    /// QUIC Initials from addresses not yet proven answered with a
    /// stateless Retry instead of a handshake (server/quic.rs): not a
    /// refusal, the client comes back proven.
    pub(crate) quic_retries: AtomicU64,
    /// The runtime the server was bound on (its `runtime_tasks`).
    main_runtime: std::sync::OnceLock<tokio::runtime::Handle>,
    pub(crate) tasks_idle: tokio::sync::Notify,
}

impl Default for ServerStats {
    fn default() -> Self {
        let table = || (0..4 * 500).map(|_| AtomicU64::new(0)).collect();
        Self {
            requests: table(),
            bytes: table(),
            head: Default::default(),
            whole: Default::default(),
            refused: Default::default(),
            connections: Default::default(),
            accepted: AtomicU64::new(0),
            closed_idle: AtomicU64::new(0),
            penalties: AtomicU64::new(0),
            filtered_addresses: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            exempt_in_flight: AtomicI64::new(0),
            tasks: AtomicI64::new(0),
            h2_executors: AtomicI64::new(0),
            panics: AtomicU64::new(0),
            body_bytes_held: AtomicI64::new(0),
            bytes_out: AtomicU64::new(0),
            h3_body_zero_copy: AtomicU64::new(0),
            h3_body_copied: AtomicU64::new(0),
            h3_endpoints: AtomicU64::new(0),
            h3_taken: std::array::from_fn(|_| AtomicU64::new(0)),
            h3_foreign_ids: Default::default(),
            h3_send_reserved: Default::default(),
            h3_send_capped: Default::default(),
            quic_retries: AtomicU64::new(0),
            main_runtime: std::sync::OnceLock::new(),
            tasks_idle: tokio::sync::Notify::new(),
        }
    }
}

fn slot(p: Protocol, status: StatusCode) -> usize {
    proto_index(p) * 500 + (status.as_u16().clamp(100, 599) - 100) as usize
}

impl ServerStats {
    /// Counts a refusal.
    pub fn refuse(&self, why: Refusal) {
        self.refused[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals of one kind so far.
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why.index()].load(Ordering::Relaxed)
    }

    /// Requests in hand now (arrived, response body not finished), health and metrics included.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed) + self.exempt_in_flight.load(Ordering::Relaxed)
    }

    /// QUIC Initials answered with a Retry so far.
    pub fn quic_retries(&self) -> u64 {
        self.quic_retries.load(Ordering::Relaxed)
    }

    /// HTTP/3 send windows reserved now, bytes (against `limits.h3_send_memory`).
    pub fn h3_send_window_bytes(&self) -> u64 {
        self.h3_send_reserved.load(Ordering::Relaxed)
    }

    /// Times an HTTP/3 send window was held to its address's share.
    pub fn h3_send_window_capped(&self) -> u64 {
        self.h3_send_capped.load(Ordering::Relaxed)
    }

    /// Addresses whose new connections the kernel drops now (serving a penalty).
    pub fn filtered_addresses(&self) -> u64 {
        self.filtered_addresses.load(Ordering::Relaxed)
    }

    /// Connection and request tasks alive now.
    pub fn tasks(&self) -> i64 {
        self.tasks.load(Ordering::Relaxed)
    }

    /// Requests whose handler or answer panicked: each was answered 500
    /// or reset alone, its connection and the other requests going on.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Counts and logs a panic contained to one request.
    pub(crate) fn panicked(&self, protocol: Protocol, what: &str, payload: &(dyn std::any::Any + Send)) {
        let n = self.panics.fetch_add(1, Ordering::Relaxed);
        // Logged for the first few, then one in a thousand: a client that
        // found a panic must not fill the log. The message is cut short (it
        // may hold request bytes).
        if n < 10 || n.is_multiple_of(1000) {
            let message =
                payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("");
            let message: String = message.chars().take(200).collect();
            tracing::error!(?protocol, what, message, panics = n + 1, "a request panicked; contained to it");
        }
    }

    /// HTTP/2 connections' stream executors alive now (one per HTTP/2
    /// connection, freed with it and the streams it held).
    pub fn h2_executors(&self) -> i64 {
        self.h2_executors.load(Ordering::Relaxed)
    }

    /// Open client connections now, all protocols.
    pub fn connections(&self) -> i64 {
        self.connections.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Request body bytes held in memory now.
    pub fn body_bytes(&self) -> i64 {
        self.body_bytes_held.load(Ordering::Relaxed)
    }

    /// Response body bytes sent so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// HTTP/3 response body bytes handed to quinn without a copy, and copied.
    pub fn h3_body_bytes(&self) -> (u64, u64) {
        (self.h3_body_zero_copy.load(Ordering::Relaxed), self.h3_body_copied.load(Ordering::Relaxed))
    }

    /// HTTP/3 connections each endpoint has taken so far, in endpoint order.
    pub fn h3_connections_by_endpoint(&self) -> Vec<u64> {
        let n = self.h3_endpoints.load(Ordering::Relaxed) as usize;
        self.h3_taken.iter().take(n).map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// QUIC packets dropped for naming a connection ID no endpoint of this server issued.
    pub fn h3_unknown_id_packets(&self) -> u64 {
        self.h3_foreign_ids.load(Ordering::Relaxed)
    }

    pub(crate) fn main_runtime(&self, h: tokio::runtime::Handle) {
        let _ = self.main_runtime.set(h);
    }

    pub(crate) fn h3_endpoints(&self, n: usize) {
        self.h3_endpoints.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn h3_taken_on(&self, endpoint: u8) {
        if let Some(c) = self.h3_taken.get(usize::from(endpoint)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn observe_head(&self, p: Protocol, d: Duration) {
        self.head[proto_index(p)].observe(d);
    }

    pub(crate) fn sent(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self, p: Protocol, status: StatusCode, bytes: u64, whole: Duration) {
        let i = slot(p, status);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        self.bytes[i].fetch_add(bytes, Ordering::Relaxed);
        self.whole[proto_index(p)].observe(whole);
    }

    /// Appends the Prometheus text of these counters, every name starting with `prefix` (e.g. `edge`).
    pub fn render(&self, prefix: &str, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {prefix}_http_requests_total Requests answered, by protocol and status.\n# TYPE {prefix}_http_requests_total counter"
        );
        let mut bytes = format!(
            "# HELP {prefix}_http_response_bytes_total Body bytes sent, by protocol and status.\n# TYPE {prefix}_http_response_bytes_total counter\n"
        );
        for p in PROTOCOLS {
            for status in 100..600u16 {
                let Ok(s) = StatusCode::from_u16(status) else { continue };
                let i = slot(p, s);
                let n = self.requests[i].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "{prefix}_http_requests_total{{protocol=\"{}\",status=\"{status}\"}} {n}", p.label());
                    let b = self.bytes[i].load(Ordering::Relaxed);
                    let _ = writeln!(bytes, "{prefix}_http_response_bytes_total{{protocol=\"{}\",status=\"{status}\"}} {b}", p.label());
                }
            }
        }
        out.push_str(&bytes);
        let _ = writeln!(
            out,
            "# HELP {prefix}_http_response_head_seconds Time to the response head.\n# TYPE {prefix}_http_response_head_seconds histogram"
        );
        for p in PROTOCOLS {
            self.head[proto_index(p)].render(out, &format!("{prefix}_http_response_head_seconds"), &format!("protocol=\"{}\"", p.label()));
        }
        let _ = writeln!(
            out,
            "# HELP {prefix}_http_response_seconds Time to the end of the response body.\n# TYPE {prefix}_http_response_seconds histogram"
        );
        for p in PROTOCOLS {
            self.whole[proto_index(p)].render(out, &format!("{prefix}_http_response_seconds"), &format!("protocol=\"{}\"", p.label()));
        }
        let _ = writeln!(
            out,
            "# HELP {prefix}_refused_total Connections and requests refused or cut, by reason.\n# TYPE {prefix}_refused_total counter"
        );
        for r in Refusal::ALL {
            let _ = writeln!(out, "{prefix}_refused_total{{reason=\"{}\"}} {}", r.label(), self.refused(r));
        }
        let _ = writeln!(out, "# HELP {prefix}_connections Client connections open now.\n# TYPE {prefix}_connections gauge");
        for p in PROTOCOLS {
            let _ = writeln!(
                out,
                "{prefix}_connections{{protocol=\"{}\"}} {}",
                p.label(),
                self.connections[proto_index(p)].load(Ordering::Relaxed)
            );
        }
        let gauges = [
            ("connections_accepted_total", "counter", "Client connections accepted.", self.accepted.load(Ordering::Relaxed) as i64),
            (
                "connections_closed_idle_total",
                "counter",
                "Connections closed after idle_timeout with nothing in hand.",
                self.closed_idle.load(Ordering::Relaxed) as i64,
            ),
            (
                "abuse_penalties_total",
                "counter",
                "Addresses put in the penalty box: a cancel flood, or too many connections without a request.",
                self.penalties.load(Ordering::Relaxed) as i64,
            ),
            (
                "penalty_filtered_addresses",
                "gauge",
                "Addresses serving a penalty whose new connections the kernel drops (a socket filter on the listener).",
                self.filtered_addresses.load(Ordering::Relaxed) as i64,
            ),
            (
                "requests_in_flight",
                "gauge",
                "Requests in hand now: arrived, response body not finished (refusals made before an address's share was taken leave at once).",
                self.in_flight(),
            ),
            ("tasks", "gauge", "Connection and request tasks alive now.", self.tasks()),
            (
                "handler_panics_total",
                "counter",
                "Requests whose handler or answer panicked: answered 500 or reset alone, the connection going on.",
                self.panics() as i64,
            ),
            (
                "h2_executors",
                "gauge",
                "HTTP/2 connections' stream executors alive now: above the HTTP/2 connections open, streams are held past their connection.",
                self.h2_executors(),
            ),
            ("request_body_bytes", "gauge", "Request body bytes held in memory now.", self.body_bytes_held.load(Ordering::Relaxed)),
            (
                "quic_retries_total",
                "counter",
                "QUIC Initials from addresses not yet proven answered with a stateless Retry (past 1,000 a second per endpoint, 100 at once, 256 in handshake, or the server busy).",
                self.quic_retries() as i64,
            ),
            (
                "h3_send_window_bytes",
                "gauge",
                "HTTP/3 send windows reserved now (answer bytes quinn may hold unacknowledged), against limits.h3_send_memory.",
                self.h3_send_window_bytes() as i64,
            ),
            (
                "h3_send_window_capped_total",
                "counter",
                "Times an HTTP/3 send window grew less than limits.h3_send_memory had free, held to its client address's share (a sixteenth).",
                self.h3_send_window_capped() as i64,
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(out, "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} {kind}\n{prefix}_{name} {v}");
        }
        let (zero_copy, copied) = self.h3_body_bytes();
        let _ = writeln!(
            out,
            "# HELP {prefix}_h3_body_bytes_total HTTP/3 response body bytes handed to QUIC as they were, or copied on the way.\n# TYPE {prefix}_h3_body_bytes_total counter\n{prefix}_h3_body_bytes_total{{path=\"zero_copy\"}} {zero_copy}\n{prefix}_h3_body_bytes_total{{path=\"copied\"}} {copied}"
        );
        let _ = writeln!(
            out,
            "# HELP {prefix}_h3_endpoint_connections_total HTTP/3 connections taken, by QUIC endpoint (one per core, each on a thread of its own).\n# TYPE {prefix}_h3_endpoint_connections_total counter"
        );
        for (i, n) in self.h3_connections_by_endpoint().iter().enumerate() {
            let _ = writeln!(out, "{prefix}_h3_endpoint_connections_total{{endpoint=\"{i}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP {prefix}_h3_unknown_id_packets_total QUIC packets naming a connection ID no endpoint of this server issued, dropped unanswered (junk, or a client of this server before a restart).\n# TYPE {prefix}_h3_unknown_id_packets_total counter\n{prefix}_h3_unknown_id_packets_total {}",
            self.h3_foreign_ids.load(Ordering::Relaxed)
        );
        if let Some(h) = self.main_runtime.get().cloned().or_else(|| tokio::runtime::Handle::try_current().ok()) {
            let _ = writeln!(
                out,
                "# HELP {prefix}_runtime_tasks Tokio tasks alive on the main runtime (each HTTP/3 endpoint runs a runtime of its own: see tasks).\n# TYPE {prefix}_runtime_tasks gauge\n{prefix}_runtime_tasks {}",
                h.metrics().num_alive_tasks()
            );
        }
    }
}
