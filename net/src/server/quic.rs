//! The HTTP/3 listener: QUIC Initials charged to an address only once it is
//! proven (a Retry otherwise), the handshake step gated per core, h3
//! connections and their request tasks reaped as they finish.

#![allow(clippy::wildcard_imports)]

use super::*;

/// One endpoint's accept loop (`endpoints.rs` runs one per endpoint, on
/// its thread): `unproven` is the server's pool of handshakes from
/// addresses not yet proven, shared by every endpoint.
#[allow(clippy::too_many_arguments)]
pub(super) async fn accept_h3(
    endpoint: quinn::Endpoint,
    index: u8,
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    max_connections: u32,
    unproven: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
    stops: Stops,
) {
    let mut freeze = stops.freeze.clone();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = stop.changed() => break,
            () = until(&mut freeze) => { let _ = stop.changed().await; break }
        };
        let peer = incoming.remote_address();
        // A QUIC Initial's source address may be spoofed: until the client
        // proves it (by completing the handshake, or a Retry round trip),
        // nothing is charged to that address (its rate, slots, strikes), or
        // anyone could get a victim refused by sending Initials in its name.
        // Unproven handshakes share a small pool; past it, when the server is
        // busy, or when the address is serving a penalty, the answer is a
        // stateless Retry, which a spoofer cannot complete.
        let validated = incoming.remote_address_validated();
        let penalized = slots.penalized(ClientKey::of(peer.ip()));
        let busy = slots.open_count() > max_connections / 2 || unproven.load(Ordering::Relaxed) >= UNPROVEN_MAX;
        if !validated && (busy || penalized) {
            let _ = incoming.retry();
            tokio::task::yield_now().await;
            continue;
        }
        let permit = if validated {
            match ConnPermit::take(&slots, peer) {
                Ok(p) => Some(p),
                Err(why) => {
                    shared.stats.refuse(why);
                    incoming.refuse();
                    tokio::task::yield_now().await;
                    continue;
                }
            }
        } else {
            None
        };
        let pending = (!validated).then(|| Unproven::new(&unproven));
        shared.stats.h3_taken_on(index);
        let (shared2, slots2, stop, stops) = (shared.clone(), slots.clone(), stop.clone(), stops.clone());
        TaskGuard::spawn(&shared.stats, async move {
            let run = serve_h3(incoming, peer, shared2, slots2, stop, stops.clone(), permit, pending);
            if stops.run(run).await.is_none() {
                tracing::debug!(%peer, "h3 connection cut (kill)");
            }
        });
        tokio::task::yield_now().await;
    }
}

/// Handshakes from addresses not yet proven, at most this many at once.
const UNPROVEN_MAX: u32 = 256;

/// An unproven QUIC handshake's place in the pool.
struct Unproven(Arc<AtomicU32>);

impl Unproven {
    fn new(n: &Arc<AtomicU32>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n.clone())
    }
}

