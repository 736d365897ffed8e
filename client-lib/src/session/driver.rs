//! The scheduler's I/O: one task feeds it what the network says (answers,
//! bytes, ends, errors, pulses) with the time, wakes it at its deadlines,
//! and does what it asks (requests over HTTP, cancellations, pulses, frames
//! handed to whoever waits for them). No decision is taken here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tranzcast_net::client::{CallLimits, call, read_body};
use tranzcast_proto::BlobAddress;
use tranzcast_proto::pulse::Pulse;

use crate::schedule::{Action, Answer, OutboardAnswer, Scheduler, TransferId};
use crate::{ClientError, Event};

/// What an I/O task reports to the driver.
enum Io {
    Answered(TransferId, Answer),
    Outboard(TransferId, OutboardAnswer),
    Data(TransferId, Bytes),
    Ended(TransferId),
    Failed(TransferId, String),
}

/// A frame for whoever waits for a segment, or why there is none.
type Delivery = Result<(Bytes, usize), ClientError>;

/// What a playback receives, in order.
pub(super) enum Played {
    Segment { segment: u64, frame: Bytes, source: usize },
    Failed(ClientError),
}

/// Aborts a task when dropped (the session ended).
#[derive(Debug)]
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the session and its driver share.
pub(super) struct Core {
    sched: Mutex<Scheduler>,
    wake: tokio::sync::Notify,
    waiters: Mutex<BTreeMap<u64, Vec<oneshot::Sender<Delivery>>>>,
    play: Mutex<Option<mpsc::UnboundedSender<Played>>>,
    pub(super) events: tokio::sync::broadcast::Sender<Event>,
    http: reqwest::Client,
    auth: String,
    title: String,
    addrs: Vec<BlobAddress>,
    /// Each source's HTTPS URL (by the scheduler's index).
    urls: Mutex<Vec<String>>,
    /// Plaintext length of each segment (for the events).
    plain_lens: Vec<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // (A panic elsewhere while holding it leaves consistent data: every
    // update under these locks is a single assignment or a call that does
    // not unwind half-way through our own state.)
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// A core and its driver task.
    pub(super) fn start(
        sched: Scheduler,
        http: reqwest::Client,
        certificate: &str,
        title: String,
        addrs: Vec<BlobAddress>,
        urls: Vec<String>,
        plain_lens: Vec<u64>,
    ) -> (Arc<Self>, AbortOnDrop) {
        let core = Arc::new(Self {
            sched: Mutex::new(sched),
            wake: tokio::sync::Notify::new(),
            waiters: Mutex::new(BTreeMap::new()),
            play: Mutex::new(None),
            events: tokio::sync::broadcast::channel(1024).0,
            http,
            auth: format!("Tranzcast {certificate}"),
            title,
            addrs,
            urls: Mutex::new(urls),
            plain_lens,
        });
        let task = tokio::spawn(drive(Arc::downgrade(&core)));
        (core, AbortOnDrop(task))
    }

    pub(super) fn retain_sources(&self, keep: &[bool]) -> bool {
        if !lock(&self.sched).retain_sources(keep) {
            return false;
        }
        let mut k = keep.iter();
        lock(&self.urls).retain(|_| *k.next().unwrap_or(&false));
        true
    }

    /// Sources demoted now.
    pub(super) fn demoted(&self) -> Vec<String> {
        lock(&self.sched).sources().iter().filter(|s| s.demoted).map(|s| s.name.clone()).collect()
    }

    pub(super) fn estimates(&self) -> Vec<(String, Option<f64>)> {
        lock(&self.sched).sources().iter().map(|s| (s.name.clone(), s.throughput)).collect()
    }

    /// The frame of segment `i` (raced when `raced`), and its source's index.
    pub(super) async fn want(&self, i: u64, raced: bool) -> Delivery {
        let (tx, rx) = oneshot::channel();
        // (Registered first: the driver may deliver as soon as it is asked.)
        lock(&self.waiters).entry(i).or_default().push(tx);
        lock(&self.sched).want(i, raced, Instant::now());
        self.wake.notify_one();
        rx.await.unwrap_or_else(|_| Err(ClientError::Network("the session closed".into())))
    }

