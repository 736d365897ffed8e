//! The guards that own every count of work in hand (docs/ARCHITECTURE.md),
//! released however a request or connection ends, and the connection watchdog.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tranzcast_config::LimitsConfig;

use super::{Body, Protocol};
use crate::limits::{AddressLoad, ClientKey, ConnectionRefusal, ConnectionTable, PenaltyBox, RateLimiter};
use crate::stats::{Refusal, ServerStats};

/// The server's connection slots (total and per address) and the rate at
/// which each address may open connections.
pub(super) struct Slots {
    pub(super) table: Mutex<ConnectionTable>,
    pub(super) rate: Mutex<RateLimiter>,
    /// Connections that ended without a request, per address.
    pub(super) strikes: Mutex<RateLimiter>,
    /// Requests cancelled before their answer, per address (not per
    /// connection: an address's other connections share its budget).
    pub(super) cancels: Mutex<RateLimiter>,
    /// Addresses serving the abuse penalty.
    pub(super) penalties: Mutex<PenaltyBox>,
    /// Requests in hand per address, sharded by address (a lock per request).
    pub(super) load: Vec<Mutex<AddressLoad>>,
    /// The same for health and metrics, whose server-wide budget is small.
    pub(super) exempt_load: Vec<Mutex<AddressLoad>>,
    pub(super) penalty: Duration,
    /// Bumped when an address is penalised: the listeners' socket filters follow.
    pub(super) penalty_changes: tokio::sync::watch::Sender<u64>,
}

/// Health and metrics requests one address may have in hand at once.
pub(super) const EXEMPT_PER_ADDRESS: u32 = 4;
pub(super) const LOAD_SHARDS: usize = 32;

impl Slots {
    pub(super) fn new(limits: &LimitsConfig, max_connections: u32) -> Self {
        let shards = |max: u32| (0..LOAD_SHARDS).map(|_| Mutex::new(AddressLoad::new(max))).collect();
        let cancels_per_s = (limits.max_cancelled_requests / 10).max(1);
        Self {
            table: Mutex::new(ConnectionTable::new(max_connections, limits.max_connections_per_ip.min(max_connections))),
            rate: Mutex::new(RateLimiter::new(limits.connection_rate_per_ip, limits.connection_rate_per_ip.saturating_mul(2), 100_000)),
            strikes: Mutex::new(RateLimiter::new(1, limits.abuse_strikes, 100_000)),
            cancels: Mutex::new(RateLimiter::new(cancels_per_s, limits.max_cancelled_requests, 100_000)),
            penalties: Mutex::new(PenaltyBox::new(100_000)),
            load: shards(limits.max_requests_per_ip),
            exempt_load: shards(EXEMPT_PER_ADDRESS),
            penalty: limits.abuse_penalty.0,
            penalty_changes: tokio::sync::watch::Sender::new(0),
        }
    }

    pub(super) fn open_count(&self) -> u32 {
        self.table.lock().map(|t| t.open_count()).unwrap_or(u32::MAX)
    }

