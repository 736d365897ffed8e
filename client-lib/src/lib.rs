//! The smart client: pulse every source, fetch segments in parallel from the
//! best, verify, decrypt, reassemble, seek, and serve peers.
//!
//! [`Session`]: open with a ticket (one play counted, the replacement ticket
//! handed back), pulse the sources, fetch segments in parallel from the best
//! source for each with failover, verify each against its blake3 address,
//! decrypt, write in order, with [`Event`]s; [`Gateway`]: the plaintext as
//! one HTTP resource with full Range support on loopback, for standard
//! players; [`PlainStream`]: `AsyncRead` + `AsyncSeek` over the plaintext
//! with a window fetched ahead, moved on seek. [`scoring`] ranks sources by
//! expected completion time (pure).
//!
//! Every decision (which source per segment, races decided at a quarter,
//! leaving a slow or silent source, the end-game split, resumption by range
//! after a lie or a failure, the order of output) is taken by a scheduler
//! without I/O (`schedule`: events and `now` in, actions and a deadline out)
//! that verifies every byte per 16 KiB group; the session's driver task only
//! does its HTTP. With [`OpenOptions::local`] (the client's peer service, a
//! [`PeerService`]: in the binary an `EdgeServer` with role `peer`),
//! pre-cast segments are read first and every segment played is kept there
//! for other viewers. The crate builds no store and no C++: an app embedding
//! it needs a Rust toolchain and a C compiler (for ring) only.
//!
//! ```no_run
//! # async fn run(ticket: String, ca_pem: String) -> Result<(), tranzcast_client::ClientError> {
//! use std::sync::Arc;
//! use tranzcast_client::{OpenOptions, Session};
//! let opts = OpenOptions { origin: "https://localhost:4433".into(), ticket, ca_pem, parallel: 4, local: None };
//! let session = Arc::new(Session::open(opts).await?);
//! let next_ticket = session.replacement_ticket().map(str::to_string); // keep it for the next play
//! let mut out = tokio::fs::File::create("film.mp4").await?;
//! let report = session.play_to(&mut out).await?;
//! println!("{} bytes, first segment after {:?}, from {:?}", report.bytes, report.first_segment, report.by_source);
//! # let _ = next_ticket; Ok(()) }
//! ```

#![warn(missing_docs)]

mod error;
mod event;
mod gateway;
mod peer;
mod schedule;
pub mod scoring;
mod session;
mod stream;

pub use error::ClientError;
pub use event::Event;
pub use gateway::Gateway;
pub use peer::PeerService;
pub use session::{LOCAL, OpenOptions, PlayReport, Session, Source};
pub use stream::PlainStream;
/// Sources' roles (the wire type).
pub use tranzcast_proto::pulse::EdgeRole;