    /// Starts a playback: frames come out of the returned channel in order.
    pub(super) fn play(&self, held: BTreeMap<u64, (Bytes, usize)>) -> Result<mpsc::UnboundedReceiver<Played>, ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut sched = lock(&self.sched);
        if sched.playing() {
            return Err(ClientError::Invalid("a playback of this session is under way".into()));
        }
        *lock(&self.play) = Some(tx);
        sched.play(held, Instant::now());
        drop(sched);
        self.wake.notify_one();
        Ok(rx)
    }

    /// The playback was dropped: what only it wanted stops.
    pub(super) fn stop_play(&self) {
        lock(&self.play).take();
        lock(&self.sched).stop_play_now(Instant::now());
        self.wake.notify_one();
    }

    /// Pulses every source at once: round trip, load, and which segments it holds.
    pub(super) async fn pulse(&self) {
        let urls = lock(&self.urls).clone();
        let probes = futures_util::future::join_all(urls.iter().map(|u| {
            let (http, url) = (self.http.clone(), format!("{u}/v1/pulse?title={}", self.title));
            async move {
                let t = Instant::now();
                let limits = CallLimits {
                    answer: Duration::from_secs(2),
                    total: Duration::from_secs(2),
                    max_body: tranzcast_proto::pulse::MAX_PULSE_BYTES,
                };
                let pulse = match call(http.get(url), limits).await {
                    Ok((status, b)) if status.is_success() => Pulse::parse(&b).ok(),
                    _ => None,
                };
                (t.elapsed(), pulse)
            }
        }))
        .await;
        let mut sched = lock(&self.sched);
        for (i, (rtt, pulse)) in probes.iter().enumerate() {
            sched.pulsed(i, *rtt, pulse.as_ref());
        }
    }

    /// Fetches segment `i`'s outboard from the first source to give a valid
    /// one, for the scheduler to use instead of asking with the body.
    /// Nothing is kept when none answers in time: each request then asks for its own.
    pub(super) async fn prefetch_outboard(&self, i: u64) {
        let Some(addr) = self.addrs.get(i as usize).copied() else { return };
        let urls = lock(&self.urls).clone();
        let asks = urls.iter().map(|u| {
            let req = self.http.get(format!("{u}/v1/outboards/{addr}")).header(http::header::AUTHORIZATION, &self.auth);
            Box::pin(async move {
                let mut r = req.send().await.ok().filter(|r| r.status().is_success())?;
                read_body(&mut r, tranzcast_proto::outboard::MAX_ENCODED, Duration::from_secs(2)).await.ok()
            })
        });
        let first_valid = async {
            let mut asks: futures_util::stream::FuturesUnordered<_> = asks.collect();
            while let Some(r) = asks.next().await {
                if let Some(b) = r
                    && lock(&self.sched).outboard_known(i, &b, Instant::now())
                {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), first_valid).await;
        self.wake.notify_one();
    }
}

/// The driver: until the session is dropped.
async fn drive(core: std::sync::Weak<Core>) {
    let (io_tx, mut io_rx) = mpsc::channel::<Io>(256);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut handles: HashMap<TransferId, AbortHandle> = HashMap::new();
    loop {
        let Some(c) = core.upgrade() else { return };
        let deadline = lock(&c.sched).poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            io = io_rx.recv() => {
                let Some(io) = io else { return };
                let now = Instant::now();
                let mut sched = lock(&c.sched);
                feed(&mut sched, io, now);
                // What else is already here, in the same turn.
                for _ in 0..64 {
                    let Ok(io) = io_rx.try_recv() else { break };
                    feed(&mut sched, io, now);
                }
            }
            () = c.wake.notified() => {}
            () = sleep => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
        let now = Instant::now();
        let actions: Vec<Action> = {
            let mut sched = lock(&c.sched);
            if sched.poll_timeout().is_some_and(|t| t <= now) {
                sched.handle_timeout(now);
            }
            std::iter::from_fn(|| sched.poll_action()).collect()
        };
        for a in actions {
            act(&c, a, &io_tx, &mut tasks, &mut handles);
        }
    }
}

fn feed(sched: &mut Scheduler, io: Io, now: Instant) {
    match io {
        Io::Answered(id, a) => sched.answered(id, a, now),
        Io::Outboard(id, a) => sched.outboard(id, a, now),
        Io::Data(id, b) => sched.data(id, &b, now),
        Io::Ended(id) => sched.ended(id, now),
        Io::Failed(id, e) => sched.failed(id, e, now),
    }
}

