//! The QUIC attack clients of `bench/hostile.sh`: idle connections kept
//! alive by pings, a blind spoofer's flood of Initials, and HTTP/3 clients
//! that ask for large answers and then never acknowledge a byte.

#![allow(clippy::wildcard_imports)]

use super::*;

/// Holds `n` QUIC connections (ALPN h3, kept alive by pings, no request
/// ever) until the deadline, reopening those the server closes.
pub(super) async fn idle_quic(t: Arc<Target>, n: usize, sources: usize, deadline: Instant, tally: Arc<Tally>) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut endpoints = Vec::new();
    for i in 0..sources.min(n) {
        let tls = tranzcast_net::tls::client_config(t.ca.as_bytes(), &[b"h3"])?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(1)));
        transport.max_idle_timeout(Some(Duration::from_secs(120).try_into()?));
        cfg.transport_config(Arc::new(transport));
        let mut ep = quinn::Endpoint::client(SocketAddr::new(source(i), 0))?;
        ep.set_default_client_config(cfg);
        endpoints.push(ep);
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(128));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (ep, tally, gate, addr) = (endpoints[i % endpoints.len()].clone(), tally.clone(), gate.clone(), t.addr);
            tokio::spawn(async move {
                let ep = &ep;
                while let Some(c) =
                    reopen(&gate, deadline, &tally, move || async move { ep.connect(addr, "localhost").ok()?.await.ok() }).await
                {
                    if tokio::time::timeout_at(deadline.into(), c.closed()).await.is_ok() {
                        tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    for ep in endpoints {
        ep.close(0u32.into(), b"done");
    }
    Ok(())
}

/// QUIC Initials as fast as `workers` tasks can build them (at most `max`),
/// each from a fresh connection (its own connection ID, so its own Initial
/// keys) and followed by its CONNECTION_CLOSE, as a blind spoofer could send
/// them. The server's answers are read only to count them by packet type:
/// a Retry is the cheap answer, a server Initial means a handshake (a
/// signature) was spent.
pub(super) async fn initial_flood(
    t: &Target,
    workers: usize,
    sources: usize,
    max: u64,
    deadline: Instant,
    tally: Arc<Tally>,
) -> Result<()> {
    let tls = tranzcast_net::tls::client_config(t.ca.as_bytes(), &[b"h3"])?;
    let quic = Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls)?);
    let mut tasks = Vec::new();
    for i in 0..workers.clamp(1, 256) {
        let socket = Arc::new(tokio::net::UdpSocket::bind(SocketAddr::new(source(i % sources), 0)).await?);
        let (quic, tally, addr) = (quic.clone(), tally.clone(), t.addr);
        let reader = {
            let (socket, tally) = (socket.clone(), tally.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline.into(), socket.recv_from(&mut buf)).await {
                    tally.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    tally.answer(quic_packet_kind(buf.first().copied().unwrap_or(0)));
                }
            })
        };
        tasks.push(tokio::spawn(async move {
            let mut endpoint = quinn_proto::Endpoint::new(Arc::new(quinn::EndpointConfig::default()), None, false, None);
            let mut buf = Vec::with_capacity(2048);
            let mut k = 0u64;
            while Instant::now() < deadline && tally.sent.load(Ordering::Relaxed) < max {
                let now = Instant::now();
                let Ok((handle, mut conn)) = endpoint.connect(now, quinn::ClientConfig::new(quic.clone()), addr, "localhost") else {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                tally.opened.fetch_add(1, Ordering::Relaxed);
                buf.clear();
                if let Some(tx) = conn.poll_transmit(now, 1, &mut buf) {
                    if socket.send_to(&buf[..tx.size], addr).await.is_ok() {
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                conn.close(now, 0u32.into(), Bytes::new());
                buf.clear();
                if let Some(tx) = conn.poll_transmit(now, 1, &mut buf) {
                    let _ = socket.send_to(&buf[..tx.size], addr).await;
                }
                // The endpoint forgets it (its connection IDs freed).
                endpoint.handle_event(handle, quinn_proto::EndpointEvent::drained());
                k += 1;
                if k.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            reader.abort();
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// Holds `n` HTTP/3 connections from `sources` addresses until the
/// deadline, each on an endpoint of its own that goes silent: it asks for
/// `blob` whole `streams` times at once, granting credit for every answer,
/// and once the server has acknowledged every request it sends nothing
/// more, not even a close. Each connection the server ends is opened
/// again. An address opens its connections one every 50 ms, within the
/// server's connection rate.
#[allow(clippy::too_many_arguments)]
pub(super) async fn silent_h3(
    t: &Target,
    n: usize,
    streams: usize,
    sources: usize,
    blob: &str,
    cert: &str,
    deadline: Instant,
    tally: Arc<Tally>,
) -> Result<()> {
    use tranzcast_proto::http3::{self, frame, qpack};
    let tls = tranzcast_net::tls::client_config(t.ca.as_bytes(), &[b"h3"])?;
    let quic = Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls)?);
    let mut transport = quinn::TransportConfig::default();
    // Credit for every answer whole: the server may write all of them.
    let credit = u32::try_from(streams << 21).unwrap_or(u32::MAX);
    transport.stream_receive_window((2u32 << 20).into());
    transport.receive_window(credit.into());
    transport.max_concurrent_uni_streams(100u32.into());
    transport.max_idle_timeout(Some(Duration::from_secs(300).try_into()?));
    let transport = Arc::new(transport);
    let mut block = Vec::new();
    let authority = format!("localhost:{}", t.addr.port());
    qpack::encode_request(
        b"GET",
        authority.as_bytes(),
        format!("/v1/blobs/{blob}").as_bytes(),
        [(&b"authorization"[..], cert.as_bytes())],
        &mut block,
    );
    let mut head = Vec::new();
    http3::write_frame_head(frame::HEADERS, block.len() as u64, &mut head);
    head.extend_from_slice(&block);
    let mut control = Vec::new();
    http3::write_control_opening(16 << 10, &mut control);
    let (head, control) = (Bytes::from(head), Bytes::from(control));
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (tally, gate, quic, transport, head, control, addr) =
                (tally.clone(), gate.clone(), quic.clone(), transport.clone(), head.clone(), control.clone(), t.addr);
            tokio::spawn(async move {
                let from = source(i % sources);
                let stagger = Instant::now() + Duration::from_millis(50 * (i / sources) as u64);
                tokio::time::sleep_until(stagger.min(deadline).into()).await;
                let open = || {
                    let (tally, quic, transport, head, control) = (&tally, quic.clone(), transport.clone(), head.clone(), control.clone());
                    async move {
                        let mut cfg = quinn::ClientConfig::new(quic);
                        cfg.transport_config(transport);
                        let (endpoint, silent) = tranzcast_net::client::silenceable_endpoint(SocketAddr::new(from, 0), cfg).ok()?;
                        let c = endpoint.connect(addr, "localhost").ok()?.await.ok()?;
                        let mut ctl = c.open_uni().await.ok()?;
                        ctl.write_chunk(control).await.ok()?;
                        let mut held = Vec::with_capacity(streams);
                        for _ in 0..streams {
                            let (mut send, recv) = c.open_bi().await.ok()?;
                            send.write_chunk(head.clone()).await.ok()?;
                            send.finish().ok()?;
                            held.push((send, recv));
                        }
                        // Every request read whole by the server (acknowledged with its end), then silence.
                        for (send, _) in &held {
                            tokio::time::timeout(Duration::from_secs(5), send.stopped()).await.ok()?.ok()?;
                        }
                        silent.store(true, Ordering::Relaxed);
                        tally.sent.fetch_add(streams as u64, Ordering::Relaxed);
                        Some((c, endpoint, ctl, held))
                    }
                };
                while let Some((c, _endpoint, _ctl, _held)) = reopen(&gate, deadline, &tally, open).await {
                    if tokio::time::timeout_at(deadline.into(), c.closed()).await.is_ok() {
                        tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    }
                    // What the server sent it, answers and retransmissions.
                    tally.bytes.fetch_add(c.stats().udp_rx.bytes, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// A QUIC datagram's first packet, by its long-header type (RFC 9000 17.2).
fn quic_packet_kind(first: u8) -> &'static str {
    if first & 0x80 == 0 {
        return "short";
    }
    match (first >> 4) & 0x3 {
        0 => "initial",
        1 => "0-rtt",
        2 => "handshake",
        _ => "retry",
    }
}
