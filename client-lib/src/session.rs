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

mod attempt;
mod open;
mod parts;
mod play;

use self::parts::*;

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

impl Session {
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
}
