//! A playback session: a ticket validated at the origin, the title key
//! joined from its two halves, the signed manifest, and the cluster's
//! sources; segments fetched in parallel from the best source for each,
//! verified against their blake3 address, decrypted and delivered in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tranzcast_proto::frame::FrameKind;
use tranzcast_proto::keys::{self, Expected, TitleKey};
use tranzcast_proto::manifest::{Manifest, SignedManifest};
use tranzcast_proto::outboard::{GROUP_LEN, GroupVerifier, Outboard};
use tranzcast_proto::ticket::{SignedToken, Token};

use tranzcast_net::client::{CallLimits, call, read_body};

use tranzcast_proto::answers::{ErrorBody, PlayGrant};
use tranzcast_proto::pulse::EdgeRole;

use crate::scoring::{self, SourceView};
use crate::{ClientError, PeerService};

/// How to open a session.
#[derive(Clone)]
pub struct OpenOptions {
    /// The origin's URL (`https://...`).
    pub origin: String,
    /// The play ticket (base64url text).
    pub ticket: String,
    /// PEM of the CA to trust for the origin and every source.
    pub ca_pem: String,
    /// Segments fetched at once.
    pub parallel: usize,
    /// This client's peer service (in the binary, an `EdgeServer` with role
    /// `peer`): its store is read first (segments the origin pre-cast here,
    /// Fig. 4) and keeps every segment played, for other viewers (Fig. 3).
    pub local: Option<Arc<dyn PeerService>>,
}

/// One source of blobs: an edge, a node or a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its name in the cluster.
    pub name: String,
    /// What it is.
    pub role: EdgeRole,
    /// Its HTTPS URL.
    pub https: String,
}

/// What a playback delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayReport {
    /// Plaintext bytes delivered.
    pub bytes: u64,
    /// Plaintext bytes delivered, by the source each segment came from.
    pub by_source: BTreeMap<String, u64>,
    /// Time from the start of the playback to the first segment in hand.
    pub first_segment: Duration,
    /// Sources demoted during the playback (bad bytes, errors, timeouts).
    pub demoted: Vec<String>,
}

/// Something that happened during playback (see [`Session::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A segment arrived, verified, from a source.
    Segment {
        /// Its index.
        index: u64,
        /// The source's name.
        source: String,
        /// Plaintext bytes.
        bytes: u64,
    },
    /// A source failed (bad bytes, error, timeout) and is demoted.
    Demoted {
        /// The source's name.
        source: String,
        /// Why.
        reason: String,
    },
    /// A segment was asked of two (or three) sources at once; the first to
    /// have a quarter of it verified wins and fetches the rest, the others
    /// are cancelled.
    Race {
        /// The segment.
        index: u64,
        /// The sources, best first.
        between: Vec<String>,
    },
    /// A source ran slow mid-segment: the rest of it is fetched elsewhere.
    Switched {
        /// The segment.
        index: u64,
        /// The source left.
        source: String,
        /// Bytes of the segment verified when it was left.
        at: u64,
        /// Its rate then.
        reason: String,
    },
    /// A segment's fetch continued at a source from byte `at` (a range).
    Resumed {
        /// The segment.
        index: u64,
        /// The source that takes over.
        source: String,
        /// The first byte asked of it.
        at: u64,
    },
    /// End-game: an idle source took the tail of a segment still in flight
    /// at another, from byte `at`, so both end together.
    Split {
        /// The segment.
        index: u64,
        /// The source that fetches the tail.
        source: String,
        /// The first byte of the tail.
        at: u64,
    },
    /// Output waited for a segment that was not in hand yet (after playback started).
    Stall {
        /// The segment waited for.
        index: u64,
    },
}

/// Decrypted segments kept for the local gateway's range requests.
const PLAIN_CACHE_BYTES: u64 = 128 << 20;

/// An open session (the ticket has been validated: a play is counted).
pub struct Session {
    events: tokio::sync::broadcast::Sender<Event>,
    /// Decrypted segments by index; concurrent asks for one segment share one fetch.
    plain: moka::future::Cache<u64, Bytes>,
    http: reqwest::Client,
    key: TitleKey,
    manifest: Manifest,
    certificate: String,
    /// The signed manifest as the origin sent it (handed to our peer service).
    signed_manifest: Bytes,
    replacement: Option<String>,
    sources: Vec<Source>,
    views: Mutex<Vec<SourceView>>,
    parallel: usize,
    local: Option<Arc<dyn PeerService>>,
    /// Set by [`Session::play_to`] once every segment has been started:
    /// from then on idle fast sources may take over slow transfers.
    endgame: std::sync::atomic::AtomicBool,
    /// Set while [`Session::play_to`] meters every source's throughput.
    metered: std::sync::atomic::AtomicBool,
    /// Segments being fetched (not raced), by index: in the end-game an idle
    /// source may take the tail of one (see [`scoring::split_point`]).
    pieces: Mutex<BTreeMap<(u64, u64), Arc<Piece>>>,
    /// Outboards fetched ahead (the first segment's, with the first pulse),
    /// each checked against its blob's address.
    outboards: Mutex<BTreeMap<tranzcast_proto::BlobAddress, GroupVerifier>>,
    /// The winner of a race while it fetches the rest of the raced segment:
    /// other requests for that source wait (counted as ours there) so the
    /// segment playback waits on has the source to itself.
    reserved: tokio::sync::watch::Sender<Option<usize>>,
    /// The next segment [`Session::play_to`] writes out (the playhead):
    /// segments well ahead of it may go to an idle, slower source.
    playhead: std::sync::atomic::AtomicU64,
}

// Printed without the ticket, the certificate or the replacement ticket
// (bearer credentials), as a log line would carry them.
impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("origin", &self.origin)
            .field("ticket", &"<secret>")
            .field("parallel", &self.parallel)
            .field("local", &self.local.as_ref().map(|l| l.name().to_string()))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("title", &self.manifest.title)
            .field("segments", &self.manifest.segments.len())
            .field("sources", &self.sources)
            .field("parallel", &self.parallel)
            .field("local", &self.local.as_ref().map(|l| l.name().to_string()))
            .finish_non_exhaustive()
    }
}

const NOT_THERE: &str = "does not hold it";
/// The source name of segments read from this client's own store.
pub const LOCAL: &str = "local";

/// How often a transfer checks whether it runs slow.
const SWITCH_CHECK: Duration = Duration::from_millis(50);
/// A transfer's rate is judged only after this long since its first byte.
const WARM_UP: Duration = Duration::from_millis(100);
/// A throughput estimate this old, of a source we are not using, is
/// forgotten (the source is tried again).
const STALE_ESTIMATE: Duration = Duration::from_secs(1);
/// Sources are pulsed again this often during a playback.
const PULSE_EVERY: Duration = Duration::from_secs(1);
/// Sources' throughput is metered over intervals this long during a playback.
const METER_EVERY: Duration = Duration::from_millis(200);
/// A transfer past its time that got bytes this recently is still coming.
const STILL_COMING: Duration = Duration::from_secs(1);
/// Partial transfers (cancelled, left) shorter than this teach nothing.
const MIN_SAMPLE: u64 = 64 * 1024;

/// How often the end-game looks for idle sources to share the last segments.
const SHARE_CHECK: Duration = Duration::from_millis(20);

/// A segment being fetched; its verified bytes survive a change of source.
#[derive(Debug, Default)]
struct Transfer {
    verifier: Option<GroupVerifier>,
    /// The verified bytes, from `base` on.
    data: Vec<u8>,
    /// Where `data` starts in the blob: 0, or a helper's split point.
    base: u64,
    /// The segment's shared state, when its tail may be split off.
    piece: Option<Arc<Piece>>,
    /// The race this transfer runs in, if it is one of a race's.
    race: Option<Arc<Race>>,
}

