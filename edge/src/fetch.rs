//! The miss path: one upstream fetch per blob however many requests wait for
//! it (the patent's request queue served en masse), verified per 16 KiB
//! group as it arrives, streamed to every waiter as it is verified.
//!
//! A flight first gets the blob's outboard from a source and checks it
//! merges to the address, so the length is known at once (range answers can
//! start) and every group can be checked on arrival. A source that sends a
//! bad group, fails or stalls is demoted for a while and the fetch resumes
//! at the next source from the last verified byte (`Range: bytes=N-`).
//! Sources: the parents (configured, or the origin's nodes when none are),
//! best first by their last pulse (healthy, low round trip, little load),
//! then the origin. Only a wholly verified blob is stored.
//!
//! A flight runs in a task of its own, not in the request that started it:
//! a starter that is cancelled (a reset stream, a closed connection) never
//! strands its entry, and the entry goes away when the fetch ends, however
//! it ends. A flight is not stopped when its waiters leave: a player reads a
//! blob in ranges, one request after another, and the next range should
//! find the blob arriving or stored, not start over. What bounds the work
//! instead: at most `limits.max_flights` flights at once (503 above), an
//! eighth of them started by any one client address (the cluster's own
//! servers excepted), and every upstream step has a timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::watch;
use tranzcast_net::limits::ClientKey;
use tranzcast_proto::BlobAddress;
use tranzcast_proto::fetch::{self, BodyFetch, Miss};
use tranzcast_proto::outboard::{GROUP_LEN, GroupVerifier, Outboard};
use tranzcast_proto::pulse::{Health, Pulse};

/// How long a demoted source is skipped.
const DEMOTION: Duration = Duration::from_secs(60);
/// A parent's pulse (without a title: no segment bitmap) is a few hundred bytes.
const PULSE_ANSWER: usize = 64 << 10;

/// Progress of one flight, broadcast to its waiters.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Bytes verified so far (a prefix of the blob).
    verified: u64,
    /// Set once: Ok when the whole blob is verified, Err with a reason when every source failed.
    done: Option<Result<(), String>>,
}

/// One blob being fetched.
pub struct Flight {
    /// The blob's length (from its verified outboard).
    pub len: u64,
    /// Its verified outboard (served to clients that verify per group).
    pub outboard: Outboard,
    groups: Mutex<Vec<Bytes>>,
    progress: watch::Sender<Progress>,
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight").field("len", &self.len).finish_non_exhaustive()
    }
}

impl Flight {
    /// Waits until the first `n` bytes (at most the length) are verified, and returns them.
    pub async fn prefix(&self, n: u64) -> Result<Bytes, String> {
        let want = n.min(self.len);
        let mut rx = self.progress.subscribe();
        loop {
            {
                let p = rx.borrow_and_update();
                if p.verified >= want {
                    break;
                }
                if let Some(Err(e)) = &p.done {
                    return Err(e.clone());
                }
            }
            rx.changed().await.map_err(|_| "fetch abandoned".to_string())?;
        }
        Ok(if want == 0 { Bytes::new() } else { self.slice(0, want).unwrap_or_default() })
    }

    fn slice(&self, pos: u64, end: u64) -> Option<Bytes> {
        let g = (pos / GROUP_LEN) as usize;
        let groups = crate::lock(&self.groups);
        let group = groups.get(g)?;
        let off = (pos % GROUP_LEN) as usize;
        let stop = ((end - g as u64 * GROUP_LEN) as usize).min(group.len());
        (off < stop).then(|| group.slice(off..stop))
    }
}

/// An `Arc<Flight>` as a range source: waits on the progress channel.
#[derive(Debug)]
pub struct FlightSource(pub Arc<Flight>);

