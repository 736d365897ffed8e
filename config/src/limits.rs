//! What one server takes from its clients (`[limits]`): every bound on
//! connections, time, sizes and work in hand, with its defaults and checks.

use serde::Deserialize;

use crate::error::fail;
use crate::{ByteSize, Duration};

/// What one server (origin, node, edge, peer) takes from its clients, on every
/// listener and protocol (HTTP/1.1 and HTTP/2 over TLS, HTTP/3, plain HTTP).
/// The defaults are what a public edge can run with; `docs/operations.md`
/// says how to size them.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests in hand at once (from arrival to the end of the body); more are
    /// refused at once with 503 and Retry-After (load shedding). Health and
    /// metrics have a small budget of their own.
    pub max_concurrent_requests: u32,
    /// Time allowed to produce a response head (bodies then stream at the client's pace).
    pub request_timeout: Duration,
    /// Requests in hand at once from one client address (IPv6: one /64): its
    /// share of `max_concurrent_requests` (503 above it). Beyond 8, an
    /// address also holds at most an eighth of the places still free, so a
    /// few addresses cannot take them all (alone on an idle server: a ninth).
    pub max_requests_per_ip: u32,
    /// Open client connections (TCP and QUIC together); more are closed at
    /// once (QUIC: refused). Lowered at start to what the process may open.
    pub max_connections: u32,
    /// Open connections from one client address (IPv6: one /64).
    pub max_connections_per_ip: u32,
    /// New connections one client address may open per second (bursts of
    /// twice that); more are closed at once, before any TLS work. An address
    /// whose connection was closed for a cancel flood may open none for
    /// `abuse_penalty`.
    pub connection_rate_per_ip: u32,
    /// How long an address caught abusing is refused new connections: a
    /// cancel flood, or more than `abuse_strikes` connections that ended
    /// without a request.
    pub abuse_penalty: Duration,
    /// Connections from one address that may end without a request (a
    /// handshake that failed or stalled, no head within
    /// `header_read_timeout`) in a burst, refilled one a second, before the
    /// address serves `abuse_penalty`.
    pub abuse_strikes: u32,
    /// Time from a new connection to its first complete request head (TLS
    /// handshake included), and for every later head once its first byte arrived.
    pub header_read_timeout: Duration,
    /// A connection with nothing in hand for this long is closed (keep-alive;
    /// also the QUIC idle timeout).
    pub idle_timeout: Duration,
    /// Largest request head: HTTP/1.1 head, HTTP/2 header list, HTTP/3 field section (431 above it).
    pub max_header_bytes: ByteSize,
    /// Most header fields in one request (431 above it).
    pub max_headers: u32,
    /// Largest request body on every route but uploads (413 above it, answered
    /// before any body byte is read when the length is declared).
    pub max_body: ByteSize,
    /// Largest body of an authenticated upload (staging pushes, origin uploads and publishing).
    pub max_upload_body: ByteSize,
    /// Slowest a body may arrive, bytes per second: a body of N bytes must be
    /// in within `header_read_timeout` plus N over this rate (408 after).
    pub body_min_rate: ByteSize,
    /// Request bodies held in memory at once, server-wide (503 above it).
    pub max_body_memory: ByteSize,
    /// Answer bytes quinn may hold unacknowledged for all HTTP/3
    /// connections together: each connection's send window (8 MiB) comes
    /// out of it, and a connection opened when it is spent gets what is
    /// left, at least 64 KiB. One client address's connections hold at
    /// most a sixteenth of it (at least 8 MiB) beyond their 64 KiB each.
    pub h3_send_memory: ByteSize,
    /// Concurrent streams one HTTP/2 connection may open.
    pub h2_max_concurrent_streams: u32,
    /// Concurrent bidirectional streams one HTTP/3 connection may open.
    pub h3_max_concurrent_streams: u32,
    /// Requests one client address may cancel before their answer (HTTP/2
    /// RST_STREAM, HTTP/3 stream resets, heads never completed) in a burst,
    /// refilled at a tenth of this per second; past it the connection is
    /// closed and the address serves `abuse_penalty` (the HTTP/2 rapid-reset
    /// pattern).
    pub max_cancelled_requests: u32,
    /// Byte ranges one request may ask for (overlapping and adjacent ones are merged).
    pub max_ranges: u32,
    /// Nodes and edges: upstream fetches in the air at once (503 above it).
    pub max_flights: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 8192,
            request_timeout: Duration::secs(30),
            max_requests_per_ip: 1024,
            max_connections: 16384,
            max_connections_per_ip: 256,
            connection_rate_per_ip: 20,
            abuse_penalty: Duration::secs(10),
            abuse_strikes: 32,
            header_read_timeout: Duration::secs(10),
            idle_timeout: Duration::secs(60),
            max_header_bytes: ByteSize(16 << 10),
            max_headers: 64,
            max_body: ByteSize(64 << 10),
            max_upload_body: ByteSize(16 << 20),
            body_min_rate: ByteSize(64 << 10),
            max_body_memory: ByteSize(256 << 20),
            h3_send_memory: ByteSize(1 << 30),
            h2_max_concurrent_streams: 128,
            h3_max_concurrent_streams: 128,
            max_cancelled_requests: 200,
            max_ranges: 16,
            max_flights: 1024,
        }
    }
}

impl LimitsConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        // Each with its key, named once: `("limits.max_ranges", self.max_ranges)`.
        macro_rules! keyed {
            ($($field:ident),*) => { [$((concat!("limits.", stringify!($field)), self.$field)),*] };
        }
        let positive = keyed!(
            max_concurrent_requests,
            max_requests_per_ip,
            max_connections,
            max_connections_per_ip,
            connection_rate_per_ip,
            abuse_strikes,
            max_headers,
            h2_max_concurrent_streams,
            h3_max_concurrent_streams,
            max_cancelled_requests,
            max_ranges,
            max_flights
        );
        for (key, v) in positive {
            if v == 0 {
                return fail(key, "must be at least 1");
            }
        }
        if self.max_connections_per_ip > self.max_connections {
            return fail("limits.max_connections_per_ip", "must not exceed limits.max_connections");
        }
        for (key, d) in keyed!(request_timeout, header_read_timeout, idle_timeout) {
            if d.0.as_millis() < 10 {
                return fail(key, "must be at least 10ms");
            }
        }
        if self.max_ranges > 64 {
            return fail("limits.max_ranges", "at most 64");
        }
        if self.max_header_bytes.0 < 1024 || self.max_header_bytes.0 > 1 << 20 {
            return fail("limits.max_header_bytes", "must be 1KiB..=1MiB");
        }
        if self.max_body.0 < 1024 {
            return fail("limits.max_body", "must be at least 1KiB");
        }
        if self.max_upload_body < self.max_body {
            return fail("limits.max_upload_body", "must be at least limits.max_body");
        }
        if self.body_min_rate.0 < 1024 {
            return fail("limits.body_min_rate", "must be at least 1KiB (per second)");
        }
        if self.h3_send_memory.0 < 8 << 20 {
            return fail("limits.h3_send_memory", "must be at least 8MiB (one connection's full send window)");
        }
        if self.max_body_memory < self.max_upload_body {
            return fail("limits.max_body_memory", "must be at least limits.max_upload_body");
        }
        Ok(())
    }
}