/// A race for one segment: the first racer to have verified `at` bytes wins
/// and goes on alone; the others stop (see [`Session::segment_raced`]).
#[derive(Debug)]
struct Race {
    at: u64,
    state: Mutex<RaceState>,
    /// Wakes the racers when the race is decided.
    decided: tokio::sync::Notify,
    /// The blob's outboard, once one racer has it (verified against the address).
    outboard: tokio::sync::watch::Sender<Option<GroupVerifier>>,
}

#[derive(Debug)]
struct RaceState {
    /// When the racers were asked.
    started: Instant,
    /// Bytes each racer (by source index) has received.
    got: BTreeMap<usize, u64>,
    winner: Option<usize>,
    /// Racers still running.
    running: usize,
    /// Whether the winner's source has been reserved (the race settled).
    reserved: bool,
}

impl Race {
    fn new(at: u64, racers: usize) -> Self {
        let state = RaceState { started: Instant::now(), got: BTreeMap::new(), winner: None, running: racers, reserved: false };
        Self { at, state: Mutex::new(state), decided: tokio::sync::Notify::new(), outboard: tokio::sync::watch::channel(None).0 }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RaceState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn winner(&self) -> Option<usize> {
        self.lock().winner
    }

    fn offer_outboard(&self, v: &GroupVerifier) {
        self.outboard.send_if_modified(|o| {
            let first = o.is_none();
            if first {
                *o = Some(v.clone());
            }
            first
        });
    }

    fn received(&self, source: usize, got: u64) {
        self.lock().got.insert(source, got);
    }

    /// Whether `source` won (now or before).
    fn claim(&self, session: &Session, source: usize) -> bool {
        let won = *self.lock().winner.get_or_insert(source) == source;
        if won {
            self.decided.notify_waiters();
            self.settle(session);
        }
        won
    }

    /// A racer stopped (lost, failed, or done).
    fn leave(&self, session: &Session) {
        let mut st = self.lock();
        st.running = st.running.saturating_sub(1);
        drop(st);
        self.settle(session);
    }

    /// Once the winner is alone (every loser stopped, so its requests no
    /// longer count at its source), its source is reserved: that is what
    /// the playback waits for to start the other segments, which are then
    /// spread over sources as they really are. The racers' paces seed the
    /// estimates of sources not yet measured: bytes over the same interval
    /// since they were asked (a transfer's own few tens of milliseconds
    /// from its first byte would mostly measure a link's burst).
    fn settle(&self, session: &Session) {
        let mut st = self.lock();
        let Some(w) = st.winner else { return };
        if st.reserved || st.running > 1 {
            return;
        }
        st.reserved = true;
        let (secs, got) = (st.started.elapsed().as_secs_f64(), std::mem::take(&mut st.got));
        drop(st);
        tracing::trace!(winner = w, ?got, ms = secs * 1e3, "race settled");
        let now = Instant::now();
        for (source, bytes) in got.into_iter().filter(|(_, b)| *b > 0) {
            session.with_view(source, |v| v.seed(bytes, secs, now));
        }
        session.reserved.send_replace(Some(w));
    }

    /// Clears the winner's reservation (the race ended, however it ended).
    fn unreserve(&self, session: &Session) {
        let Some(w) = self.winner() else { return };
        session.reserved.send_if_modified(|r| {
            let mine = *r == Some(w);
            if mine {
                *r = None;
            }
            mine
        });
    }
}

/// Clears a race winner's reservation when the race ends, however it ends.
struct Unreserve<'a>(&'a Session, Arc<Race>);

impl Drop for Unreserve<'_> {
    fn drop(&mut self) {
        self.1.unreserve(self.0);
    }
}

/// A segment in flight whose tail an idle source may take in the end-game.
#[derive(Debug)]
struct Piece {
    index: u64,
    /// Where its transfer started: 0, or the split point of a tail (a tail
    /// may be split again when the source that left it is idle first).
    base: u64,
    addr: tranzcast_proto::BlobAddress,
    state: Mutex<PieceState>,
}

#[derive(Debug, Default)]
struct PieceState {
    /// A verifier for the blob (outboard checked), once the transfer has one.
    verifier: Option<GroupVerifier>,
    /// Verified bytes and the transfer's rate (bytes/s) at its last chunk.
    verified: u64,
    rate: Option<f64>,
    /// The transfer stops here: the bytes after it come from `tail`.
    split: Option<u64>,
    tail: Option<tokio::sync::oneshot::Receiver<Result<Vec<u8>, String>>>,
}

impl Piece {
    fn lock(&self) -> std::sync::MutexGuard<'_, PieceState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Takes a segment off the shared list when its fetch ends, however it ends.
struct Registered<'a>(&'a Session, (u64, u64));

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.0.pieces.lock() {
            p.remove(&self.1);
        }
    }
}

/// A helper's transfer of a segment's tail, as play_to drives it.
type Helping = std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send>>;

impl Transfer {
    /// Bytes still to fetch, once the length is known.
    fn remaining(&self) -> Option<u64> {
        self.verifier.as_ref().map(|v| v.len() - v.verified())
    }
}

/// Why one try at one source did not finish the segment.
enum Miss {
    /// It does not hold the segment.
    NotThere,
    /// It ran slow: the rest is fetched elsewhere (not a fault).
    Slow(String),
    /// It lied, failed or timed out.
    Failed(String),
}

/// One of our requests at a source: counted in its view while it lasts;
/// what it achieved (even cancelled, as a race's loser) feeds the source's
/// throughput estimate when it ends.
struct Outstanding<'a> {
    session: &'a Session,
    index: usize,
    started: Instant,
    first_byte: Option<Instant>,
    last_byte: Option<Instant>,
    got: u64,
    done: bool,
    /// Whether what it achieved feeds the estimate when it ends (a racer's
    /// is taught by its race).
    teaches: bool,
}

impl<'a> Outstanding<'a> {
    fn new(session: &'a Session, index: usize, teaches: bool) -> Self {
        session.with_view(index, |v| v.ours_in_flight += 1);
        Self { session, index, started: Instant::now(), first_byte: None, last_byte: None, got: 0, done: false, teaches }
    }

    fn arrived(&mut self, n: usize) {
        let now = Instant::now();
        self.first_byte.get_or_insert(now);
        self.last_byte = Some(now);
        self.got += n as u64;
        self.session.with_view(self.index, |v| v.received += n as u64);
    }

    /// Bytes/s since the first byte, once that is long enough to judge.
    fn rate(&self) -> Option<f64> {
        let since = self.first_byte?.elapsed();
        (since >= WARM_UP).then(|| self.got as f64 / since.as_secs_f64())
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        let (got, first_byte, done) = (self.got, self.first_byte, self.done);
        self.session.with_view(self.index, |v| {
            // Timed from the first byte (plus a round trip): connection set-up
            // and a parent's miss are not the source's throughput.
            // While metered (a playback), a transfer's own sample only seeds
            // an unknown estimate: the meter sees all requests together.
            let metered = self.session.metered.load(std::sync::atomic::Ordering::Relaxed);
            if let Some(fb) = first_byte
                && self.teaches
                && (done || got >= MIN_SAMPLE)
                && (!metered || v.measured().is_none())
            {
                let rtt = v.rtt.unwrap_or_default();
                v.record_fetch(got, fb.elapsed() + rtt, v.ours_in_flight, Instant::now());
            }
            if done {
                // Good bytes again (a timeout under load is not a lie): back in the running.
                v.demoted = false;
            }
            v.ours_in_flight = v.ours_in_flight.saturating_sub(1);
        });
    }
}

impl Session {
    /// Validates the ticket at the origin (counting one play), joins the
    /// title key from K2 (ticket) and K1 (certificate), and checks the
    /// manifest against the origin's signature.
    pub async fn open(opts: OpenOptions) -> Result<Self, ClientError> {
        let http = tranzcast_net::client::https(opts.ca_pem.as_bytes()).map_err(|e| ClientError::Network(e.to_string()))?;
        Self::open_with(opts, http).await
    }