impl tranzcast_net::ranged::Source for FlightSource {
    fn stream(&self, start: u64, end: u64) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        let flight = self.0.clone();
        let rx = flight.progress.subscribe();
        futures_util::stream::unfold((flight, rx, start), move |(flight, mut rx, pos)| async move {
            loop {
                if pos >= end {
                    return None;
                }
                let (verified, failed) = {
                    let p = rx.borrow_and_update();
                    (p.verified, p.done.as_ref().and_then(|d| d.as_ref().err().cloned()))
                };
                if pos < verified {
                    let b = flight.slice(pos, end.min(verified))?;
                    let next = pos + b.len() as u64;
                    return Some((Ok(b), (flight, rx, next)));
                }
                if let Some(reason) = failed {
                    return Some((Err(std::io::Error::other(reason)), (flight, rx, end)));
                }
                if rx.changed().await.is_err() {
                    return Some((Err(std::io::Error::other("fetch abandoned")), (flight, rx, end)));
                }
            }
        })
        .boxed()
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct FetchStats {
    /// Upstream fetches started (one per flight).
    pub flights: std::sync::atomic::AtomicU64,
    /// Requests that joined a flight already in the air.
    pub coalesced: std::sync::atomic::AtomicU64,
    /// Sources demoted for bad bytes, errors or stalls.
    pub demoted: std::sync::atomic::AtomicU64,
}

/// Why a blob could not be had from upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No source has it.
    NotFound,
    /// `limits.max_flights` fetches are in the air: try again shortly.
    Busy,
    /// Every source failed; the last reason.
    Upstream(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound => f.write_str("no source has it"),
            FetchError::Busy => f.write_str("too many upstream fetches in the air"),
            FetchError::Upstream(e) => f.write_str(e),
        }
    }
}

/// A flight in the table: resolved once its outboard is known (or every source failed).
type Starting = watch::Receiver<Option<Result<Arc<Flight>, FetchError>>>;

/// A flight's place in the table, removed when the flight's task ends.
struct Entry {
    fetcher: Arc<Fetcher>,
    addr: BlobAddress,
    starter: Option<ClientKey>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        crate::lock(&self.fetcher.flights).remove(&self.addr);
        let mut by = crate::lock(&self.fetcher.started_by);
        if let Some(key) = self.starter
            && let Some(n) = by.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                by.remove(&key);
            }
        }
    }
}

/// The single-flight table and the upstream sources.
pub struct Fetcher {
    http: reqwest::Client,
    /// Parent nodes, best first after each probe.
    parents: std::sync::RwLock<Vec<String>>,
    /// The cluster's origins (tried after the parents, in this order).
    origins: Vec<String>,
    /// Last probe of each parent: round trip and requests in flight there; None if it failed.
    probes: Mutex<HashMap<String, Option<(Duration, i64)>>>,
    /// This server's URL, sent to parents so a node knows where to push hot segments.
    pub me: std::sync::OnceLock<String>,
    cluster_token: String,
    timeout: Duration,
    max_flights: usize,
    flights: Mutex<HashMap<BlobAddress, Starting>>,
    /// Flights in the air by the client address that started them.
    started_by: Mutex<HashMap<ClientKey, usize>>,
    demoted: Mutex<HashMap<String, Instant>>,
    /// Pull tasks, so shutdown can wait for them (they hold the store).
    tasks: Mutex<tokio::task::JoinSet<()>>,
    /// The server's main runtime, where pulls and other work that outlives
    /// a request run: a request may be served on an HTTP/3 endpoint's own
    /// runtime, which ends with the listener (before the pulls are drained)
    /// and whose thread carries that endpoint's every packet.
    pub runtime: tokio::runtime::Handle,
    /// Counters.
    pub stats: FetchStats,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("origins", &self.origins).finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Parents are tried before the origins. Called on the server's main
    /// runtime, where pulls will run.
    pub fn new(
        http: reqwest::Client,
        parents: Vec<String>,
        origins: Vec<String>,
        cluster_token: String,
        timeout: Duration,
        max_flights: usize,
    ) -> Self {
        Self {
            http,
            parents: std::sync::RwLock::new(parents),
            origins,
            probes: Mutex::default(),
            me: std::sync::OnceLock::new(),
            cluster_token,
            timeout,
            max_flights: max_flights.max(1),
            flights: Mutex::default(),
            started_by: Mutex::default(),
            demoted: Mutex::default(),
            tasks: Mutex::default(),
            runtime: tokio::runtime::Handle::current(),
            stats: FetchStats::default(),
        }
    }

    fn demote(&self, source: &str, why: &str) {
        tracing::warn!(%source, why, "source demoted");
        self.stats.demoted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::lock(&self.demoted).insert(source.to_string(), Instant::now());
    }