fn act(c: &Arc<Core>, a: Action, io_tx: &mpsc::Sender<Io>, tasks: &mut JoinSet<()>, handles: &mut HashMap<TransferId, AbortHandle>) {
    match a {
        Action::Ask { id, source, segment, from, to, outboard } => {
            tracing::trace!(id, source, segment, from, ?to, outboard, "ask");
            let Some(url) = lock(&c.urls).get(source).cloned() else { return };
            let Some(addr) = c.addrs.get(segment as usize).copied() else { return };
            let req = Request { id, url, addr, from, to, outboard, http: c.http.clone(), auth: c.auth.clone() };
            handles.insert(id, tasks.spawn(req.run(io_tx.clone())));
        }
        Action::Cancel { id } => {
            tracing::trace!(id, "cancel");
            if let Some(h) = handles.remove(&id) {
                h.abort();
            }
        }
        Action::Pulse => {
            let c = c.clone();
            tasks.spawn(async move { c.pulse().await });
        }
        Action::Ready { segment, frame, source } => {
            tracing::trace!(segment, source, "ready");
            let bytes = c.plain_lens.get(segment as usize).copied().unwrap_or(0);
            let name = lock(&c.sched).sources().get(source).map(|s| s.name.clone()).unwrap_or_default();
            let _ = c.events.send(Event::Segment { index: segment, source: name, bytes });
            for w in lock(&c.waiters).remove(&segment).unwrap_or_default() {
                let _ = w.send(Ok((frame.clone(), source)));
            }
        }
        Action::Unavailable { segment, last } => {
            for w in lock(&c.waiters).remove(&segment).unwrap_or_default() {
                let _ = w.send(Err(ClientError::Unavailable { segment, last: last.clone() }));
            }
            // A playback stops at a segment no source could deliver.
            if let Some(p) = lock(&c.play).take() {
                let _ = p.send(Played::Failed(ClientError::Unavailable { segment, last }));
            }
        }
        Action::Output { segment, frame, source } => {
            if let Some(p) = lock(&c.play).as_ref() {
                let _ = p.send(Played::Segment { segment, frame, source });
            }
        }
        Action::Event(e) => {
            tracing::trace!(event = ?e, "event");
            let _ = c.events.send(e);
        }
    }
}

/// One request for (part of) a blob, with its outboard when asked.
struct Request {
    id: TransferId,
    url: String,
    addr: BlobAddress,
    from: u64,
    to: Option<u64>,
    outboard: bool,
    http: reqwest::Client,
    auth: String,
}

impl Request {
    async fn run(self, tx: mpsc::Sender<Io>) {
        let id = self.id;
        let outboard = async {
            if !self.outboard {
                return;
            }
            let req = self.http.get(format!("{}/v1/outboards/{}", self.url, self.addr)).header(http::header::AUTHORIZATION, &self.auth);
            let answer = match req.send().await {
                Err(e) => OutboardAnswer::Failed(e.to_string()),
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => OutboardAnswer::NotFound,
                Ok(r) if !r.status().is_success() => OutboardAnswer::Failed(format!("status {}", r.status())),
                Ok(mut r) => match read_body(&mut r, tranzcast_proto::outboard::MAX_ENCODED, Duration::from_secs(5)).await {
                    Ok(b) => OutboardAnswer::Found(b),
                    Err(e) => OutboardAnswer::Failed(e.to_string()),
                },
            };
            let _ = tx.send(Io::Outboard(id, answer)).await;
        };
        let body = async {
            let mut req = self.http.get(format!("{}/v1/blobs/{}", self.url, self.addr)).header(http::header::AUTHORIZATION, &self.auth);
            match self.to {
                Some(to) => req = req.header(http::header::RANGE, format!("bytes={}-{}", self.from, to.saturating_sub(1))),
                None if self.from > 0 => req = req.header(http::header::RANGE, format!("bytes={}-", self.from)),
                None => {}
            }
            let r = match req.send().await {
                Ok(r) => r,
                Err(e) => return tx.send(Io::Failed(id, e.to_string())).await.unwrap_or(()),
            };
            let answer = match r.status() {
                reqwest::StatusCode::OK => Answer::Whole,
                reqwest::StatusCode::PARTIAL_CONTENT => Answer::Partial,
                reqwest::StatusCode::NOT_FOUND => Answer::NotFound,
                s => Answer::Other(s.as_u16()),
            };
            if tx.send(Io::Answered(id, answer)).await.is_err() || !matches!(answer, Answer::Whole | Answer::Partial) {
                return;
            }
            let mut stream = r.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let io = match chunk {
                    Ok(b) => Io::Data(id, b),
                    Err(e) => return tx.send(Io::Failed(id, e.to_string())).await.unwrap_or(()),
                };
                if tx.send(io).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Io::Ended(id)).await;
        };
        tokio::join!(outboard, body);
    }
}