    /// Refuses new connections from `key` for the abuse penalty.
    pub(super) fn penalize(&self, key: ClientKey, stats: &ServerStats) {
        let now = Instant::now();
        if self.penalties.lock().map(|mut p| p.penalize(key, now + self.penalty, now)).unwrap_or(false) {
            stats.penalties.fetch_add(1, Ordering::Relaxed);
            self.penalty_changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether `key` is serving a penalty (nothing is charged).
    pub(super) fn penalized(&self, key: ClientKey) -> bool {
        self.penalties.lock().map(|mut p| p.remaining(key, Instant::now()).is_some()).unwrap_or(false)
    }

    pub(super) fn shard(key: ClientKey) -> usize {
        let h = match key {
            ClientKey::V4(a) => u64::from(a),
            ClientKey::V6(p) => p,
        };
        (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize % LOAD_SHARDS
    }

    /// A connection from `key` ended without a request (a handshake that
    /// failed or stalled, no head in time): past its strikes, the address
    /// serves the abuse penalty (a slowloris or an idle flood that keeps
    /// reconnecting would otherwise cost a handshake per connection forever).
    pub(super) fn strike(&self, key: ClientKey, stats: &ServerStats) {
        let out = self.strikes.lock().map(|mut s| s.check(key, Instant::now()).is_err()).unwrap_or(false);
        if out {
            self.penalize(key, stats);
        }
    }
}

/// A request's place in its address's share of the requests in hand.
pub(super) struct LoadGuard {
    pub(super) slots: Arc<Slots>,
    pub(super) key: ClientKey,
    pub(super) exempt: bool,
}

impl LoadGuard {
    /// A place for a request from `key`, while `free` places are left server-wide.
    pub(super) fn take(slots: &Arc<Slots>, key: ClientKey, exempt: bool, free: u64) -> Option<Self> {
        let shards = if exempt { &slots.exempt_load } else { &slots.load };
        let ok = shards[Slots::shard(key)].lock().map(|mut l| l.start(key, free)).unwrap_or(false);
        ok.then(|| Self { slots: slots.clone(), key, exempt })
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        let shards = if self.exempt { &self.slots.exempt_load } else { &self.slots.load };
        if let Ok(mut l) = shards[Slots::shard(self.key)].lock() {
            l.end(self.key);
        }
    }
}

/// A connection slot, given back when the connection ends.
pub(super) struct ConnPermit {
    pub(super) slots: Arc<Slots>,
    pub(super) key: ClientKey,
}

impl ConnPermit {
    /// Checked before any TLS or QUIC work: a penalty, the address's rate, then a slot.
    pub(super) fn take(slots: &Arc<Slots>, peer: SocketAddr) -> Result<Self, Refusal> {
        let key = ClientKey::of(peer.ip());
        let now = Instant::now();
        if slots.penalties.lock().map(|mut p| p.remaining(key, now).is_some()).unwrap_or(false) {
            return Err(Refusal::Penalized);
        }
        if slots.rate.lock().map(|mut r| r.check(key, now).is_err()).unwrap_or(false) {
            return Err(Refusal::ConnectionRate);
        }
        let mut t = slots.table.lock().unwrap_or_else(|p| p.into_inner());
        match t.open(key) {
            Ok(()) => Ok(Self { slots: slots.clone(), key }),
            Err(ConnectionRefusal::Total) => Err(Refusal::ConnectionsTotal),
            Err(ConnectionRefusal::PerAddress) => Err(Refusal::ConnectionsPerAddress),
        }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.slots.table.lock().unwrap_or_else(|p| p.into_inner()).close(self.key);
    }
}

/// A live task of the server (connection or request), counted until it ends.
pub(super) struct TaskGuard(Arc<ServerStats>);

impl TaskGuard {
    pub(super) fn spawn(stats: &Arc<ServerStats>, fut: impl Future<Output = ()> + Send + 'static) {
        stats.tasks.fetch_add(1, Ordering::Relaxed);
        let guard = TaskGuard(stats.clone());
        // Not kept in a JoinSet: a finished task is freed at once, however
        // many a long-lived connection runs. Boxed first: a request's future
        // is kilobytes, which tokio would otherwise copy at each move into
        // its task (measured: memmove 5% -> 10% of an HTTP/3 server's CPU).
        let fut = Box::pin(fut);
        tokio::spawn(async move {
            let _guard = guard;
            fut.await;
        });
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::AcqRel) <= 1 {
            self.0.tasks_idle.notify_waiters();
        }
    }
}

/// An open connection in the gauge of its protocol.
pub(super) struct ConnGauge(Arc<ServerStats>, Protocol);

impl ConnGauge {
    pub(super) fn new(stats: &Arc<ServerStats>, p: Protocol) -> Self {
        stats.connections[p.index()].fetch_add(1, Ordering::Relaxed);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        Self(stats.clone(), p)
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        self.0.connections[self.1.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection's activity, for its idle and header deadlines and its
/// cancellation budget.
pub(super) struct ConnState {
    pub(super) opened: Instant,
    /// The client's address, and the server's tables it is counted in.
    pub(super) key: ClientKey,
    pub(super) slots: Arc<Slots>,
    /// Requests in hand now.
    pub(super) active: AtomicU32,
    /// Request heads seen.
    pub(super) requests: AtomicU64,
    /// Milliseconds after `opened` of the last request start or end.
    pub(super) last_ms: AtomicU64,
    /// Milliseconds after `opened` when response bytes last went out.
    pub(super) progress_ms: AtomicU64,
    pub(super) flooded: AtomicBool,
    /// How long the connection may wait for its next request once it has
    /// served one: `idle_timeout`, or for HTTP/1.1 `header_read_timeout`
    /// (its next head is due as soon as the last answer is out).
    pub(super) keep_alive_ms: AtomicU64,
    /// A request in hand ended (the h3 connection's drain waits on it).
    pub(super) wake: tokio::sync::Notify,
    /// The cancel budget is spent: the watchdog closes the connection now.
    pub(super) alarm: tokio::sync::Notify,
}

impl ConnState {
    pub(super) fn new(permit: &ConnPermit) -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            key: permit.key,
            slots: permit.slots.clone(),
            active: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            progress_ms: AtomicU64::new(0),
            flooded: AtomicBool::new(false),
            keep_alive_ms: AtomicU64::new(u64::MAX),
            wake: tokio::sync::Notify::new(),
            alarm: tokio::sync::Notify::new(),
        })
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    pub(super) fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// An HTTP/1.1 connection: its next request head is due within
    /// `header_read_timeout` of the last request's end.
    pub(super) fn keep_alive_h1(&self, limits: &LimitsConfig) {
        self.keep_alive_ms.store(limits.header_read_timeout.0.as_millis() as u64, Ordering::Relaxed);
    }

    pub(super) fn progressed(&self) {
        self.progress_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A request cancelled before its answer: spends its address's budget;
    /// once that is spent the connection is told to close.
    pub(super) fn cancelled(&self) {
        let ok = self.slots.cancels.lock().map(|mut b| b.check(self.key, Instant::now()).is_ok()).unwrap_or(false);
        if !ok && !self.flooded.swap(true, Ordering::Relaxed) {
            self.alarm.notify_one();
        }
    }
}

/// A request in hand on a connection (the idle deadline waits while any is).
pub(super) struct Active(Arc<ConnState>);

impl Active {
    pub(super) fn new(conn: &Arc<ConnState>) -> Self {
        conn.requests.fetch_add(1, Ordering::Relaxed);
        conn.touch();
        conn.active.fetch_add(1, Ordering::AcqRel);
        Self(conn.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.wake.notify_one();
        }
    }
}

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// No handshake or first request head in time.
    HeaderTimeout,
    /// Nothing in hand for `idle_timeout`.
    Idle,
    /// Too many requests cancelled before their answer.
    CancelFlood,
    /// Requests in hand and not a byte of answer sent for `idle_timeout`
    /// (a client that stopped reading, or never grants flow-control credit).
    Stalled,
}

impl Close {
    pub(super) fn count(self, stats: &ServerStats) {
        match self {
            Close::HeaderTimeout => stats.refuse(Refusal::HeaderTimeout),
            Close::CancelFlood => stats.refuse(Refusal::CancelFlood),
            Close::Stalled => stats.refuse(Refusal::Stalled),
            Close::Idle => {
                stats.closed_idle.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Resolves when the connection should be closed: no first request head
/// within the header timeout, nothing in hand for the idle timeout, requests
/// in hand with no answer byte going out for the idle timeout, or its
/// address's cancellation budget spent. Sleeps until the next deadline.
pub(super) async fn watchdog(conn: Arc<ConnState>, limits: LimitsConfig) -> Close {
    loop {
        if conn.flooded.load(Ordering::Relaxed) {
            return Close::CancelFlood;
        }
        let now = Instant::now();
        let busy = conn.active.load(Ordering::Acquire) > 0;
        let last = conn.last_ms.load(Ordering::Relaxed).max(if busy { conn.progress_ms.load(Ordering::Relaxed) } else { 0 });
        let deadline = if busy {
            conn.opened + Duration::from_millis(last) + limits.idle_timeout.0
        } else if conn.requests.load(Ordering::Relaxed) > 0 {
            let keep_alive = limits.idle_timeout.0.min(Duration::from_millis(conn.keep_alive_ms.load(Ordering::Relaxed)));
            conn.opened + Duration::from_millis(last) + keep_alive
        } else {
            conn.opened + limits.header_read_timeout.0
        };
        if deadline <= now {
            return match (busy, conn.requests.load(Ordering::Relaxed)) {
                (true, _) => Close::Stalled,
                (false, 0) => Close::HeaderTimeout,
                (false, _) => Close::Idle,
            };
        }
        // Activity only moves a deadline later (a request's start or end, an
        // answer's bytes), so the watchdog is not woken by it: it sleeps to
        // the deadline it computed and looks again then, instead of setting
        // and cancelling a timer twice per request of a keep-alive
        // connection. Capped at the shorter limit in case the idle limit is
        // configured below the header limit.
        let wake_at = deadline.min(now + limits.idle_timeout.0.min(limits.header_read_timeout.0));
        tokio::select! {
            () = tokio::time::sleep_until(wake_at.into()) => {}
            () = conn.alarm.notified() => {}
        }
    }
}

/// Request body bytes held in memory, given back with the request.
#[derive(Default)]
pub(super) struct BodyHold {
    pub(super) permits: Option<OwnedSemaphorePermit>,
    pub(super) bytes: i64,
    pub(super) stats: Option<Arc<ServerStats>>,
}

impl BodyHold {
    /// Takes `n` more bytes of the server's body memory, if there are.
    pub(super) fn take(&mut self, memory: &Arc<Semaphore>, stats: &Arc<ServerStats>, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(n32) = u32::try_from(n) else { return false };
        match memory.clone().try_acquire_many_owned(n32) {
            Ok(p) => {
                match &mut self.permits {
                    Some(held) => held.merge(p),
                    None => self.permits = Some(p),
                }
                self.bytes += n as i64;
                stats.body_bytes_held.fetch_add(n as i64, Ordering::Relaxed);
                self.stats = Some(stats.clone());
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        if let Some(s) = &self.stats {
            s.body_bytes_held.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// A request in hand: counted from arrival until its response body ends or
/// is dropped, whichever way the request ends (answered, cancelled, reset,
/// timed out, connection lost). Also records the request's metrics, and a
/// request dropped before its answer as a cancellation of its connection.
pub(super) struct InFlight {
    pub(super) stats: Arc<ServerStats>,
    pub(super) conn: Arc<ConnState>,
    pub(super) protocol: Protocol,
    pub(super) exempt: bool,
    pub(super) started: Instant,
    /// Set once the response head is out (or handed to hyper to send).
    pub(super) status: Option<StatusCode>,
    pub(super) sent: u64,
    /// Its server-wide place given back already ([`InFlight::leave`]).
    left: bool,
    pub(super) _body: BodyHold,
    pub(super) _active: Option<Active>,
    pub(super) _load: Option<LoadGuard>,
}

impl InFlight {
    pub(super) fn new(stats: &Arc<ServerStats>, conn: &Arc<ConnState>, protocol: Protocol, exempt: bool, active: Option<Active>) -> Self {
        let counter = if exempt { &stats.exempt_in_flight } else { &stats.in_flight };
        counter.fetch_add(1, Ordering::AcqRel);
        Self {
            stats: stats.clone(),
            conn: conn.clone(),
            protocol,
            exempt,
            started: Instant::now(),
            status: None,
            sent: 0,
            left: false,
            _body: BodyHold::default(),
            _active: active,
            _load: None,
        }
    }

    /// Gives the request's server-wide place back now, before its answer
    /// is out (a refusal that holds nothing else).
    pub(super) fn leave(&mut self) {
        if !std::mem::replace(&mut self.left, true) {
            let counter = if self.exempt { &self.stats.exempt_in_flight } else { &self.stats.in_flight };
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(super) fn answered(&mut self, status: StatusCode) {
        self.status = Some(status);
        self.stats.observe_head(self.protocol, self.started.elapsed());
    }

    pub(super) fn count_sent(&mut self, n: usize) {
        self.sent += n as u64;
        self.stats.sent(n as u64);
        self.conn.progressed();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.leave();
        match self.status {
            Some(s) => self.stats.finished(self.protocol, s, self.sent, self.started.elapsed()),
            // Dropped by a panic before its head was out: the server's
            // failure, not a cancellation for the client's budget.
            None if std::thread::panicking() => {
                self.stats.finished(self.protocol, http::StatusCode::INTERNAL_SERVER_ERROR, self.sent, self.started.elapsed())
            }
            None => self.conn.cancelled(),
        }
    }
}

/// A response body that holds its request's [`InFlight`] until it ends or
/// is dropped, and counts what it sends.
pub(super) struct Tracked {
    pub(super) body: Body,
    pub(super) guard: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        // A body that panics ends its answer with an error (HTTP/2 resets
        // the stream, HTTP/1.1 closes the connection), counted and logged;
        // not the connection's other streams.
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Pin::new(&mut this.body).poll_frame(cx))) {
            Ok(r) => r,
            Err(payload) => {
                this.guard.stats.panicked(this.guard.protocol, "body", &*payload);
                Poll::Ready(Some(Err(std::io::Error::other("the answer's body failed"))))
            }
        };
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            this.guard.count_sent(d.len());
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