    /// Parents by their last pulse, then the origin; demoted sources last.
    fn ordered_sources(&self) -> Vec<String> {
        let now = Instant::now();
        let demoted = crate::lock(&self.demoted).clone();
        let mut sources = crate::read(&self.parents).clone();
        sources.extend(self.origins.iter().cloned());
        let (good, bad): (Vec<_>, Vec<_>) =
            sources.into_iter().partition(|s| demoted.get(s).is_none_or(|t| now.duration_since(*t) > DEMOTION));
        good.into_iter().chain(bad).collect()
    }

    /// Every source in the order a fetch tries them.
    pub fn sources(&self) -> Vec<String> {
        self.ordered_sources()
    }

    /// Whether `source` is one of the origins (which hold the whole catalog).
    pub fn is_origin(&self, source: &str) -> bool {
        self.origins.iter().any(|o| o == source)
    }

    /// Replaces the parent set (learned from the origin's cluster view).
    pub fn set_parents(&self, parents: Vec<String>) {
        let mut p = crate::write(&self.parents);
        if *p != parents {
            tracing::info!(?parents, "parents changed");
            *p = parents;
        }
    }

    /// Pulses every parent and orders them: answering ones first, by round
    /// trip plus a millisecond per request in flight there (a busy parent is
    /// slower whatever its distance); silent ones last.
    pub async fn probe_parents(&self) {
        let parents = crate::read(&self.parents).clone();
        let probes = futures_util::future::join_all(parents.iter().map(|p| async move {
            let t = Instant::now();
            let limits = tranzcast_net::client::CallLimits { answer: self.timeout, total: self.timeout * 2, max_body: PULSE_ANSWER };
            let pulse = match tranzcast_net::client::call(self.http.get(format!("{p}/v1/pulse")), limits).await {
                Ok((status, b)) if status.is_success() => Pulse::parse(&b).ok(),
                _ => None,
            };
            let probe =
                pulse.filter(|v| v.health == Health::Ok).map(|v| (t.elapsed(), i64::try_from(v.load.in_flight).unwrap_or(i64::MAX)));
            (p.clone(), probe)
        }))
        .await;
        let score = |p: &Option<(Duration, i64)>| p.map_or(u128::MAX, |(rtt, busy)| rtt.as_micros() + busy.max(0) as u128 * 1000);
        let mut ordered = probes.clone();
        ordered.sort_by_key(|(_, p)| score(p));
        {
            let mut p = crate::write(&self.parents);
            // Only reorder the set probed (it may have changed meanwhile).
            if p.len() == ordered.len() && ordered.iter().all(|(u, _)| p.contains(u)) {
                *p = ordered.iter().map(|(u, _)| u.clone()).collect();
            }
        }
        *crate::lock(&self.probes) = probes.into_iter().collect();
    }

    /// The parents with their last probe (round trip, in flight), best first.
    pub fn parent_view(&self) -> Vec<(String, Option<(Duration, i64)>)> {
        let probes = crate::lock(&self.probes).clone();
        crate::read(&self.parents).clone().into_iter().map(|u| (u.clone(), probes.get(&u).copied().flatten())).collect()
    }

    /// Whether a fetch of `addr` is in the air.
    pub fn is_in_air(&self, addr: &BlobAddress) -> bool {
        crate::lock(&self.flights).contains_key(addr)
    }

    fn upstream(&self, url: String) -> reqwest::RequestBuilder {
        let req = self.http.get(url).bearer_auth(&self.cluster_token);
        match self.me.get() {
            Some(me) => req.header("x-tranzcast-edge", me),
            None => req,
        }
    }

