//! Networking shared by every Tranzcast server and client.
//!
//! - [`tls`]: a local certificate authority for loopback clusters and TLS
//!   identities; rustls configs with one crypto provider (ring) everywhere.
//! - [`server`]: [`HttpServer`]: HTTP/1.1 and HTTP/2 over TLS on TCP and
//!   HTTP/3 on UDP, on the same port number, plus an optional plain-HTTP
//!   listener; one handler behind all of them, admitted on the request head
//!   before its body is read; the same limits on every listener; graceful shutdown.
//! - [`limits`]: what one client may take, as pure decisions (connection
//!   slots, cancellation budgets, body deadlines, per-address rates).
//! - [`stats`]: [`ServerStats`]: requests, bytes, latency, connections,
//!   requests and tasks in hand, refusals by reason; Prometheus text.
//! - [`synfilter`]: the penalty box in the kernel: a socket filter program
//!   dropping the new connections of penalised addresses.
//! - `coalesce`: gathers an HTTP/2 connection's frames into 64 KiB writes
//!   (h2 flushes after every frame).
//! - `h3_transport`: h3's QUIC traits over quinn, ours, for the HTTP/3
//!   client; the server speaks HTTP/3 itself (`server/h3_streams.rs`, over
//!   `tranzcast_proto::http3`).
//! - [`push`]: ask-then-push of blobs between servers.
//! - [`client`]: HTTPS (reqwest, h1/h2) and HTTP/3 (quinn + h3) clients that
//!   trust a given CA.

pub mod client;
mod coalesce;
mod error;
mod h3_transport;
pub mod limits;
pub mod push;
pub mod ranged;
pub mod server;
pub mod stats;
pub mod steering;
pub mod synfilter;
pub mod tls;

pub use error::NetError;
pub use server::{
    Body, BodyLimit, ClusterMember, Handler, HttpServer, Protocol, Refused, RequestContext, ServerOptions, error_response, full, handler,
};
pub use stats::{Refusal, ServerStats};
pub use tls::{LocalCa, TlsIdentity};
/// The limits every server takes (from the config crate, the one place file formats live).
pub use tranzcast_config::LimitsConfig;

/// The process's open-files limit (soft), if it can be read.
pub fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the process's open-files limit (soft) to its hard limit, as a
/// server that holds many connections needs; returns the limit now.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
        }
    }
    fd_limit()
}