    /// [`Session::open`] over a given HTTP client (its connections are shared
    /// with whoever else uses it, as a load test's simulated viewers do).
    /// The client must trust the cluster's CA; `opts.ca_pem` is not used.
    pub async fn open_with(opts: OpenOptions, http: reqwest::Client) -> Result<Self, ClientError> {
        let origin = opts.origin.trim_end_matches('/');
        // The origin is authenticated by TLS; its signing key comes from it.
        let small = CallLimits { answer: Duration::from_secs(10), total: Duration::from_secs(30), max_body: 4 << 10 };
        let (_, body) = call(http.get(format!("{origin}/v1/origin-key")), small).await.map_err(|e| ClientError::Network(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ClientError::Invalid(format!("origin key: {e}")))?;
        let mut kb = [0u8; 32];
        hex::decode_to_slice(v["ed25519"].as_str().unwrap_or(""), &mut kb).map_err(|_| ClientError::Invalid("origin key".into()))?;
        let origin_key = ed25519_key(&kb)?;
        let ticket = SignedToken::from_text(opts.ticket.trim()).map_err(|e| ClientError::Invalid(format!("ticket: {e}")))?;
        let k2 = match ticket.verify(&origin_key) {
            Ok(Token::Ticket(t)) => t.key_part,
            _ => return Err(ClientError::Invalid("the ticket is not signed by this origin".into())),
        };
        // One key for this attempt to play: if the answer is lost on the way
        // back (the play already counted), a retry with the key gets the
        // same grant instead of "replaced" or "spent".
        let attempt = hex::encode(tranzcast_proto::random_bytes::<16>());
        let mut tries = 0u64;
        // The answer carries the title's manifest: the largest the format allows, base64.
        let play_limits = CallLimits {
            answer: Duration::from_secs(30),
            total: Duration::from_secs(120),
            max_body: (tranzcast_proto::manifest::MAX_SEGMENTS as usize * 32 + (1 << 20)) / 3 * 4 + (1 << 20),
        };
        let (status, body) = loop {
            let req = http
                .post(format!("{origin}/v1/play"))
                .header("idempotency-key", &attempt)
                .json(&serde_json::json!({"ticket": opts.ticket.trim()}));
            match call(req, play_limits).await {
                Ok(a) => break a,
                Err(_) if tries < 2 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(250 * tries)).await;
                }
                Err(e) => return Err(ClientError::Network(e.to_string())),
            }
        };
        if !status.is_success() {
            let (code, reason) = ErrorBody::read(&body);
            return Err(ClientError::Refused { code, reason });
        }
        let grant = PlayGrant::parse(&body).map_err(|e| ClientError::Invalid(format!("the origin's answer: {e}")))?;
        let certificate = grant.certificate;
        let cert = match SignedToken::from_text(&certificate).map_err(|e| ClientError::Invalid(e.to_string()))?.verify(&origin_key) {
            Ok(Token::Certificate(c)) => c.clone(),
            _ => return Err(ClientError::Invalid("the certificate is not signed by this origin".into())),
        };
        let key = TitleKey::from_bytes(TitleKey::from_bytes(k2).xor(&cert.key_part));
        let mb = URL_SAFE_NO_PAD
            .decode(grant.manifest.as_deref().ok_or_else(|| ClientError::Invalid("no manifest".into()))?)
            .map_err(|e| ClientError::Invalid(format!("manifest: {e}")))?;
        let sm = SignedManifest::decode(&mb).map_err(|e| ClientError::Invalid(format!("manifest: {e}")))?;
        let manifest = sm.verify(&origin_key).map_err(|e| ClientError::Invalid(format!("manifest: {e}")))?.clone();
        if manifest.title != cert.title {
            return Err(ClientError::Invalid(format!("manifest for {}, certificate for {}", manifest.title, cert.title)));
        }
        let sources: Vec<Source> = grant.sources.into_iter().map(|s| Source { name: s.name, role: s.role, https: s.https }).collect();
        let views = sources.iter().map(|s| SourceView::new(&s.name, s.role != EdgeRole::Peer)).collect();
        let mut session = Self {
            events: tokio::sync::broadcast::channel(1024).0,
            plain: moka::future::Cache::builder()
                .weigher(|_, b: &Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
                .max_capacity(PLAIN_CACHE_BYTES)
                .build(),
            http,
            key,
            manifest,
            certificate,
            signed_manifest: Bytes::from(mb),
            replacement: grant.ticket,
            sources,
            views: Mutex::new(views),
            parallel: opts.parallel.max(1),
            local: None,
            endgame: std::sync::atomic::AtomicBool::new(false),
            metered: std::sync::atomic::AtomicBool::new(false),
            pieces: Mutex::new(BTreeMap::new()),
            outboards: Mutex::new(BTreeMap::new()),
            reserved: tokio::sync::watch::channel(None).0,
            playhead: std::sync::atomic::AtomicU64::new(0),
        };
        if let Some(local) = opts.local {
            session.attach_local(local)?;
        }
        Ok(session)
    }

    /// The validation certificate the origin gave this session (base64url): the
    /// credential a peer service joins the cluster with.
    pub fn certificate(&self) -> &str {
        &self.certificate
    }

    /// Attaches this client's peer service after opening (its certificate comes
    /// from the validation): its store is read first and keeps what is played;
    /// it is never a source of its own session. It learns the title's manifest,
    /// so its pulse tells other viewers which segments it holds. Blocking briefly
    /// (one small store write).
    pub fn attach_local(&mut self, local: Arc<dyn PeerService>) -> Result<(), ClientError> {
        local.keep_manifest(&self.signed_manifest).map_err(|e| ClientError::Local(e.to_string()))?;
        let name = local.name().to_string();
        if let Some(i) = self.sources.iter().position(|s| s.name == name) {
            self.sources.remove(i);
            if let Ok(mut v) = self.views.lock() {
                v.remove(i);
            }
        }
        self.local = Some(local);
        Ok(())
    }

    /// The replacement ticket for the next play (rentals with plays left): keep it.
    pub fn replacement_ticket(&self) -> Option<&str> {
        self.replacement.as_deref()
    }

    /// The title's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Playback events: segments arriving by source, demotions, stalls.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Segment `i`'s plaintext, from the session's memory if fetched lately;
    /// any number of concurrent callers share one fetch.
    pub async fn segment_plain(&self, i: u64) -> Result<Bytes, std::sync::Arc<ClientError>> {
        self.plain.try_get_with(i, async { self.segment(i).await.map(|(b, _)| b) }).await
    }

    /// As [`Session::segment_plain`], racing two sources if it must be fetched.
    pub async fn segment_plain_raced(&self, i: u64) -> Result<Bytes, std::sync::Arc<ClientError>> {
        self.plain.try_get_with(i, async { self.segment_raced(i).await.map(|(b, _)| b) }).await
    }

    /// Resolves once the `n` segments from `from` are in hand (playback can
    /// start without stalling); the first is raced.
    pub async fn ready(&self, from: u64, n: u64) -> Result<(), std::sync::Arc<ClientError>> {
        let last = (self.manifest.segments.len() as u64).min(from + n.max(1));
        // The first alone (raced), then the others together.
        self.segment_plain_raced(from).await?;
        futures_util::future::try_join_all((from + 1..last).map(|i| self.segment_plain(i))).await.map(|_| ())
    }

    /// Keeps only the sources named in `names` (a diagnostic: playing from
    /// one source, or a chosen few); errors if none of them is known.
    pub fn restrict_sources(&mut self, names: &[String]) -> Result<(), ClientError> {
        let keep: Vec<bool> = self.sources.iter().map(|s| names.contains(&s.name)).collect();
        if !keep.contains(&true) {
            let known: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
            return Err(ClientError::Invalid(format!("none of {names:?} is a source; the sources are {known:?}")));
        }
        let mut k = keep.iter();
        self.sources.retain(|_| *k.next().unwrap_or(&false));
        if let Ok(mut v) = self.views.lock() {
            let mut k = keep.iter();
            v.retain(|_| *k.next().unwrap_or(&false));
        }
        Ok(())
    }

