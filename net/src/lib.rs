//! Networking shared by every Tranzcast server and client.
//!
//! - [`tls`]: a local certificate authority for loopback clusters and TLS
//!   identities; rustls configs with one crypto provider (ring) everywhere.
//! - [`server`]: [`HttpServer`]: HTTP/1.1 and HTTP/2 over TLS on TCP and
//!   HTTP/3 on UDP, on the same port number, plus an optional plain-HTTP
//!   listener; one handler behind all of them; graceful shutdown.
//! - `coalesce`: gathers an HTTP/2 connection's frames into 64 KiB writes
//!   (h2 flushes after every frame).
//! - [`push`]: ask-then-push of blobs between servers.
//! - [`client`]: HTTPS (reqwest, h1/h2) and HTTP/3 (quinn + h3) clients that
//!   trust a given CA.

pub mod client;
mod coalesce;
mod error;
pub mod push;
pub mod ranged;
pub mod server;
pub mod tls;

pub use error::NetError;
pub use server::{Body, Handler, HttpServer, Protocol, RequestContext, ServerOptions, full, handler};
pub use tls::{LocalCa, TlsIdentity};
