//! The HTTP/3 listener: QUIC Initials charged to an address only once it is
//! proven (a Retry otherwise), the handshake step gated per core, h3
//! connections reaped as they finish, each running its requests on its own
//! task (polled when woken, dropped with it).

#![allow(clippy::wildcard_imports)]

use super::h3_streams::{
    ConnMemo, Ended, HeadFail, PeerStreams, ReadFail, RequestIn, close, request_parts, send_response, serve_uni, varint,
};
use super::request::ChunkSource;
use super::send_windows::SendWindow;
use super::settle::{ResetUnlessSettled, SMALL_ANSWER, Seen, Unacked, UnackedAnswers};
use super::*;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tranzcast_proto::http3::{self, H3Code};

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
    let mut unproven_rate = UnprovenRate::new(std::time::Instant::now());
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
        // stateless Retry, which a spoofer cannot complete. So is it past
        // UNPROVEN_PER_SEC handshakes a second on this endpoint: each costs
        // a signature, and a flood of Initials closed at once would keep the
        // pool small while the signatures go on; a Retry costs one round
        // trip, after which the address is proven and charged.
        let validated = incoming.remote_address_validated();
        let penalized = slots.penalized(ClientKey::of(peer.ip()));
        let busy = slots.open_count() > max_connections / 2
            || unproven.load(Ordering::Relaxed) >= UNPROVEN_MAX
            || (!validated && !unproven_rate.take(std::time::Instant::now()));
        if !validated && (busy || penalized) {
            shared.stats.quic_retries.fetch_add(1, Ordering::Relaxed);
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

/// Handshakes from addresses not yet proven, per second and endpoint
/// (one per core), past which Initials get a Retry: a few tenths of a
/// core's signatures.
const UNPROVEN_PER_SEC: f64 = 1000.0;

/// Of which at once, after a quiet time: a tenth of a second's worth. A
/// second's worth (the first design) let a flood's first burst spend
/// 1,000 signatures back to back, about 150 ms of the core, and honest
/// handshakes queued behind them (211 ms at the flood's start in
/// `bench/hostile.sh 40 initial-flood`).
const UNPROVEN_BURST: f64 = UNPROVEN_PER_SEC / 10.0;

/// The budget of unproven handshakes: a token bucket on the endpoint's
/// thread (no lock: each endpoint has its own).
struct UnprovenRate {
    tokens: f64,
    at: std::time::Instant,
}

impl UnprovenRate {
    fn new(now: std::time::Instant) -> Self {
        Self { tokens: UNPROVEN_BURST, at: now }
    }

    /// Takes one if there is one.
    fn take(&mut self, now: std::time::Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * UNPROVEN_PER_SEC;
        self.tokens = (self.tokens + refill).min(UNPROVEN_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

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
    let deadline = tokio::time::Instant::now() + shared.limits.header_read_timeout.0;
    let handshake = async {
        let connecting = {
            // quinn answers the client's Initial (key exchange, signature) in
            // accept(): one such step at a time per core (see tls_handshake).
            let _step = shared.handshakes.acquire().await.map_err(|e| e.to_string())?;
            let c = incoming.accept().map_err(|e| e.to_string())?;
            tokio::task::yield_now().await;
            c
        };
        connecting.await.map_err(|e| e.to_string())
    };
    let quic = tokio::select! {
        r = tokio::time::timeout_at(deadline, Box::pin(handshake)) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "quic handshake failed");
                stats.refuse(Refusal::Handshake);
                // Only a proven address is struck (see accept_h3): a
                // failed handshake costs us a signature, as over TCP.
                if let Some(p) = &permit {
                    p.slots.strike(p.key, stats);
                }
                return;
            }
            Err(_) => {
                stats.refuse(Refusal::Handshake);
                if let Some(p) = &permit {
                    p.slots.strike(p.key, stats);
                }
                return;
            }
        },
        _ = stop.changed() => return,
    };
    // The handshake proved the address: now it is charged, before anything
    // else waits on the client (a client that gives us no stream credit
    // would otherwise hold an unproven place, outside its address's caps).
    drop(pending);
    let permit = match permit {
        Some(p) => p,
        None => match ConnPermit::take(&slots, peer) {
            Ok(p) => p,
            Err(why) => {
                stats.refuse(why);
                quic.close(varint(H3Code::ExcessiveLoad), b"refused");
                return;
            }
        },
    };
    let permit = &permit;
    // Its send window, out of the server's budget, before any answer is
    // written: the floor, grown by each answer (serve_h3_request).
    let window = Arc::new(shared.send_windows.open(permit.key));
    quic.set_send_window(window.bytes());
    // Our control stream, and its SETTINGS, first (within the same deadline).
    let opening = async {
        let mut control = quic.open_uni().await.map_err(|e| e.to_string())?;
        let mut opening = Vec::with_capacity(16);
        http3::write_control_opening(shared.limits.max_header_bytes.0, &mut opening);
        control.write_all(&opening).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(control)
    };
    let mut control = tokio::select! {
        r = tokio::time::timeout_at(deadline, Box::pin(opening)) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "h3 control stream failed");
                stats.refuse(Refusal::Handshake);
                return;
            }
            Err(_) => {
                stats.refuse(Refusal::Handshake);
                permit.slots.strike(permit.key, stats);
                quic.close(varint(H3Code::ExcessiveLoad), b"no stream credit");
                return;
            }
        },
        _ = stop.changed() => return,
    };
    let conn = ConnState::new(permit);
    let mut dog = Box::pin(watchdog(conn.clone(), shared.limits));
    let _gauge = ConnGauge::new(stats, Protocol::H3);
    let cx = RequestContext { peer, protocol: Protocol::H3 };
    let mut forced = false;
    let peer_streams = Arc::new(PeerStreams::default());
    let memo = Arc::new(ConnMemo::default());
    let heads = super::h3_streams::head_budget(shared.limits.max_header_bytes.0 + 16);
    // The first request stream not taken: what a GOAWAY names.
    let mut next_request: u64 = 0;
    // The connection's requests run on this task, polled when woken, not a
    // task each (no spawn, no scheduling per request; as HTTP/2's streams,
    // h2_local.rs). A kill drops them with the connection.
    let mut requests = FuturesUnordered::new();
    // Small answers written whole, until the client acknowledges them (settle.rs).
    let mut unacked = UnackedAnswers::new(quic.clone());
    let mut say_goaway = false;
    loop {
        let (send, recv) = tokio::select! {
            Some(done) = requests.next(), if !requests.is_empty() => {
                if let Some(answer) = done {
                    unacked.push(answer);
                }
                // Nothing in hand, every answer acknowledged or reset: the
                // window goes back to the budget but for the floor.
                if requests.is_empty()
                    && unacked.is_empty()
                    && let Some(w) = window.shrink()
                {
                    quic.set_send_window(w);
                }
                continue;
            }
            seen = unacked.next(), if !unacked.is_empty() => {
                if seen == Seen::Overdue {
                    quic.close(varint(H3Code::ExcessiveLoad), b"answer not acknowledged");
                }
                if requests.is_empty()
                    && unacked.is_empty()
                    && let Some(w) = window.shrink()
                {
                    quic.set_send_window(w);
                }
                continue;
            }
            r = quic.accept_bi() => match r {
                Ok(s) => s,
                Err(e) => { tracing::debug!(error = %e, "h3 accept"); break; }
            },
            r = quic.accept_uni() => {
                match r {
                    Ok(recv) => {
                        let (quic2, seen, stops2) = (quic.clone(), peer_streams.clone(), stops.clone());
                        TaskGuard::spawn(&shared.stats, async move {
                            let _ = stops2.run(serve_uni(recv, quic2, seen)).await;
                        });
                        continue;
                    }
                    Err(e) => { tracing::debug!(error = %e, "h3 accept"); break; }
                }
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
                say_goaway = true;
                break;
            }
            _ = stop.changed() => {
                say_goaway = true;
                break;
            }
        };
        next_request = u64::from(send.id()) + 4;
        // A request that panics (its answer's body, say; a handler's panic
        // is a 500 already) ends alone, its stream reset; the connection's
        // other requests go on.
        let stats = shared.stats.clone();
        let request =
            serve_h3_request(send, recv, quic.clone(), shared.clone(), conn.clone(), memo.clone(), heads.clone(), window.clone(), cx);
        requests.push(std::panic::AssertUnwindSafe(request).catch_unwind().map(move |r| match r {
            Ok(unacked) => unacked,
            Err(payload) => {
                stats.panicked(Protocol::H3, "stream", &*payload);
                None
            }
        }));
    }
    // The requests in hand keep their streams on this connection: let them
    // finish (the server's drain bounds a shutdown; a forced close waits a
    // grace), still polled while the GOAWAY waits for the client's credit.
    let say = async {
        if say_goaway {
            goaway(&mut control, next_request).await;
        }
    };
    let finish = async {
        // Closing before the small answers are acknowledged would cut them
        // short: they settle (or run out of time) as the requests finish.
        loop {
            tokio::select! {
                Some(done) = requests.next(), if !requests.is_empty() => {
                    if let Some(answer) = done {
                        unacked.push(answer);
                    }
                }
                seen = unacked.next(), if !unacked.is_empty() => {
                    if seen == Seen::Overdue {
                        quic.close(varint(H3Code::ExcessiveLoad), b"answer not acknowledged");
                    }
                }
                else => break,
            }
        }
        while conn.active.load(Ordering::Acquire) > 0 {
            let woken = conn.wake.notified();
            if conn.active.load(Ordering::Acquire) == 0 {
                break;
            }
            woken.await;
        }
    };
    let both = async {
        tokio::join!(say, finish);
    };
    // A forced close takes CLOSE_GRACE in all, the GOAWAY's landing included.
    let grace_ends = tokio::time::Instant::now() + CLOSE_GRACE;
    if forced {
        let _ = tokio::time::timeout_at(grace_ends, both).await;
    } else {
        both.await;
    }
    // The GOAWAY is on its way: closing at once would drop it unsent. A
    // few round trips for it to land (or for the client to close first).
    let mut landing = (quic.rtt() * 3 + Duration::from_millis(10)).min(CLOSE_GRACE);
    if forced {
        landing = landing.min(grace_ends.saturating_duration_since(tokio::time::Instant::now()));
    }
    let _ = tokio::time::timeout(landing, quic.closed()).await;
    // With the connection already gone, a no-op.
    quic.close(varint(H3Code::NoError), b"closed by server");
}