    /// The sources the origin named.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Each source's throughput estimate (bytes/s) as the session sees it
    /// now, by name (None: not measured, or forgotten as stale).
    pub fn estimates(&self) -> Vec<(String, Option<f64>)> {
        self.views.lock().map(|v| v.iter().map(|s| (s.name.clone(), s.throughput)).collect()).unwrap_or_default()
    }

    /// Fetches segment `idx`'s outboard from the first source to give a valid
    /// one (checked against the blob's address), for [`Self::attempt`] to use
    /// instead of asking with the body. Nothing is kept when none answers in
    /// time: each transfer then asks for its own.
    async fn prefetch_outboard(&self, idx: usize) {
        let Some(addr) = self.manifest.segments.get(idx).copied() else { return };
        let auth = format!("Tranzcast {}", self.certificate);
        let asks = self.sources.iter().map(|s| {
            let req = self.http.get(format!("{}/v1/outboards/{addr}", s.https)).header(http::header::AUTHORIZATION, &auth);
            Box::pin(async move {
                let mut r = req.send().await.ok().filter(|r| r.status().is_success())?;
                let b = read_body(&mut r, tranzcast_proto::outboard::MAX_ENCODED, Duration::from_secs(2)).await.ok()?;
                Outboard::decode(&b).ok().and_then(|ob| GroupVerifier::new(addr, ob).ok())
            })
        });
        let first_valid = async {
            let mut asks: futures_util::stream::FuturesUnordered<_> = asks.collect();
            while let Some(r) = asks.next().await {
                if r.is_some() {
                    return r;
                }
            }
            None
        };
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(2), first_valid).await
            && let Ok(mut known) = self.outboards.lock()
        {
            known.insert(addr, v);
        }
    }

    /// Pulses every source at once: round trip, load, and which segments it holds.
    pub async fn pulse(&self) {
        let title = self.manifest.title.as_str().to_string();
        let probes = futures_util::future::join_all(self.sources.iter().map(|s| {
            let (http, url) = (self.http.clone(), format!("{}/v1/pulse?title={title}", s.https));
            async move {
                let t = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(2), async {
                    let limits = CallLimits {
                        answer: Duration::from_secs(2),
                        total: Duration::from_secs(2),
                        max_body: tranzcast_proto::pulse::MAX_PULSE_BYTES,
                    };
                    let (status, b) = call(http.get(url), limits).await.ok()?;
                    if !status.is_success() {
                        return None;
                    }
                    tranzcast_proto::pulse::Pulse::parse(&b).ok()
                })
                .await;
                (t.elapsed(), r.ok().flatten())
            }
        }))
        .await;
        let segments = self.manifest.segments.len();
        if let Ok(mut views) = self.views.lock() {
            for (view, (rtt, pulse)) in views.iter_mut().zip(probes) {
                match pulse {
                    Some(p) => {
                        view.healthy = p.health == tranzcast_proto::pulse::Health::Ok;
                        // With our own transfers queued there, the round
                        // trip measures our queue, not the path.
                        if view.ours_in_flight == 0 || view.rtt.is_none() {
                            view.rtt = Some(rtt);
                        }
                        view.reported_in_flight = p.load.in_flight;
                        view.reported_rate = p.load.bytes_out_per_s;
                        view.capacity = p.load.capacity_bytes_per_s.map(|c| c as f64);
                        view.holds = p.segments.map(|s| s.bitmap).filter(|b| !b.is_empty()).map(|b| b.to_holds(segments));
                    }
                    // Silent: unhealthy, unless our own transfers from it are
                    // flowing (the pulse waited behind them).
                    None if view.ours_in_flight == 0 => view.healthy = false,
                    None => {}
                }
            }
        }
    }

    /// Fetches segment `i` from the best source, failing over to the next;
    /// returns its plaintext and the source it came from.
    pub async fn segment(&self, i: u64) -> Result<(Bytes, String), ClientError> {
        self.fetch_segment(i, false).await
    }

    /// As [`Session::segment`], but asks the two best sources at once (three
    /// while none is measured): the first to have a quarter of it verified
    /// wins and fetches the rest alone, the others are cancelled: for the
    /// segment playback waits on (the first one, or the one after a seek).
    /// While the winner fetches the rest, other requests for it wait.
    pub async fn segment_raced(&self, i: u64) -> Result<(Bytes, String), ClientError> {
        self.fetch_segment(i, true).await
    }

    async fn fetch_segment(&self, i: u64, race: bool) -> Result<(Bytes, String), ClientError> {
        let idx = usize::try_from(i).map_err(|_| ClientError::Invalid("segment index".into()))?;
        let addr = *self.manifest.segments.get(idx).ok_or_else(|| ClientError::Invalid(format!("no segment {i}")))?;
        // Our own store first: pre-cast segments, or ones played before.
        if let Some(local) = &self.local {
            let l = local.clone();
            if let Ok(Some(frame)) = tokio::task::spawn_blocking(move || l.local_blob(&addr)).await {
                let plain = self.decrypt(i, &frame).map_err(ClientError::Invalid)?;
                let _ = self.events.send(Event::Segment { index: i, source: LOCAL.into(), bytes: plain.len() as u64 });
                return Ok((plain, LOCAL.into()));
            }
        }
        // A segment's size on the wire, as the ranking estimates it.
        let expect_len = u64::from(self.manifest.segment_size) + tranzcast_proto::frame::OVERHEAD as u64;
        let mut last = "no sources".to_string();
        let mut tried = Vec::new();
        let mut resume: Option<Transfer> = None;
        if race {
            let (ranked, width) = match self.views.lock() {
                Ok(v) => {
                    let r = scoring::rank(&v, idx, expect_len);
                    let w = scoring::race_width(&v, &r);
                    (r, w)
                }
                Err(_) => (Vec::new(), 0),
            };
            if width >= 2 {
                let racers = &ranked[..width];
                let between = racers.iter().map(|r| self.sources[r.index].name.clone()).collect();
                let _ = self.events.send(Event::Race { index: i, between });
                // Decided at a quarter: by then the racers' pace is plain,
                // and the losers' links, no longer carrying copies, are free
                // for other segments three quarters of a segment sooner.
                let race = Arc::new(Race::new(expect_len / 4, racers.len()));
                let _unreserve = Unreserve(self, race.clone());
                // A winner that fails after the losers stopped (a fast liar
                // caught past the quarter, say) leaves its verified groups:
                // the segment resumes from them, and only racers that failed
                // themselves are passed over (the losers were stopped, not bad).
                let salvage: Mutex<Option<Transfer>> = Mutex::new(None);
                let failed: Mutex<Vec<usize>> = Mutex::new(Vec::new());
                let attempts = racers.iter().map(|c| {
                    let (race, salvage, failed) = (race.clone(), &salvage, &failed);
                    Box::pin(async move {
                        let mut t = Transfer { race: Some(race.clone()), ..Transfer::default() };
                        let lost = async {
                            loop {
                                // (Created before the check: no wake-up is missed.)
                                let decided = race.decided.notified();
                                if race.winner().is_some_and(|w| w != c.index) {
                                    break;
                                }
                                decided.await;
                            }
                        };
                        let r = tokio::select! {
                            r = self.try_source(c, i, idx, &addr, 1, &mut t, &[]) => match r {
                                Ok(()) => Ok((t, c.index)),
                                Err(e) => {
                                    failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(c.index);
                                    if race.winner() == Some(c.index) {
                                        t.race = None;
                                        *salvage.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(t);
                                    }
                                    Err(e)
                                }
                            },
                            () = lost => Err(format!("{}: lost the race", self.sources[c.index].name)),
                        };
                        // (After the attempt: its request no longer counts at its source.)
                        race.leave(self);
                        r
                    })
                });
                // The winner's whole segment ends the race; the losers have stopped.
                match futures_util::future::select_ok(attempts).await {
                    Ok(((t, index), _losers)) => return self.deliver(i, t, index),
                    Err(e) => last = e,
                }
                tried.extend(failed.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner));
                resume = salvage.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
        // One source after another, best first, resuming where the last one
        // stopped (verified groups are kept). Then, if every source failed
        // once (all busy, say), one more round with three times the patience.
        let piece = self.register(i, 0, addr);
        let _registered = Registered(self, (i, 0));
        let mut t = resume.unwrap_or_default();
        if let Some(v) = &t.verifier {
            let mut st = piece.lock();
            st.verifier = Some(v.clone());
            st.verified = v.verified();
        }
        t.piece = Some(piece);
        // Well ahead of the playhead (and before the end-game), an idle
        // source gets the segment if it is not far too slow: see
        // scoring::prefer_idle. Only play_to keeps a playhead (it meters);
        // other callers ask for what they need now.
        let ahead = self.metered.load(std::sync::atomic::Ordering::Relaxed)
            && i >= self.playhead.load(std::sync::atomic::Ordering::Relaxed) + (self.parallel as u64).div_ceil(2)
            && !self.endgame.load(std::sync::atomic::Ordering::Relaxed);
        for patience in [1, 3] {
            loop {
                let remaining = t.remaining().unwrap_or(expect_len);
                let ranked = self.ranked(idx, remaining, &tried);
                let pick = match self.views.lock() {
                    Ok(v) if ahead && tried.is_empty() => scoring::prefer_idle(&v, &ranked),
                    _ => 0,
                };
                let choice = ranked.into_iter().nth(pick);
                let Some(choice) = choice else { break };
                tried.push(choice.index);
                match self.try_source(&choice, i, idx, &addr, patience, &mut t, &tried).await {
                    Ok(()) if self.join_tail(&mut t).await => return self.deliver(i, t, choice.index),
                    // The helper failed: the rest from here, this source again included.
                    Ok(()) => tried.retain(|&x| x != choice.index),
                    Err(e) => last = e,
                }
            }
            tried.clear();
        }
        Err(ClientError::Unavailable { segment: i, last })
    }

    fn register(&self, i: u64, base: u64, addr: tranzcast_proto::BlobAddress) -> Arc<Piece> {
        let piece = Arc::new(Piece { index: i, base, addr, state: Mutex::new(PieceState::default()) });
        if let Ok(mut p) = self.pieces.lock() {
            p.insert((i, base), piece.clone());
        }
        piece
    }

    /// After a transfer stopped: whole, or at its split point, then joined
    /// with the tail its helper fetched. False when the helper failed: the
    /// transfer goes on from where it stopped (no more splitting).
    async fn join_tail(&self, t: &mut Transfer) -> bool {
        if t.verifier.as_ref().is_some_and(GroupVerifier::is_complete) {
            return true;
        }
        let Some(piece) = &t.piece else { return false };
        let (split, tail) = {
            let mut st = piece.lock();
            (st.split, st.tail.take())
        };
        let (Some(split), Some(tail)) = (split, tail) else { return false };
        let len = t.verifier.as_ref().map_or(0, GroupVerifier::len);
        match tail.await {
            Ok(Ok(bytes)) if split + bytes.len() as u64 == len && t.base + t.data.len() as u64 >= split => {
                t.data.truncate((split - t.base) as usize);
                t.data.extend_from_slice(&bytes);
                true
            }
            _ => {
                piece.lock().split = Some(len);
                false
            }
        }
    }

    /// End-game: each idle source (measured, healthy, not busy with us)
    /// takes the tail of the segment in flight expected to end last, where
    /// that brings its end sooner. Returns the helpers' transfers (each
    /// ends with its source's index).
    fn plan_shares(self: &Arc<Self>, helping: &[usize]) -> Vec<(usize, Helping)> {
        let pieces: Vec<Arc<Piece>> = self.pieces.lock().map(|p| p.values().cloned().collect()).unwrap_or_default();
        let Ok(views) = self.views.lock() else { return Vec::new() };
        let mut idle: Vec<usize> = (0..views.len())
            .filter(|&k| {
                let v = &views[k];
                v.ours_in_flight == 0 && v.healthy && !v.demoted && v.throughput.is_some() && !helping.contains(&k)
            })
            .collect();
        idle.sort_by(|a, b| views[*b].throughput.unwrap_or(0.0).total_cmp(&views[*a].throughput.unwrap_or(0.0)));
        let mut out = Vec::new();
        let mut taken = Vec::new();
        for helper in idle {
            // The piece expected to end last that this source can serve.
            let mut best: Option<(f64, &Arc<Piece>)> = None;
            for p in &pieces {
                if taken.contains(&(p.index, p.base)) || views[helper].expected_secs(p.index as usize, 1).is_none() {
                    continue;
                }
                let st = p.lock();
                let (Some(v), Some(rate), None) = (&st.verifier, st.rate, st.split) else { continue };
                let left = (v.len() - st.verified) as f64 / rate;
                if best.is_none_or(|(l, _)| left > l) {
                    best = Some((left, p));
                }
            }
            let Some((_, piece)) = best else { continue };
            let h = &views[helper];
            let rtt = h.rtt.map_or(0.05, |r| r.as_secs_f64());
            let mut st = piece.lock();
            let (Some(v), Some(rate)) = (st.verifier.clone(), st.rate) else { continue };
            let Some(split) = scoring::split_point(v.len(), st.verified, rate, h.throughput.unwrap_or(0.0), rtt) else { continue };
            let mut tail_verifier = v;
            if tail_verifier.skip_to(split).is_err() {
                continue;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            st.split = Some(split);
            st.tail = Some(rx);
            drop(st);
            taken.push((piece.index, piece.base));
            let (i, addr) = (piece.index, piece.addr);
            let expected_secs = rtt + (tail_verifier.len() - split) as f64 / h.throughput.unwrap_or(scoring::DEFAULT_THROUGHPUT);
            let choice = scoring::Ranked { index: helper, expected_secs };
            let _ = self.events.send(Event::Split { index: i, source: h.name.clone(), at: split });
            let me = self.clone();
            let fut = async move {
                // The tail is a piece of its own: it may be split again.
                let piece = me.register(i, split, addr);
                let _registered = Registered(&me, (i, split));
                let mut t = Transfer { verifier: Some(tail_verifier), base: split, piece: Some(piece), ..Transfer::default() };
                let r = match me.try_source(&choice, i, i as usize, &addr, 1, &mut t, &[]).await {
                    Ok(()) if me.join_tail(&mut t).await => Ok(t.data),
                    Ok(()) => Err("a tail's helper failed".to_string()),
                    Err(e) => Err(e),
                };
                let _ = tx.send(r);
                helper
            };
            out.push((helper, Box::pin(fut) as Helping));
        }
        out
    }

    /// Sources for `bytes` of segment `idx`, best first, leaving out `exclude`.
    fn ranked(&self, idx: usize, bytes: u64, exclude: &[usize]) -> Vec<scoring::Ranked> {
        match self.views.lock() {
            Ok(mut v) => {
                let now = Instant::now();
                v.iter_mut().for_each(|s| s.forget_stale(now, STALE_ESTIMATE));
                scoring::rank(&v, idx, bytes).into_iter().filter(|r| !exclude.contains(&r.index)).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// A whole verified segment: decrypted, kept for other viewers, announced.
    fn deliver(&self, i: u64, t: Transfer, index: usize) -> Result<(Bytes, String), ClientError> {
        let frame = Bytes::from(t.data);
        let plain = self.decrypt(i, &frame).map_err(ClientError::Invalid)?;
        if let Some(local) = &self.local {
            // Kept (ciphertext) for other viewers; the playback does not wait for it.
            let l = local.clone();
            tokio::task::spawn_blocking(move || l.keep_blob(&frame));
        }
        let source = self.sources[index].name.clone();
        let _ = self.events.send(Event::Segment { index: i, source: source.clone(), bytes: plain.len() as u64 });
        Ok((plain, source))
    }

    /// One try at one source, for what of the segment is still missing; the
    /// outcome is recorded in the source's view (a lie or an error demotes it,
    /// a 404 clears its bitmap bit, a slow transfer teaches its throughput).
    #[allow(clippy::too_many_arguments)]
    async fn try_source(
        &self,
        choice: &scoring::Ranked,
        i: u64,
        idx: usize,
        addr: &tranzcast_proto::BlobAddress,
        patience: u32,
        t: &mut Transfer,
        tried: &[usize],
    ) -> Result<(), String> {
        let source = &self.sources[choice.index];
        let from = t.verifier.as_ref().map_or(0, GroupVerifier::verified);
        if from > 0 {
            let _ = self.events.send(Event::Resumed { index: i, source: source.name.clone(), at: from });
        }
        let r = self.attempt(choice, idx, addr, patience, t, tried).await;
        if r.is_err()
            && let Some(p) = &t.piece
        {
            // Nothing moves it now: until another source takes over, the
            // end-game must not plan with the rate of the one just left.
            p.lock().rate = None;
        }
        match r {
            Ok(()) => Ok(()),
            Err(Miss::NotThere) => {
                // Not a fault: it does not hold this one (a peer, or a stale bitmap).
                self.with_view(choice.index, |v| {
                    if let Some(h) = v.holds.as_mut().and_then(|h| h.get_mut(idx)) {
                        *h = false;
                    }
                });
                Err(format!("{}: {NOT_THERE}", source.name))
            }
            Err(Miss::Slow(why)) => {
                tracing::debug!(source = %source.name, segment = i, %why, "slow source left mid-segment");
                let at = t.verifier.as_ref().map_or(0, GroupVerifier::verified);
                let _ = self.events.send(Event::Switched { index: i, source: source.name.clone(), at, reason: why.clone() });
                Err(format!("{}: {why}", source.name))
            }
            Err(Miss::Failed(e)) => {
                tracing::warn!(source = %source.name, segment = i, error = %e, "source demoted");
                let _ = self.events.send(Event::Demoted { source: source.name.clone(), reason: e.clone() });
                self.with_view(choice.index, |v| v.demoted = true);
                Err(format!("{}: {e}", source.name))
            }
        }
    }

    /// Fetches the rest of a segment from one source: its outboard (with the
    /// body, in parallel) when none is in hand yet, then the body from the
    /// first unverified byte, each 16 KiB group verified as it arrives. Left
    /// for a better source when it runs slow (see [`scoring::should_switch`]).
    async fn attempt(
        &self,
        choice: &scoring::Ranked,
        idx: usize,
        addr: &tranzcast_proto::BlobAddress,
        patience: u32,
        t: &mut Transfer,
        tried: &[usize],
    ) -> Result<(), Miss> {
        let source = &self.sources[choice.index];
        let (measured, rtt, answer, sharing_at_choice) = self
            .views
            .lock()
            .ok()
            .and_then(|v| v.get(choice.index).map(|s| (s.measured().is_some(), s.rtt, s.answer, s.ours_in_flight + 1)))
            .unwrap_or((false, None, None, 1));
        let mut progress = Outstanding::new(self, choice.index, t.race.is_none());
        if t.race.is_none() {
            // A race's winner has its source to itself until the raced segment is in.
            let mut reserved = self.reserved.subscribe();
            let _ = reserved.wait_for(|r| *r != Some(choice.index)).await;
        }
        let asked = tokio::time::Instant::now();
        let mut deadline = asked + scoring::timeout_for(choice.expected_secs, measured) * patience;
        // A source that does not answer at all is given up on much sooner.
        let answer_by = deadline.min(asked + scoring::answer_timeout(rtt, answer) * patience);
        let auth = format!("Tranzcast {}", self.certificate);
        if t.verifier.is_none()
            && let Some(v) = self.outboards.lock().ok().and_then(|k| k.get(addr).cloned())
        {
            t.data = Vec::with_capacity(usize::try_from(v.len()).unwrap_or(0));
            t.verifier = Some(v);
        }
        let from = t.verifier.as_ref().map_or(0, GroupVerifier::verified);
        let blob_url = format!("{}/v1/blobs/{addr}", source.https);
        let mut body_req = self.http.get(&blob_url).header(http::header::AUTHORIZATION, &auth);
        // A racer asks for the first quarter only (to the group boundary at
        // or after it, so the claim can be verified): once the race is
        // decided, a loser's link carries at most the rest of that range,
        // not the hundreds of KB a whole-segment request had in flight and
        // queued (105-198 ms of the two losers' links in bench/multisource.sh,
        // each delaying their next segment). The winner asks for the rest.
        let mut race_bound = t.race.as_ref().filter(|_| from == 0).map(|r| r.at.div_ceil(GROUP_LEN).max(1) * GROUP_LEN);
        if from > 0 {
            body_req = body_req.header(http::header::RANGE, format!("bytes={from}-"));
        } else if let Some(bound) = race_bound {
            body_req = body_req.header(http::header::RANGE, format!("bytes=0-{}", bound - 1));
        }
        // The outboard (with the body, in parallel), unless one is in hand.
        // On a shared connection its answer may come behind the first few
        // hundred KB of the body (a link's queue: up to 150 ms at 16 Mbit/s,
        // every group held unverified meanwhile), so racers share theirs:
        // the first valid one to arrive serves all (it is checked against
        // the blob's address, whoever sent it), and the race is decided by
        // the bodies, not by whose outboard came first.
        let own_outboard = t.verifier.is_none().then(|| {
            let req = self.http.get(format!("{}/v1/outboards/{addr}", source.https)).header(http::header::AUTHORIZATION, &auth).send();
            async move {
                let o = req.await.map_err(|e| Miss::Failed(e.to_string()))?;
                if o.status() == reqwest::StatusCode::NOT_FOUND {
                    return Err(Miss::NotThere);
                }
                if !o.status().is_success() {
                    return Err(Miss::Failed(format!("outboard: status {}", o.status())));
                }
                let mut o = o;
                let b = read_body(&mut o, tranzcast_proto::outboard::MAX_ENCODED, Duration::from_secs(5))
                    .await
                    .map_err(|e| Miss::Failed(e.to_string()))?;
                Outboard::decode(&b).and_then(|ob| GroupVerifier::new(*addr, ob)).map_err(|e| Miss::Failed(format!("bad outboard: {e}")))
            }
        });
        let race = t.race.clone();
        let outboard = async move {
            let own = own_outboard?;
            let Some(race) = race else { return Some(own.await) };
            let mut shared = race.outboard.subscribe();
            Some(tokio::select! {
                r = own => {
                    if let Ok(v) = &r {
                        race.offer_outboard(v);
                    }
                    r
                }
                Ok(v) = shared.wait_for(Option::is_some) => v.clone().ok_or_else(|| Miss::Failed("no outboard".into())),
            })
        };
        // About the size of what is asked (the frame adds a header and a tag).
        let remaining = t.verifier.as_ref().map_or(self.manifest.segment_plain_len(idx as u64), |v| v.len() - from);
        let racing = t.race.is_some();
        let answered = tokio::time::timeout_at(answer_by, async { tokio::join!(outboard, body_req.send()) });
        tokio::pin!(answered);
        let mut tick = tokio::time::interval_at(asked + SWITCH_CHECK, SWITCH_CHECK);
        let (outboard, body) = loop {
            tokio::select! {
                r = &mut answered => break r.map_err(|_| Miss::Failed("no answer in time".into()))?,
                _ = tick.tick() => {
                    // End-game: a source still silent while another, clearly
                    // faster, sits idle (see scoring::should_leave_unanswered).
                    if racing || !self.endgame.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    let mut exclude = tried.to_vec();
                    exclude.push(choice.index);
                    // Only an idle source counts: one busy with our other
                    // requests is no faster for this one than the end-game's
                    // split assumed (plan_shares gives tails to idle sources).
                    let alternative = self.alternative(idx, remaining, &exclude, true);
                    // Its share of the source: our other requests there take theirs.
                    let estimate = self.views.lock().ok().and_then(|v| {
                        v.get(choice.index).and_then(|s| s.measured().map(|m| m / f64::from(s.ours_in_flight.max(1))))
                    });
                    let waited = asked.elapsed().as_secs_f64();
                    if scoring::should_leave_unanswered(waited, remaining, estimate, alternative) {
                        return Err(Miss::Slow(format!("no answer in {:.0} ms with {remaining} bytes to send", waited * 1e3)));
                    }
                }
            }
        };
        self.with_view(choice.index, |v| v.record_answer(asked.elapsed()));
        tracing::trace!(source = %source.name, segment = idx, from, answer_ms = asked.elapsed().as_secs_f64() * 1e3, "answered");
        if let Some(v) = outboard {
            let v = v?;
            t.data = Vec::with_capacity(usize::try_from(v.len()).unwrap_or(0));
            t.verifier = Some(v);
        }
        let body = body.map_err(|e| Miss::Failed(e.to_string()))?;
        if body.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Miss::NotThere);
        }
        let want = if from > 0 || race_bound.is_some() { reqwest::StatusCode::PARTIAL_CONTENT } else { reqwest::StatusCode::OK };
        // (A whole blob for a racer's range is fine: it is all checked.)
        if body.status() != want && !(race_bound.is_some() && body.status() == reqwest::StatusCode::OK) {
            return Err(Miss::Failed(format!("status {} (wanted {want})", body.status())));
        }
        if body.status() == reqwest::StatusCode::OK {
            race_bound = None;
        }
        let Transfer { verifier, data, piece, base: _, race } = t;
        let verifier = verifier.as_mut().ok_or_else(|| Miss::Failed("no outboard".into()))?;
        if let Some(p) = piece {
            let mut st = p.lock();
            st.verifier.get_or_insert_with(|| verifier.clone());
            st.verified = verifier.verified();
            st.rate = None;
        }
        // Where this transfer stops: the end, or a split point (end-game).
        let mut stop = piece.as_ref().and_then(|p| p.lock().split).unwrap_or(verifier.len());
        // The rate this source was chosen for (its expectation includes a round trip).
        let planned_rate = (verifier.len() - from) as f64 / choice.expected_secs.max(1e-3);
        let mut stream = body.bytes_stream();
        let mut tick = tokio::time::interval(SWITCH_CHECK);
        loop {
            tokio::select! {
                // Past its time: a source still sending is slow (not demoted), a silent one failed.
                () = tokio::time::sleep_until(deadline) => {
                    // Past its time but still coming, and no other source
                    // would clearly do the rest sooner: leaving would only
                    // waste what is already on its way (a link that slowed
                    // down still carries it), so it gets more time.
                    if let Some(rate) = progress.rate()
                        && progress.last_byte.is_some_and(|t| t.elapsed() < STILL_COMING)
                    {
                        let remaining = stop.saturating_sub(verifier.verified());
                        let mut exclude = tried.to_vec();
                        exclude.push(choice.index);
                        let alternative = self.alternative(idx, remaining, &exclude, false);
                        if !scoring::should_switch(rate, planned_rate, remaining, alternative, true) {
                            deadline = tokio::time::Instant::now() + scoring::timeout_for(remaining as f64 / rate, true);
                            continue;
                        }
                    }
                    verifier.abandon_pending();
                    return Err(if progress.got > 0 { Miss::Slow("over its time".into()) } else { Miss::Failed("timed out".into()) });
                }
                chunk = stream.next() => match chunk {
                    None if !verifier.is_complete() && race_bound.take().is_some() => {
                        // A racer's first quarter is in. A loser waits to be
                        // stopped by its race; the winner asks for the rest.
                        // (No winner: the range ended short of the quarter.)
                        match race.as_ref().and_then(|r| r.winner()) {
                            Some(w) if w == choice.index => {}
                            Some(_) => std::future::pending::<()>().await,
                            None => return Err(Miss::Failed(format!("its answer ended at byte {}", verifier.verified()))),
                        }
                        let from = verifier.verified();
                        let rest = self
                            .http
                            .get(&blob_url)
                            .header(http::header::AUTHORIZATION, &auth)
                            .header(http::header::RANGE, format!("bytes={from}-"))
                            .send();
                        let rest = tokio::time::timeout(scoring::answer_timeout(rtt, answer) * patience, rest)
                            .await
                            .map_err(|_| Miss::Failed("no answer in time".into()))?
                            .map_err(|e| Miss::Failed(e.to_string()))?;
                        if rest.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                            return Err(Miss::Failed(format!("status {} (wanted 206)", rest.status())));
                        }
                        stream = rest.bytes_stream();
                    }
                    None => {
                        verifier.finish().map_err(|e| Miss::Failed(format!("bad bytes: {e}")))?;
                        break;
                    }
                    Some(Err(e)) => return Err(Miss::Failed(e.to_string())),
                    Some(Ok(c)) => {
                        progress.arrived(c.len());
                        // Only verified groups reach `data`: a lie is caught within 16 KiB.
                        verifier.push(&c, |_, group| data.extend_from_slice(group)).map_err(|e| {
                            Miss::Failed(format!("bad bytes after byte {}: {e}", verifier.verified()))
                        })?;
                        if let Some(p) = piece {
                            let mut st = p.lock();
                            st.verified = verifier.verified();
                            st.rate = progress.rate();
                            stop = st.split.unwrap_or(stop);
                        }
                        if verifier.is_complete() {
                            break;
                        }
                        if verifier.verified() >= stop {
                            // The rest is a helper's: what arrived past the split is dropped.
                            verifier.abandon_pending();
                            break;
                        }
                    }
                },
                _ = tick.tick() => {}
            }
            if let Some(race) = race {
                // The first to a quarter wins (a loser is stopped by its
                // race: see fetch_segment).
                race.received(choice.index, progress.got);
                if verifier.verified() >= race.at && race.winner().is_none() {
                    race.claim(self, choice.index);
                }
            }
            // Running slow (the source slowed down, or stalled)? Leave the
            // rest to a better source if one is clearly faster.
            if let Some(rate) = progress.rate() {
                let remaining = stop.saturating_sub(verifier.verified());
                let mut exclude = tried.to_vec();
                exclude.push(choice.index);
                let alternative = self.alternative(idx, remaining, &exclude, false);
                let endgame = self.endgame.load(std::sync::atomic::Ordering::Relaxed);
                let (sharing_now, estimate) =
                    self.views.lock().ok().and_then(|v| v.get(choice.index).map(|s| (s.ours_in_flight, s.measured()))).unwrap_or((1, None));
                // Chosen on a guess (unmeasured, or a race's seed): held to
                // its source's measured share once there is one.
                let planned = match estimate {
                    Some(e) if !measured => e / f64::from(sharing_now.max(1)),
                    _ => scoring::planned_share(planned_rate, sharing_at_choice, sharing_now),
                };
                if scoring::should_switch(rate, planned, remaining, alternative, endgame) {
                    verifier.abandon_pending();
                    self.with_view(choice.index, |v| v.record_slow(rate, v.ours_in_flight, Instant::now()));
                    return Err(Miss::Slow(format!("{:.2} MB/s with {remaining} bytes left", rate / 1e6)));
                }
            }
        }
        progress.done = true;
        tracing::debug!(source = %source.name, segment = idx, from, bytes = progress.got, secs = progress.started.elapsed().as_secs_f64(), "fetched");
        Ok(())
    }

    /// Expected seconds of the best healthy, not demoted source outside
    /// `exclude` (with `idle_only`: among those with none of our requests).
    fn alternative(&self, idx: usize, bytes: u64, exclude: &[usize], idle_only: bool) -> Option<f64> {
        let v = self.views.lock().ok()?;
        scoring::rank(&v, idx, bytes)
            .into_iter()
            .find(|r| {
                let s = &v[r.index];
                !exclude.contains(&r.index) && !s.demoted && s.healthy && (!idle_only || s.ours_in_flight == 0)
            })
            .map(|r| r.expected_secs)
    }

    fn decrypt(&self, i: u64, frame: &[u8]) -> Result<Bytes, String> {
        let plain = keys::open(&self.key, frame, &Expected { title: &self.manifest.title, kind: FrameKind::Media, sequence: i })
            .map_err(|e| format!("segment {i} does not decrypt: {e}"))?;
        let mut plain = Bytes::from(plain);
        plain.truncate(self.manifest.segment_plain_len(i) as usize);
        Ok(plain)
    }

    fn with_view(&self, i: usize, f: impl FnOnce(&mut SourceView)) {
        if let Ok(mut v) = self.views.lock()
            && let Some(view) = v.get_mut(i)
        {
            f(view);
        }
    }

    /// Plays the whole title into `out`: pulses, races the first segment,
    /// and once the race is decided fetches `parallel` segments at once
    /// (out of order) from the other sources too; writes them in order.
    pub async fn play_to<W: AsyncWrite + Unpin>(self: &Arc<Self>, out: &mut W) -> Result<PlayReport, ClientError> {
        let started = Instant::now();
        // The first segment's outboard comes with the first pulse, while the
        // links are still idle: asked with the raced bodies, it queued behind
        // hundreds of KB of them (in 2 runs of 3 in bench/multisource.sh it
        // came 46-57 ms after the node sent it), every racer's groups waited
        // unverified meanwhile, and the race went to whichever link's queue
        // happened to empty first.
        tokio::join!(self.pulse(), self.prefetch_outboard(0));
        // Pulses go on during the playback (health, load, bitmaps change).
        // and every source's throughput is metered: bytes from it over each
        // interval it was busy with our requests throughout.
        self.metered.store(true, std::sync::atomic::Ordering::Relaxed);
        let me = Arc::downgrade(self);
        let pulses = tokio::spawn(async move {
            let mut last_pulse = Instant::now();
            let mut last: Vec<(bool, u64)> = Vec::new();
            let mut tick = tokio::time::interval(METER_EVERY);
            loop {
                tick.tick().await;
                let Some(s) = me.upgrade() else { break };
                if let Ok(mut views) = s.views.lock() {
                    let now = Instant::now();
                    last.resize(views.len(), (false, 0));
                    tracing::trace!(received = ?views.iter().zip(last.iter()).map(|(v, (_, r))| v.received.saturating_sub(*r)).collect::<Vec<_>>(),
                        in_flight = ?views.iter().map(|v| v.ours_in_flight).collect::<Vec<_>>(), "meter");
                    for (v, (was_busy, received)) in views.iter_mut().zip(last.iter_mut()) {
                        let busy = v.ours_in_flight > 0;
                        // Busy throughout and nothing came: for a source that
                        // has been delivering, that is a sample too (a stalled
                        // link, or one still carrying bytes of requests we
                        // cancelled), or the estimate would stay at what it did
                        // before it stalled. It never seeds an estimate: a
                        // source not yet measured may just not have started
                        // (a first byte late under load, a parent's miss).
                        if *was_busy && busy && (v.received > *received || v.measured().is_some()) {
                            v.record_interval(v.received.saturating_sub(*received), METER_EVERY.as_secs_f64(), now);
                        }
                        (*was_busy, *received) = (busy, v.received);
                    }
                }
                if last_pulse.elapsed() >= PULSE_EVERY {
                    last_pulse = Instant::now();
                    let s2 = s.clone();
                    tokio::spawn(async move { s2.pulse().await });
                }
            }
        });
        let _stop_pulses = AbortOnDrop(pulses);
        let n = self.manifest.segments.len() as u64;
        let mut report = PlayReport::default();
        if n == 0 {
            out.flush().await?;
            return Ok(report);
        }
        // The first segment decides the start-up time: raced, and the window
        // starts only once the race is decided, on the other sources (the
        // winner's is reserved for the first segment until it is in).
        let mut first = std::pin::pin!(self.segment_raced(0));
        let mut first_done = false;
        let mut pending: BTreeMap<u64, Bytes> = BTreeMap::new();
        {
            let mut reserved = self.reserved.subscribe();
            tokio::select! {
                r = &mut first => {
                    first_done = true;
                    let (plain, source) = r?;
                    report.first_segment = started.elapsed();
                    *report.by_source.entry(source).or_default() += plain.len() as u64;
                    pending.insert(0, plain);
                }
                _ = reserved.wait_for(Option::is_some) => {}
            }
        }
        let mut fetches = futures_util::stream::iter(1..n)
            .map(|i| {
                let me = self.clone();
                if i + 1 == n {
                    self.endgame.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                async move { (i, me.segment(i).await) }
            })
            .buffer_unordered(self.parallel);
        let mut next = 0u64;
        let mut fetches_done = false;
        // End-game helpers: idle sources fetching the tails of the last segments.
        let mut shares = futures_util::stream::FuturesUnordered::new();
        let mut helping: Vec<usize> = Vec::new();
        let mut share_check = tokio::time::interval(SHARE_CHECK);
        share_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(p) = pending.remove(&next) {
                out.write_all(&p).await?;
                report.bytes += p.len() as u64;
                next += 1;
            }
            self.playhead.store(next, std::sync::atomic::Ordering::Relaxed);
            let (i, r) = tokio::select! {
                r = &mut first, if !first_done => {
                    first_done = true;
                    report.first_segment = started.elapsed();
                    (0, r)
                }
                f = fetches.next(), if !fetches_done => match f {
                    Some(f) => f,
                    None if first_done => break,
                    None => {
                        fetches_done = true;
                        continue;
                    }
                },
                Some(helper) = shares.next(), if !shares.is_empty() => {
                    helping.retain(|&h| h != helper);
                    continue;
                }
                // (Checked from the start: the flag is set while `fetches` is polled.)
                _ = share_check.tick() => {
                    if !self.endgame.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    for (helper, fut) in self.plan_shares(&helping) {
                        helping.push(helper);
                        shares.push(fut);
                    }
                    continue;
                }
            };
            let (plain, source) = r?;
            *report.by_source.entry(source).or_default() += plain.len() as u64;
            if first_done && fetches_done {
                pending.insert(i, plain);
                break;
            }
            // (Before the first segment, playback has not started: no stall.)
            if first_done && i != next && !pending.contains_key(&next) {
                let _ = self.events.send(Event::Stall { index: next });
            }
            pending.insert(i, plain);
        }
        while let Some(p) = pending.remove(&next) {
            out.write_all(&p).await?;
            report.bytes += p.len() as u64;
            next += 1;
        }
        out.flush().await?;
        report.demoted = self.views.lock().map(|v| v.iter().filter(|s| s.demoted).map(|s| s.name.clone()).collect()).unwrap_or_default();
        Ok(report)
    }
}

/// Aborts a background task when dropped (the playback ended or failed).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn ed25519_key(b: &[u8; 32]) -> Result<ed25519_dalek::VerifyingKey, ClientError> {
    ed25519_dalek::VerifyingKey::from_bytes(b).map_err(|_| ClientError::Invalid("origin key is not an Ed25519 key".into()))
}
