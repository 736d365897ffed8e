//! Opens a play ticket and streams the title through `AsyncRead` +
//! `AsyncSeek`: what an app embedding the client does to hand a player the
//! plaintext. Reads the title's last 64 KiB first (a seek, as a player
//! reading an index at the end would), then copies the whole title from the
//! start into a file.
//!
//! Against the demo's cluster (`tranzcast demo --serve` writes DATA/cluster.json
//! with the origin's URL, the CA's path and a rental ticket of two plays):
//!
//! ```text
//! cargo run --release -p tranzcast-client --example stream -- \
//!     https://localhost:PORT DATA/tls/ca.pem TICKET film.out
//! ```
//!
//! Prints the play's figures and the replacement ticket (for the next play of a rental).

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tranzcast_client::{OpenOptions, Session};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [origin, ca, ticket, out] = args.as_slice() else {
        eprintln!("usage: stream ORIGIN_URL CA_PEM_FILE TICKET OUT_FILE");
        std::process::exit(2);
    };
    if let Err(e) = run(origin, ca, ticket, out).await {
        eprintln!("stream: {e}");
        std::process::exit(1);
    }
}

async fn run(origin: &str, ca: &str, ticket: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let ca_pem = std::fs::read_to_string(ca).map_err(|e| format!("cannot read {ca}: {e}"))?;
    let started = Instant::now();
    // Opening validates the ticket at the origin: one play is counted here.
    let opts = OpenOptions { origin: origin.to_string(), ticket: ticket.to_string(), ca_pem, parallel: 4, local: None };
    let session = Arc::new(Session::open(opts).await?);
    let len = session.manifest().plaintext_len;
    println!("opened in {:?}: {} bytes in {} segments", started.elapsed(), len, session.manifest().segments.len());
    // Four segments in flight ahead of the reader.
    let mut stream = session.stream(4);
    let tail = len.min(64 << 10);
    stream.seek(std::io::SeekFrom::End(-(tail as i64))).await?;
    let mut last = Vec::new();
    stream.read_to_end(&mut last).await?;
    println!("read the last {} bytes after a seek, {:?} in", last.len(), started.elapsed());
    stream.seek(std::io::SeekFrom::Start(0)).await?;
    let mut file = tokio::fs::File::create(out).await.map_err(|e| format!("cannot create {out}: {e}"))?;
    let copied = tokio::io::copy(&mut stream, &mut file).await?;
    file.flush().await?;
    println!("wrote {copied} bytes to {out} in {:?}", started.elapsed());
    if let Some(next) = session.replacement_ticket() {
        println!("replacement ticket (the next play): {next}");
    }
    Ok(())
}