    /// Joins the flight for `addr`, starting it if none is in the air. Returns
    /// once the length is known; bytes then stream through [`FlightSource`].
    /// `store` is called with the whole verified blob at the end. `held`
    /// looks in the store once more before a new flight goes upstream: a
    /// request that missed the store just before the last flight of this blob
    /// stored it and left the table would otherwise fetch it a second time.
    /// `starter` is the client's address (None for the cluster's own servers
    /// and for prefetches): one address may start an eighth of the flights at
    /// most, counted as the server's limits count addresses (an IPv6 /64 as
    /// one: a client holds the whole /64).
    pub async fn join(
        self: &Arc<Self>,
        addr: BlobAddress,
        starter: Option<std::net::IpAddr>,
        store: impl FnOnce(Bytes, Outboard) + Send + 'static,
        held: impl FnOnce() -> Option<(Bytes, Outboard)> + Send + 'static,
    ) -> Result<Arc<Flight>, FetchError> {
        let starter = starter.map(ClientKey::of);
        let (mut rx, new) = {
            let mut f = crate::lock(&self.flights);
            match f.get(&addr) {
                Some(rx) => {
                    self.stats.coalesced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    (rx.clone(), None)
                }
                None if f.len() >= self.max_flights => return Err(FetchError::Busy),
                None => {
                    if let Some(key) = starter {
                        let mut by = crate::lock(&self.started_by);
                        let n = by.entry(key).or_insert(0);
                        if *n >= (self.max_flights / 8).max(1) {
                            return Err(FetchError::Busy);
                        }
                        *n += 1;
                    }
                    let (tx, rx) = watch::channel(None);
                    f.insert(addr, rx.clone());
                    // Made before the task: however it ends (done, failed,
                    // aborted at shutdown, even before its first poll, or
                    // dropped unpolled by a runtime that is shutting down),
                    // the entry leaves the table.
                    (rx, Some((tx, Entry { fetcher: self.clone(), addr, starter })))
                }
            }
        };
        // Spawned with the table unlocked: a task dropped at once drops its
        // entry, which locks the table.
        if let Some((tx, entry)) = new {
            let me = self.clone();
            let mut tasks = crate::lock(&self.tasks);
            // Reap finished flights so the set does not grow.
            while tasks.try_join_next().is_some() {}
            tasks.spawn_on(
                async move {
                    let _entry = entry;
                    me.fly(addr, tx, store, held).await;
                },
                &self.runtime,
            );
        }
        let r = rx.wait_for(Option::is_some).await.map_err(|_| FetchError::Upstream("fetch abandoned".into()))?.clone();
        r.unwrap_or_else(|| Err(FetchError::Upstream("fetch abandoned".into())))
    }

    /// One flight from start to end: outboard, body, store.
    async fn fly(
        self: &Arc<Self>,
        addr: BlobAddress,
        started: watch::Sender<Option<Result<Arc<Flight>, FetchError>>>,
        store: impl FnOnce(Bytes, Outboard) + Send + 'static,
        held: impl FnOnce() -> Option<(Bytes, Outboard)> + Send + 'static,
    ) {
        // Stored meanwhile: served from there, nothing upstream (the store
        // verified it against its address on the way out).
        if let Ok(Some((bytes, outboard))) = tokio::task::spawn_blocking(held).await
            && outboard.len == bytes.len() as u64
        {
            let len = outboard.len;
            let groups = bytes.chunks(GROUP_LEN as usize).map(|g| bytes.slice_ref(g)).collect();
            let progress = watch::channel(Progress { verified: len, done: Some(Ok(())) }).0;
            started.send_replace(Some(Ok(Arc::new(Flight { len, outboard, groups: Mutex::new(groups), progress }))));
            return;
        }
        self.stats.flights.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let flight = match self.start(addr).await {
            Ok(f) => f,
            Err(e) => {
                started.send_replace(Some(Err(e)));
                return;
            }
        };
        started.send_replace(Some(Ok(flight.clone())));
        let result = self.pull(&addr, &flight.outboard, &flight).await;
        let groups: Option<Vec<Bytes>> = if result.is_ok() { Some(crate::lock(&flight.groups).clone()) } else { None };
        let mut result = result;
        if let Some(groups) = groups {
            let mut all = BytesMut::with_capacity(flight.len as usize);
            for g in groups {
                all.extend_from_slice(&g);
            }
            if all.len() as u64 == flight.len {
                let ob = flight.outboard.clone();
                let _ = tokio::task::spawn_blocking(move || store(all.freeze(), ob)).await;
            } else {
                // Never expected: the groups in hand are not the blob.
                result = Err(format!("assembled {} bytes of a {}-byte blob", all.len(), flight.len));
            }
        }
        flight.progress.send_modify(|p| p.done = Some(result));
    }

    async fn outboard_from(&self, source: &str, addr: &BlobAddress) -> Result<Outboard, Miss> {
        let mut r = tokio::time::timeout(self.timeout, self.upstream(format!("{source}/v1/outboards/{addr}")).send())
            .await
            .map_err(|_| Miss::Unreachable("timeout".into()))?
            .map_err(|e| Miss::Unreachable(e.to_string()))?;
        let status = r.status().as_u16();
        let b = if status == 200 {
            tokio::time::timeout(
                self.timeout,
                tranzcast_net::client::read_body(&mut r, tranzcast_proto::outboard::MAX_ENCODED, self.timeout),
            )
            .await
            .map_err(|_| Miss::Unreachable("timeout".into()))?
            .map_err(|e| Miss::Unreachable(e.to_string()))?
        } else {
            Bytes::new()
        };
        fetch::outboard(addr, status, &b).map(|v| v.outboard().clone())
    }

