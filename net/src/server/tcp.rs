//! The TCP listeners: accept (slots, rates, penalties before any TLS work),
//! the TLS handshake gated per core, then hyper's HTTP/1.1 and HTTP/2 under
//! the connection's watchdog (see the parent module's docs for the limits).

#![allow(clippy::wildcard_imports)]

use super::*;

pub(super) async fn accept_tcp(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
    stops: Stops,
) {
    let mut freeze = stops.freeze.clone();
    let mut filter = penalty_filter::PenaltyFilter::new(&slots);
    loop {
        let (sock, peer) = tokio::select! {
            () = filter.due() => {
                filter.apply(&listener, &shared.stats);
                continue;
            }
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: the connection waits in the backlog.
                    tracing::warn!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
            // Frozen: accept nothing more (the kernel's backlog still
            // completes handshakes, as on a hung machine), until stopped.
            () = until(&mut freeze) => { let _ = stop.changed().await; break }
        };
        let permit = match ConnPermit::take(&slots, peer) {
            Ok(p) => p,
            Err(why) => {
                shared.stats.refuse(why);
                // Reset, not closed: no FIN exchange and no TIME_WAIT socket
                // kept a minute per refusal (a reconnecting flood of them
                // costs the kernel's CPU in bursts, ahead of everyone's packets).
                let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
                drop(sock);
                // A turn each, as for the connections taken.
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let _ = socket2::SockRef::from(&sock).set_tcp_notsent_lowat(NOTSENT_LOWAT);
        let (shared2, tls, stop, stops) = (shared.clone(), tls.clone(), stop.clone(), stops.clone());
        TaskGuard::spawn(&shared.stats, async move {
            if stops.run(serve_tcp(sock, peer, tls, shared2, stop, &permit)).await.is_none() {
                tracing::debug!(%peer, "connection cut (kill)");
            }
        });
        // One new connection per turn of the scheduler: a burst of thousands
        // queues in the kernel's backlog, not ahead of the requests of the
        // connections already served (an idle server still accepts at once).
        tokio::task::yield_now().await;
    }
}

/// Bytes a TCP connection may hold written but not yet sent. Past this the
/// response bodies wait in the server, where a cancelled HTTP/2 stream's
/// bytes are dropped: in the kernel's buffer (megabytes, autotuned) they
/// would still go out, and a client that cancels (a lost race, a segment
/// moved to a faster source) would pay for them on a slow link.
const NOTSENT_LOWAT: u32 = 128 << 10;

async fn serve_tcp(
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    permit: &ConnPermit,
) {
    let conn = ConnState::new(permit);
    let mut dog = Box::pin(watchdog(conn.clone(), shared.limits));
    let stats = &shared.stats;
    let (mut stream, protocol) = match tls {
        None => {
            let _gauge = ConnGauge::new(stats, Protocol::Plain);
            if !first_bytes(&sock, &mut dog, &mut stop, stats, permit).await {
                return;
            }
            let cx = RequestContext { peer, protocol: Protocol::Plain };
            conn.keep_alive_h1(&shared.limits);
            let c = shared.h1.serve_connection(TokioIo::new(sock), service(&shared, &conn, cx));
            let close = |c: Pin<&mut _>| GracefulConnection::graceful_shutdown(c);
            return Box::pin(drive(c, close, &conn, dog, &mut stop, stats, permit, true)).await;
        }
        Some(cfg) => {
            // The handshake counts against the header deadline (the watchdog's first one).
            let handshake = tokio::select! {
                r = Box::pin(tls_handshake(sock, cfg, &shared.handshakes)) => Some(r),
                _ = &mut dog => None,
                _ = stop.changed() => return,
            };
            match handshake {
                Some(Ok(s)) => {
                    let p = if s.get_ref().1.alpn_protocol() == Some(b"h2") { Protocol::H2 } else { Protocol::H1 };
                    (s, p)
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    stats.refuse(Refusal::Handshake);
                    permit.slots.strike(permit.key, stats);
                    return;
                }
                None => {
                    stats.refuse(Refusal::Handshake);
                    permit.slots.strike(permit.key, stats);
                    return;
                }
            }
        }
    };
    let _gauge = ConnGauge::new(stats, protocol);
    // Nothing more is built (hyper's connection, its buffers, HTTP/2's
    // tables) until the client sends its first bytes: a connection that
    // never asks anything costs its TLS state only. Bytes that came with the
    // handshake's last flight are already decrypted and waiting.
    // (The hyper connection below is boxed for the same reason: the task of
    // an idle connection is not sized for a connection that is serving.)
    let waiting = stream.get_mut().1.process_new_packets().map(|s| s.plaintext_bytes_to_read()).unwrap_or(1);
    if waiting == 0 && !first_bytes(stream.get_ref().0, &mut dog, &mut stop, stats, permit).await {
        return;
    }
    let cx = RequestContext { peer, protocol };
    if protocol == Protocol::H2 {
        // h2 writes and flushes each frame alone (see coalesce.rs).
        // Its streams run on this task (h2_local.rs), not one task each.
        let exec = h2_local::StreamExec::new(shared.stats.clone());
        let c = shared.h2(exec.clone()).serve_connection(TokioIo::new(WriteCoalescer::new(stream)), service(&shared, &conn, cx));
        let close = |c: Pin<&mut h2_local::WithStreams<_>>| c.graceful_shutdown();
        Box::pin(drive(h2_local::WithStreams::new(c, exec), close, &conn, dog, &mut stop, stats, permit, false)).await
    } else {
        conn.keep_alive_h1(&shared.limits);
        let c = shared.h1.serve_connection(TokioIo::new(stream), service(&shared, &conn, cx));
        let close = |c: Pin<&mut _>| GracefulConnection::graceful_shutdown(c);
        Box::pin(drive(c, close, &conn, dog, &mut stop, stats, permit, true)).await
    }
}

/// Waits until the client has sent something (or the header deadline
/// passes: then counted, and a strike for its address). False: give up.
async fn first_bytes(
    sock: &TcpStream,
    dog: &mut Pin<Box<impl Future<Output = Close>>>,
    stop: &mut watch::Receiver<bool>,
    stats: &ServerStats,
    permit: &ConnPermit,
) -> bool {
    tokio::select! {
        r = sock.readable() => r.is_ok(),
        why = dog.as_mut() => {
            why.count(stats);
            if why == Close::HeaderTimeout {
                permit.slots.strike(permit.key, stats);
            }
            false
        }
        _ = stop.changed() => false,
    }
}

/// A TLS handshake whose CPU step, the ClientHello's key exchange and
/// signature (done inside `into_stream`, synchronously), holds one of the
/// server's `handshakes` permits (one per core) until the task's next turn.
/// A flood of new connections then gets at most that many such steps per
/// turn of the scheduler: the others wait parked, not in the run queue where
/// established connections' requests would queue behind thousands of them.
/// Waiting for the client's bytes holds no permit, so a slow network does
/// not slow other handshakes.
async fn tls_handshake(
    sock: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    gate: &Semaphore,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), sock).await?;
    let accept = {
        let _step = gate.acquire().await.map_err(std::io::Error::other)?;
        let accept = start.into_stream(cfg);
        // Held to the next turn: the steps waiting behind this one stay parked meanwhile.
        tokio::task::yield_now().await;
        accept
    };
    accept.await
}

