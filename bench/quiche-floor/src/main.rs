//! A floor HTTP/3 server on tokio-quiche for `bench/edge.sh`: every file of a
//! directory held in memory and served by name at `/v1/blobs/NAME`, with one
//! `Range: bytes=A-B` (or `bytes=A-`) at most, no access check, nothing
//! behind it. It answers the same question as the quinn floor: what the
//! HTTP/3 stack allows, with the same files, certificate and load tool.
//!
//! Usage: tranzcast-quiche-floor LISTEN DIR CERT KEY; prints the bound
//! address on its first line, serves until killed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_quiche::http3::driver::{H3Event, IncomingH3Headers, OutboundFrame, ServerH3Event};
use tokio_quiche::http3::settings::Http3Settings;
use tokio_quiche::metrics::DefaultMetrics;
use tokio_quiche::quiche::h3::{Header, NameValue};
use tokio_quiche::settings::{CertificateKind, Hooks, QuicSettings, TlsCertificatePaths};
use tokio_quiche::{ConnectionParams, ServerH3Driver};

type Files = Arc<HashMap<String, Bytes>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, dir, cert, key] = args.as_slice() else {
        eprintln!("usage: tranzcast-quiche-floor LISTEN DIR CERT KEY");
        std::process::exit(2);
    };
    let mut files = HashMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_file() {
            files.insert(e.file_name().to_string_lossy().into_owned(), Bytes::from(std::fs::read(e.path())?));
        }
    }
    let files: Files = Arc::new(files);
    tokio::runtime::Runtime::new()?.block_on(serve(listen, files, cert, key))
}

async fn serve(listen: &str, files: Files, cert: &str, key: &str) -> Result<(), Box<dyn std::error::Error>> {
    let socket = tokio::net::UdpSocket::bind(listen).await?;
    println!("{}", socket.local_addr()?);
    // The transport as the quinn floor runs it: datagrams of up to 1,452
    // bytes, stream and connection windows no smaller than quinn's defaults
    // (quiche's own are 1 MB per stream, 10 MB per connection).
    let mut quic = QuicSettings::default();
    quic.max_send_udp_payload_size = 1452;
    quic.max_recv_udp_payload_size = 1452;
    quic.initial_max_data = 16 << 20;
    quic.initial_max_stream_data_bidi_local = 2 << 20;
    quic.initial_max_stream_data_bidi_remote = 2 << 20;
    quic.initial_max_streams_bidi = 256;
    let tls = TlsCertificatePaths { cert, private_key: key, kind: CertificateKind::X509 };
    let mut listeners =
        tokio_quiche::listen([socket], ConnectionParams::new_server(quic, tls, Hooks::default()), DefaultMetrics)?;
    let accepted = &mut listeners[0];
    loop {
        tokio::select! {
            conn = accepted.next() => match conn {
                Some(Ok(conn)) => {
                    let (driver, mut controller) = ServerH3Driver::new(Http3Settings::default());
                    conn.start(driver);
                    let files = files.clone();
                    tokio::spawn(async move {
                        while let Some(event) = controller.event_receiver_mut().recv().await {
                            match event {
                                ServerH3Event::Headers { incoming_headers, .. } => {
                                    tokio::spawn(answer(incoming_headers, files.clone()));
                                }
                                ServerH3Event::Core(H3Event::ConnectionShutdown(_) | H3Event::ConnectionError(_)) => break,
                                ServerH3Event::Core(_) => {}
                            }
                        }
                    });
                }
                Some(Err(e)) => eprintln!("connection refused: {e}"),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// One request: the named file, or the one range asked of it, or 404.
async fn answer(req: IncomingH3Headers, files: Files) {
    let IncomingH3Headers { headers, mut send, .. } = req;
    let mut path = None;
    let mut range = None;
    for h in &headers {
        match h.name() {
            b":path" => path = std::str::from_utf8(h.value()).ok().map(str::to_owned),
            b"range" => range = std::str::from_utf8(h.value()).ok().map(str::to_owned),
            _ => {}
        }
    }
    let blob = path.as_deref().and_then(|p| p.strip_prefix("/v1/blobs/")).and_then(|name| files.get(name));
    let Some(blob) = blob else {
        let _ = send.send(OutboundFrame::Headers(vec![Header::new(b":status", b"404")], None)).await;
        let _ = send.send(OutboundFrame::Body(Bytes::new(), true)).await;
        return;
    };
    let (status, body) = match range.as_deref().and_then(|r| one_range(r, blob.len())) {
        Some((a, b)) => (&b"206"[..], blob.slice(a..b)),
        None => (&b"200"[..], blob.clone()),
    };
    let len = body.len().to_string();
    let head = vec![Header::new(b":status", status), Header::new(b"content-length", len.as_bytes())];
    if send.send(OutboundFrame::Headers(head, None)).await.is_ok() {
        let _ = send.send(OutboundFrame::Body(body, true)).await;
    }
}

/// `bytes=A-B` or `bytes=A-` within `len`, clamped; anything else: None.
fn one_range(v: &str, len: usize) -> Option<(usize, usize)> {
    let last = len.checked_sub(1)?;
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let a: usize = a.parse().ok()?;
    let b: usize = if b.is_empty() { last } else { b.parse::<usize>().ok()?.min(last) };
    (a <= b).then_some((a, b + 1))
}