    /// Finds a source with the blob's outboard, checked against the address.
    async fn start(&self, addr: BlobAddress) -> Result<Arc<Flight>, FetchError> {
        let mut last = FetchError::Upstream("no sources".into());
        let mut outboard = None;
        for s in self.ordered_sources() {
            match self.outboard_from(&s, &addr).await {
                Ok(ob) => {
                    outboard = Some(ob);
                    break;
                }
                Err(Miss::NotThere) => last = FetchError::NotFound,
                Err(e) => {
                    self.demote(&s, &e.to_string());
                    last = FetchError::Upstream(format!("{s}: {e}"));
                }
            }
        }
        // The last source tried (the origin, unless demoted) has the last word.
        let outboard = outboard.ok_or(last)?;
        Ok(Arc::new(Flight {
            len: outboard.len,
            outboard,
            groups: Mutex::new(Vec::new()),
            progress: watch::channel(Progress::default()).0,
        }))
    }

    /// Flights in the air (upstream fetches being waited on).
    pub fn in_air(&self) -> usize {
        crate::lock(&self.flights).len()
    }

    /// Waits for every flight in progress to finish (and store what it
    /// fetched), for at most `within`; the flights left then are aborted.
    pub async fn drain(&self, within: Duration) {
        let mut set = std::mem::take(&mut *crate::lock(&self.tasks));
        if tokio::time::timeout(within, async { while set.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!(flights = set.len(), "upstream fetches still running at shutdown: aborted");
            set.shutdown().await;
        }
    }

    /// Pulls the body, resuming at the next source after any failure.
    async fn pull(&self, addr: &BlobAddress, ob: &Outboard, f: &Flight) -> Result<(), String> {
        let mut last = String::new();
        for s in self.ordered_sources() {
            let from = f.progress.borrow().verified;
            if from >= f.len && f.len > 0 {
                return Ok(());
            }
            match self.pull_from(&s, addr, ob, f, from).await {
                Ok(()) => return Ok(()),
                // (Its outboard said it holds the blob: a 404 now is a fault too.)
                Err(e) => {
                    self.demote(&s, &e.to_string());
                    last = format!("{s}: {e}");
                }
            }
        }
        Err(format!("every source failed; last: {last}"))
    }

    async fn pull_from(&self, source: &str, addr: &BlobAddress, ob: &Outboard, f: &Flight, from: u64) -> Result<(), Miss> {
        let verifier = GroupVerifier::new(*addr, ob.clone()).map_err(|e| Miss::Lied(e.to_string()))?;
        // Resume where the flight's verified bytes end: skip what is in hand.
        let mut fetch = BodyFetch::new(verifier, from, None)?;
        let mut req = self.upstream(format!("{source}/v1/blobs/{addr}"));
        if let Some(range) = fetch.range() {
            req = req.header("range", range);
        }
        // The whole pull is bounded too, not only each wait for a chunk: a
        // source that sends a byte every few seconds would otherwise hold
        // the flight (and its place in the table) for months.
        let deadline = Instant::now() + pull_deadline(self.timeout, f.len.saturating_sub(from));
        let r = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| Miss::Unreachable("timeout".into()))?
            .map_err(|e| Miss::Unreachable(e.to_string()))?;
        fetch.answered(r.status().as_u16())?;
        let mut body = r.bytes_stream();
        loop {
            let wait = self.timeout.min(deadline.saturating_duration_since(Instant::now()));
            let chunk = tokio::time::timeout(wait, body.next()).await.map_err(|_| {
                if Instant::now() >= deadline {
                    Miss::Unreachable(format!("slower than {} KiB/s", UPSTREAM_MIN_RATE >> 10))
                } else {
                    Miss::Unreachable("stalled".into())
                }
            })?;
            let Some(c) = chunk else { return fetch.finish() };
            let c = c.map_err(|e| Miss::Unreachable(e.to_string()))?;
            let pushed = fetch.push(&c, |offset, group| {
                let mut groups = crate::lock(&f.groups);
                // Groups are handed on in order from where the flight's
                // verified bytes end; anything else is not this blob's next group.
                if offset == groups.len() as u64 * GROUP_LEN {
                    groups.push(Bytes::copy_from_slice(group));
                }
            });
            // Published before a lie is returned: the groups of this chunk
            // that matched are in hand, and the next source resumes after them.
            let verified = fetch.verified();
            f.progress.send_modify(|p| p.verified = verified);
            pushed?;
            if fetch.is_done() {
                return Ok(());
            }
        }
    }
}