/// Sends a GOAWAY naming the first request stream not served. It goes out
/// on the control stream, which waits for the client's flow-control
/// credit: a client that grants none does not hold the close.
async fn goaway(control: &mut quinn::SendStream, next_request: u64) {
    let mut frame = Vec::with_capacity(10);
    http3::write_goaway(next_request, &mut frame);
    let _ = tokio::time::timeout(CLOSE_GRACE, control.write_all(&frame)).await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_h3_request(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    quic: quinn::Connection,
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    memo: Arc<ConnMemo>,
    heads: Arc<tokio::sync::Semaphore>,
    window: Arc<SendWindow>,
    cx: RequestContext,
) -> Option<Unacked> {
    let mut send = ResetUnlessSettled::new(send);
    let stats = &shared.stats;
    let limits = &shared.limits;
    // A field section's encoding is never longer than its size as counted
    // (32 bytes a line besides name and value) plus its prefix.
    let mut input = RequestIn::new(recv, limits.max_header_bytes.0 + 16, limits.max_headers as usize + 4, heads);
    // A stream is a request once its head is in: one that never completes its
    // head (reset, malformed, too slow) keeps nothing in hand and counts as a
    // request cancelled before its answer.
    let parts = match tokio::time::timeout(limits.header_read_timeout.0, input.head()).await {
        // At most the header count the head checks take, and the four
        // pseudo-header fields: past it, 431 without building the map.
        Ok(Ok(section)) => request_parts(&section, limits.max_header_bytes.0, limits.max_headers as usize + 4, &memo),
        Ok(Err(ReadFail::Protocol(e))) if e.is_too_large() => Err(HeadFail::TooLarge),
        Ok(Err(ReadFail::Protocol(e))) => Err(HeadFail::Bad(e)),
        Ok(Err(ReadFail::Gone | ReadFail::Reset)) => {
            conn.cancelled();
            let _ = send.reset(varint(H3Code::RequestCancelled));
            return None;
        }
        Err(_) => {
            stats.refuse(Refusal::HeaderTimeout);
            conn.cancelled();
            let _ = send.reset(varint(H3Code::RequestRejected));
            input.stop(H3Code::RequestRejected);
            return None;
        }
    };
    let parts = match parts {
        Ok(p) => p,
        Err(fail @ (HeadFail::TooLarge | HeadFail::TooMany)) => {
            let (why, reason) = if matches!(fail, HeadFail::TooLarge) {
                (Refusal::HeadersTooLarge, format!("the request head is over {} bytes", limits.max_header_bytes.0))
            } else {
                (Refusal::TooManyHeaders, format!("more than {} header fields", limits.max_headers))
            };
            stats.refuse(why);
            // Refused before it was a request: it spends the address's
            // cancellation budget like any other head that came to nothing.
            conn.cancelled();
            let resp = error_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", &reason);
            input.stop(H3Code::NoError);
            // A client that grants no credit for the answer does not hold the task.
            if let Ok(Ok(Ended::Finished)) =
                tokio::time::timeout(limits.header_read_timeout.0, send_response(&mut send, resp, true, |_, _| {})).await
            {
                let deadline = tokio::time::Instant::now() + limits.header_read_timeout.0;
                send.settle(deadline, &conn, limits.idle_timeout.0 / 2).await;
            }
            return None;
        }
        Err(HeadFail::Bad(e)) => {
            stats.refuse(Refusal::Malformed);
            conn.cancelled();
            tracing::debug!(error = %e, "h3 request");
            if e.is_connection_error() {
                close(&quic, &e);
            } else {
                let _ = send.reset(varint(e.code));
                input.stop(e.code);
            }
            return None;
        }
    };
    let active = Active::new(&conn);
    let with_body = parts.method != http::Method::HEAD;
    let mut body = H3Body { input: &mut input, ended: false, quic: &quic };
    // Kept here, not in the request's guard: the connection has work in
    // hand until a large answer is acknowledged (below).
    let (resp, mut guard) = process(&shared, &conn, parts, &mut body, cx, None).await;
    let body_ended = body.ended;
    let status = guard.status.take();
    // The window grows by the answer's length (as far as the server's
    // budget allows now, and again as it is written; an answer of unknown
    // length asks the full window): a request without an answer yet takes
    // nothing beyond the connection's floor.
    let length = if with_body { http_body::Body::size_hint(resp.body()).upper().unwrap_or(u64::MAX) } else { 0 };
    let want = window.bytes().saturating_add(length);
    let grow = || {
        if let Some(w) = window.grow(want) {
            quic.set_send_window(w);
        }
    };
    grow();
    let result = send_response(&mut send, resp, with_body, |n, zero_copy| {
        // Called first when the head is out: from then on the request
        // counts as answered, not cancelled, however its body ends.
        guard.status = guard.status.or(status);
        grow();
        if n == 0 {
            return;
        }
        let counter = if zero_copy { &stats.h3_body_zero_copy } else { &stats.h3_body_copied };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        guard.count_sent(n);
    })
    .await;
    let answered = guard.sent;
    drop(guard);
    let mut unacked = None;
    match result {
        // Stopped or lost (before its head was out, the guard counted a
        // cancellation): reset when dropped.
        Err(_) => return None,
        // Its body failed: reset already, quinn holds none of it.
        Ok(Ended::Reset) => send.reset_already(),
        // quinn has the answer, not yet the client: until it acknowledges
        // the last byte, a graceful close would cut the answer short, and
        // the connection's window could not go back to the server's budget
        // (send_windows.rs), so the connection keeps work in hand, for the
        // request timeout plus the answer at limits.body_min_rate (the
        // slowest client we serve); past it the answer is reset and the
        // connection closed (a client that does not acknowledge is broken
        // or hostile; its connection's state goes with it).
        Ok(Ended::Finished) => {
            let within = limits.request_timeout.0 + Duration::from_secs_f64(answered as f64 / limits.body_min_rate.0.max(1) as f64);
            let deadline = tokio::time::Instant::now() + within;
            if answered <= SMALL_ANSWER {
                // Waits in the connection's list, the request done.
                unacked = Some(Unacked { send, deadline });
            } else if !send.settle(deadline, &conn, limits.idle_timeout.0 / 2).await {
                quic.close(varint(H3Code::ExcessiveLoad), b"answer not acknowledged");
            }
        }
    }
    drop(active);
    if !body_ended {
        // A GET's stream usually ended with its head: seen without a timer.
        let mut body = H3Body { input: &mut input, ended: false, quic: &quic };
        if !matches!(body.next_chunk().now_or_never(), Some(None)) {
            // Answered without reading the body (a refusal on the head, or a
            // GET that left its stream open): a client that has already sent
            // it whole gets a clean end, not a reset, if what is left is
            // small and comes at once; anything else is stopped.
            drain_unread(&mut body, Duration::from_millis(200)).await;
            input.stop(input.stop_code());
        }
    }
    unacked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unproven_handshakes_past_the_rate_wait_for_the_bucket_to_refill() {
        let t0 = std::time::Instant::now();
        let mut r = UnprovenRate::new(t0);
        let burst = (0..5000).filter(|_| r.take(t0)).count();
        assert_eq!(burst as f64, UNPROVEN_BURST, "a burst of a tenth of a second's worth, then none");
        assert!(!r.take(t0));
        // A tenth of a second later, a tenth of the rate again.
        let t1 = t0 + Duration::from_millis(100);
        let more = (0..5000).filter(|_| r.take(t1)).count();
        assert_eq!(more, (UNPROVEN_PER_SEC / 10.0) as usize);
        // A second at the rate: a second's worth in all, taken as it comes.
        let mut t = t1;
        let mut in_a_second = 0;
        for _ in 0..1000 {
            t += Duration::from_millis(1);
            in_a_second += (0..5).filter(|_| r.take(t)).count();
        }
        assert!((in_a_second as f64 - UNPROVEN_PER_SEC).abs() <= 1.0, "{in_a_second}");
        // A long pause refills to the burst, not beyond.
        let t2 = t + Duration::from_secs(60);
        assert_eq!((0..5000).filter(|_| r.take(t2)).count() as f64, UNPROVEN_BURST);
    }
}