impl Drop for Unproven {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_h3(
    incoming: quinn::Incoming,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
    stops: Stops,
    permit: Option<ConnPermit>,
    pending: Option<Unproven>,
) {
    let stats = &shared.stats;
    let setup = async {
        let connecting = {
            // quinn answers the client's Initial (key exchange, signature) in
            // accept(): one such step at a time per core (see tls_handshake).
            let _step = shared.handshakes.acquire().await.map_err(|e| e.to_string())?;
            let c = incoming.accept().map_err(|e| e.to_string())?;
            tokio::task::yield_now().await;
            c
        };
        let c = connecting.await.map_err(|e| e.to_string())?;
        let h: h3::server::Connection<crate::h3_transport::Connection, Bytes> =
            shared.h3.build(crate::h3_transport::Connection::new(c.clone())).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((c, h))
    };
    let (quic, mut h3conn) = tokio::select! {
        r = tokio::time::timeout(shared.limits.header_read_timeout.0, Box::pin(setup)) => match r {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "quic handshake failed");
                stats.refuse(Refusal::Handshake);
                return;
            }
            Err(_) => {
                stats.refuse(Refusal::Handshake);
                // Only a proven address is struck (see accept_h3).
                if let Some(p) = &permit {
                    p.slots.strike(p.key, stats);
                }
                return;
            }
        },
        _ = stop.changed() => return,
    };
    // The handshake proved the address: now it is charged.
    drop(pending);
    let permit = match permit {
        Some(p) => p,
        None => match ConnPermit::take(&slots, peer) {
            Ok(p) => p,
            Err(why) => {
                stats.refuse(why);
                quic.close(0u32.into(), b"refused");
                return;
            }
        },
    };
    let permit = &permit;
    let conn = ConnState::new(permit);
    let mut dog = Box::pin(watchdog(conn.clone(), shared.limits));
    let _gauge = ConnGauge::new(stats, Protocol::H3);
    let cx = RequestContext { peer, protocol: Protocol::H3 };
    let mut forced = false;
    loop {
        let resolver = tokio::select! {
            r = h3conn.accept() => match r {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => { tracing::debug!(error = %e, "h3 accept"); break; }
            },
            why = &mut dog => {
                why.count(stats);
                if why == Close::HeaderTimeout {
                    permit.slots.strike(permit.key, stats);
                }
                if why == Close::CancelFlood {
                    permit.slots.penalize(permit.key, stats);
                }
                forced = true;
                // GOAWAY goes out on the control stream, which waits for the
                // client's flow-control credit: a client that grants none
                // does not hold the close.
                let _ = tokio::time::timeout(CLOSE_GRACE, h3conn.shutdown(0)).await;
                break;
            }
            _ = stop.changed() => {
                let _ = tokio::time::timeout(CLOSE_GRACE, h3conn.shutdown(0)).await;
                break;
            }
        };
        let (shared2, conn2, stops2) = (shared.clone(), conn.clone(), stops.clone());
        TaskGuard::spawn(&shared.stats, async move {
            let _ = stops2.run(serve_h3_request(resolver, shared2, conn2, cx)).await;
        });
    }
    // The requests in hand keep their streams on this connection: let them
    // finish (the server's drain bounds a shutdown; a forced close waits a grace).
    let wait = async {
        while conn.active.load(Ordering::Acquire) > 0 {
            let woken = conn.wake.notified();
            if conn.active.load(Ordering::Acquire) == 0 {
                break;
            }
            woken.await;
        }
    };
    if forced {
        let _ = tokio::time::timeout(CLOSE_GRACE, wait).await;
        quic.close(0u32.into(), b"closed by server");
    } else {
        wait.await;
    }
}

async fn serve_h3_request(
    resolver: h3::server::RequestResolver<crate::h3_transport::Connection, Bytes>,
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    cx: RequestContext,
) {
    let stats = &shared.stats;
    // A stream is a request once its head is in: one that never completes its
    // head (reset, malformed, too slow) keeps nothing in hand and counts as a
    // request cancelled before its answer.
    let (req, mut stream) = match tokio::time::timeout(shared.limits.header_read_timeout.0, resolver.resolve_request()).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            // h3 has answered 431 itself to a field section over its cap.
            let why = if matches!(e, h3::error::StreamError::HeaderTooBig { .. }) { Refusal::HeadersTooLarge } else { Refusal::Malformed };
            stats.refuse(why);
            conn.cancelled();
            tracing::debug!(error = %e, "h3 request");
            return;
        }
        Err(_) => {
            stats.refuse(Refusal::HeaderTimeout);
            conn.cancelled();
            return;
        }
    };
    let active = Active::new(&conn);
    let (parts, ()) = req.into_parts();
    let mut body = H3Body { stream: &mut stream, ended: false };
    let (resp, mut guard) = process(&shared, &conn, parts, &mut body, cx, Some(active)).await;
    let body_ended = body.ended;
    let (head, mut body) = resp.into_parts();
    let status = guard.status.take();
    if stream.send_response(Response::from_parts(head, ())).await.is_err() {
        // Reset before its answer went out: the guard counts a cancellation.
        return;
    }
    guard.status = status;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data()
                    && !data.is_empty()
                {
                    let n = data.len();
                    // The chunk goes to quinn as it is, not copied: offered on
                    // this thread, taken by h3_transport in the first poll of
                    // the send (h3 hands it the frame there), withdrawn right
                    // after that poll, on the same thread.
                    let offered = crate::h3_transport::offer(&data);
                    let mut send = std::pin::pin!(stream.send_data(data));
                    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(send.as_mut().poll(cx))).await;
                    let zero_copy = offered && crate::h3_transport::withdraw();
                    let sent = match first {
                        std::task::Poll::Ready(r) => r,
                        std::task::Poll::Pending => send.await,
                    };
                    if sent.is_err() {
                        return;
                    }
                    let counter = if zero_copy { &stats.h3_body_zero_copy } else { &stats.h3_body_copied };
                    counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    guard.count_sent(n);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "h3 response body");
                return;
            }
        }
    }
    let _ = stream.finish().await;
    if !body_ended {
        // Answered without reading the body (a refusal on the head): a client
        // that has already sent it whole gets a clean end, not a reset, if
        // what is left is small and comes at once; anything else is cut.
        drain_unread(&mut H3Body { stream: &mut stream, ended: false }, Duration::from_millis(200)).await;
    }
}