/// The hyper service of one connection: every request through [`process`],
/// its guard riding on the response body.
fn service(
    shared: &Arc<Shared>,
    conn: &Arc<ConnState>,
    cx: RequestContext,
) -> impl hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send + 'static> + Send + 'static
{
    let (shared, conn) = (shared.clone(), conn.clone());
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let (shared, conn) = (shared.clone(), conn.clone());
        async move {
            let active = Active::new(&conn);
            let (parts, mut body) = req.into_parts();
            let (resp, guard) = process(&shared, &conn, parts, &mut body, cx, Some(active)).await;
            if !HttpBody::is_end_stream(&body) {
                // Refused on its head with its body unread. What is left, if
                // small and already here, is read: HTTP/2 would otherwise
                // reset the stream, and h2 counts such resets of its own
                // towards closing the connection (a busy client refused with
                // 429 a thousand times would be cut as a reset flood).
                drain_unread(&mut body, Duration::from_millis(50)).await;
            }
            Ok::<_, Infallible>(resp.map(|body| Tracked { body, guard }.boxed_unsync()))
        }
    })
}

/// Runs a hyper connection until it ends, closing it gracefully when the
/// watchdog or the server says so.
#[allow(clippy::too_many_arguments)]
async fn drive<C>(
    c: C,
    close: impl Fn(Pin<&mut C>),
    conn: &ConnState,
    mut dog: Pin<Box<impl Future<Output = Close>>>,
    stop: &mut watch::Receiver<bool>,
    stats: &ServerStats,
    permit: &ConnPermit,
    h1: bool,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(c);
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            r = c.as_mut() => {
                if let Err(e) = r {
                    if h2_calmed(&e) {
                        // h2's own checks (resets before a stream was
                        // accepted, too many error resets) ended it: a flood,
                        // its address serves the same penalty as ours.
                        stats.refuse(Refusal::CancelFlood);
                        permit.slots.penalize(permit.key, stats);
                    } else if e.is_timeout() {
                        // hyper's header timer: a head that stopped arriving (or, on
                        // HTTP/1.1 keep-alive, no next request in time).
                        if conn.requests.load(Ordering::Relaxed) == 0 {
                            Close::HeaderTimeout.count(stats);
                            permit.slots.strike(permit.key, stats);
                        } else {
                            Close::Idle.count(stats);
                        }
                    } else if e.is_parse_too_large() {
                        stats.refuse(Refusal::HeadersTooLarge);
                    } else if e.is_parse() {
                        stats.refuse(Refusal::Malformed);
                    }
                    tracing::debug!(error = %e, "connection ended");
                }
                return;
            }
            why = &mut dog, if grace.is_none() && !stopping => {
                why.count(stats);
                if why == Close::HeaderTimeout {
                    permit.slots.strike(permit.key, stats);
                }
                if why == Close::CancelFlood {
                    // Its address may open no connection for a while: a
                    // flood that reconnects at once would go on costing handshakes.
                    permit.slots.penalize(permit.key, stats);
                }
                if h1 && matches!(why, Close::HeaderTimeout | Close::Idle) {
                    // Nothing in hand, and a head may be half in: HTTP/1.1
                    // has no close to announce, and hyper would wait for it.
                    return;
                }
                close(c.as_mut());
                grace = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                close(c.as_mut());
            }
            () = async { if let Some(g) = grace.as_mut() { g.await } }, if grace.is_some() => return,
        }
    }
}

/// Whether an HTTP/2 connection ended because h2 told its peer to calm down
/// (GOAWAY with ENHANCE_YOUR_CALM: a reset or frame flood).
fn h2_calmed(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2e) = s.downcast_ref::<h2::Error>() {
            return h2e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
        }
        source = s.source();
    }
    false
}