/// The slowest a source may send a blob and keep its flight: a source
/// slower than this (a stalled or hostile node) is left for the next one.
const UPSTREAM_MIN_RATE: u64 = 64 << 10;

/// How long one source may take for `bytes`: its answer and first bytes
/// within `timeout` (twice, as slack for a slow start), the rest at
/// `UPSTREAM_MIN_RATE` at least.
fn pull_deadline(timeout: Duration, bytes: u64) -> Duration {
    timeout * 2 + Duration::from_secs(bytes.div_ceil(UPSTREAM_MIN_RATE))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tranzcast_net::ranged::Source as _;

    /// A fetcher whose only source is a closed port on loopback: anything
    /// that goes upstream fails.
    fn fetcher() -> Arc<Fetcher> {
        let ca = tranzcast_net::LocalCa::generate().unwrap();
        let http = tranzcast_net::client::https(ca.cert_pem().as_bytes()).unwrap();
        Arc::new(Fetcher::new(http, vec![], vec!["https://127.0.0.1:1".into()], "t".into(), Duration::from_secs(2), 8))
    }

    #[tokio::test]
    async fn a_blob_stored_meanwhile_is_served_from_the_store_without_going_upstream() {
        let blob = Bytes::from((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let (addr, ob) = Outboard::compute(&blob);
        let f = fetcher();
        let stored = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stored.clone();
        let (b2, ob2) = (blob.clone(), ob.clone());
        let flight =
            f.join(addr, None, move |_, _| s2.store(true, std::sync::atomic::Ordering::SeqCst), move || Some((b2, ob2))).await.unwrap();
        let got: Vec<Bytes> = FlightSource(flight.clone()).stream(0, flight.len).map(Result::unwrap).collect().await;
        assert_eq!(got.concat(), blob.to_vec());
        assert_eq!(f.stats.flights.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing went upstream");
        assert!(!stored.load(std::sync::atomic::Ordering::SeqCst), "not stored twice");
        // The entry left the table with the flight's task.
        for _ in 0..100 {
            if f.in_air() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(f.in_air(), 0);
        // Not held: it goes upstream (and fails there, the port is closed).
        let missing = f.join(BlobAddress::of(b"other"), None, |_, _| {}, || None).await;
        assert!(missing.is_err());
        assert_eq!(f.stats.flights.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// What a plain HTTP/1.1 source on loopback answers: a blob path and
    /// the first byte of its `Range` (if any) in, the answer's bytes out,
    /// written by the handler (so it can send them how it likes).
    type Answer = Box<dyn Fn(&str, u64, tokio::net::TcpStream) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

    async fn source(answer: Answer) -> String {
        use tokio::io::AsyncReadExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&b[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let from = head
                        .lines()
                        .find_map(|l| l.strip_prefix("range: bytes="))
                        .and_then(|r| r.split('-').next()?.trim().parse().ok())
                        .unwrap_or(0);
                    answer(&path, from, sock).await;
                });
            }
        });
        url
    }

    /// An honest answer: the outboard, or the blob from `from` (206 when ranged).
    async fn honest(path: &str, from: u64, mut sock: tokio::net::TcpStream, blob: &[u8], ob: &Outboard) {
        use tokio::io::AsyncWriteExt;
        let (status, body) = if path.starts_with("/v1/outboards/") {
            ("200 OK", ob.encode())
        } else if from > 0 {
            ("206 Partial Content", blob[from as usize..].to_vec())
        } else {
            ("200 OK", blob.to_vec())
        };
        let range = if status.starts_with("206") {
            format!("content-range: bytes {from}-{}/{}\r\n", blob.len() - 1, blob.len())
        } else {
            String::new()
        };
        let head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n{range}connection: close\r\n\r\n", body.len());
        let _ = sock.write_all(&[head.as_bytes(), &body].concat()).await;
        let _ = sock.shutdown().await;
    }

    /// A source that answers every request honestly.
    async fn honest_source(blob: Bytes, ob: Outboard) -> String {
        source(Box::new(move |path, from, sock| {
            let (b, ob, path) = (blob.clone(), ob.clone(), path.to_string());
            Box::pin(async move { honest(&path, from, sock, &b, &ob).await })
        }))
        .await
    }

    /// A fetcher that tries `parent` first, then `origin`.
    fn fetcher_of(parent: String, origin: String, timeout: Duration) -> Arc<Fetcher> {
        Arc::new(Fetcher::new(reqwest::Client::new(), vec![parent], vec![origin], "t".into(), timeout, 8))
    }

    /// The flight's bytes, and what it stored.
    async fn fetch_all(f: &Arc<Fetcher>, addr: BlobAddress) -> (Vec<u8>, Option<Bytes>) {
        let stored = Arc::new(Mutex::new(None));
        let s2 = stored.clone();
        let flight = f.join(addr, None, move |b, _| *s2.lock().unwrap() = Some(b), || None).await.unwrap();
        let got: Vec<Bytes> = FlightSource(flight.clone()).stream(0, flight.len).map(Result::unwrap).collect().await;
        // Stored just before the flight says it is done.
        let mut rx = flight.progress.subscribe();
        let _ = rx.wait_for(|p| p.done.is_some()).await;
        let kept = stored.lock().unwrap().take();
        (got.concat(), kept)
    }

    #[tokio::test]
    async fn a_source_that_lies_after_a_good_group_in_the_same_chunk_is_resumed_after_that_group() {
        // Two groups, the second short: one chunk holds the first group's
        // end and the whole (corrupt) second one, however the reads fall.
        let blob = Bytes::from((0..GROUP_LEN as u32 + 100).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let (addr, ob) = Outboard::compute(&blob);
        let (b1, ob1) = (blob.clone(), ob.clone());
        let liar = source(Box::new(move |path, from, sock| {
            let mut bad = b1.to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            let ob = ob1.clone();
            let path = path.to_string();
            Box::pin(async move { honest(&path, from, sock, &bad, &ob).await })
        }))
        .await;
        let good = honest_source(blob.clone(), ob.clone()).await;
        let f = fetcher_of(liar, good, Duration::from_secs(2));
        let (got, stored) = fetch_all(&f, addr).await;
        assert_eq!(f.stats.demoted.load(std::sync::atomic::Ordering::SeqCst), 1, "the liar was not caught");
        assert!(got == blob[..], "served bytes differ from the blob ({} bytes against {})", got.len(), blob.len());
        assert!(stored.is_some_and(|b| b == blob), "the verified blob was not stored whole");
    }

    #[tokio::test]
    async fn a_source_that_drips_is_left_at_its_deadline_not_waited_on_chunk_by_chunk() {
        use tokio::io::AsyncWriteExt;
        let blob = Bytes::from((0..GROUP_LEN as u32 + 100).map(|i| (i % 241) as u8).collect::<Vec<_>>());
        let (addr, ob) = Outboard::compute(&blob);
        let (b1, ob1) = (blob.clone(), ob.clone());
        // Its head at once, then a byte every 300 ms: under the 1 s a chunk
        // may take, so only the deadline of the whole pull catches it.
        let drip = source(Box::new(move |path, from, mut sock| {
            let (b, ob, path) = (b1.clone(), ob1.clone(), path.to_string());
            Box::pin(async move {
                if path.starts_with("/v1/outboards/") {
                    return honest(&path, from, sock, &b, &ob).await;
                }
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", b.len());
                let _ = sock.write_all(head.as_bytes()).await;
                for byte in b.iter() {
                    if sock.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            })
        }))
        .await;
        let good = honest_source(blob.clone(), ob.clone()).await;
        let f = fetcher_of(drip, good, Duration::from_secs(1));
        let started = Instant::now();
        let (got, stored) = fetch_all(&f, addr).await;
        let took = started.elapsed();
        // The deadline: 2 x 1 s, plus a second for the blob at 64 KiB/s.
        assert!(took >= Duration::from_secs(3), "left before its deadline ({took:?}): the drip was not what ended it");
        assert!(took < Duration::from_secs(20), "the dripping source held the flight for {took:?}");
        assert_eq!(f.stats.demoted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(got == blob[..]);
        assert!(stored.is_some_and(|b| b == blob));
    }
}
