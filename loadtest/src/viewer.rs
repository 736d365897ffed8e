//! One simulated viewer (I/O): presses play (the ticket is validated at the
//! origin, a play is counted), pulses every source, then plays through the
//! real smart client — segments fetched in parallel and out of order from
//! the best source for each, the first raced, every byte verified against
//! its blake3 and decrypted — while [`crate::playout::Player`] keeps the
//! playhead, the buffer, stalls and seeks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use tranzcast_client::{OpenOptions, Session};

use crate::demand::ViewerPlan;
use crate::playout::{AccessLink, Player};
use crate::titles::Title;

/// Counters every viewer adds to as it goes (the live display and the
/// time series read them).
#[derive(Debug, Default)]
pub struct Live {
    /// Viewers that pressed play.
    pub started: AtomicU64,
    /// Viewers whose playback began.
    pub playing: AtomicU64,
    /// Viewers done (finished, failed or cut).
    pub ended: AtomicU64,
    /// Viewers that failed.
    pub failed: AtomicU64,
    /// Viewers stalled right now.
    pub stalled: AtomicU64,
    /// Stall events so far.
    pub stalls: AtomicU64,
    /// Plaintext bytes delivered to players, verified.
    pub bytes: AtomicU64,
    /// Segments delivered.
    pub segments: AtomicU64,
    /// Segment fetches that took over [`SLOW_FETCH`].
    pub slow: AtomicU64,
    /// Segments whose plaintext differs from the original (must stay 0).
    pub mismatches: AtomicU64,
}

/// What one viewer saw.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerOutcome {
    /// Its number.
    pub id: usize,
    /// Its title.
    pub title: String,
    /// Seconds from the run's start to pressing play.
    pub arrival_s: f64,
    /// Milliseconds from pressing play to playback start (none: it never started).
    pub startup_ms: Option<f64>,
    /// Of which: milliseconds to open the session (the ticket validated at
    /// the origin, the certificate, key part and manifest back).
    pub open_ms: Option<f64>,
    /// Stalls: (seconds from the run's start, length in seconds).
    pub stalls: Vec<(f64, f64)>,
    /// Milliseconds waited after each seek.
    pub seek_ms: Vec<f64>,
    /// Seconds played.
    pub play_s: f64,
    /// Stall time over stall plus play time.
    pub rebuffer_ratio: f64,
    /// Segments played.
    pub segments_played: u64,
    /// Segments fetched.
    pub segments_fetched: u64,
    /// Plaintext bytes fetched, verified.
    pub bytes: u64,
    /// The same segments as the servers send them: framed, sealed, the last
    /// padded to the segment size (every segment's blob is one size).
    pub wire_bytes: u64,
    /// Bytes by the role of the source that delivered them (edge, node, peer, local).
    pub by_role: BTreeMap<String, u64>,
    /// Milliseconds to fetch each segment (ask to verified plaintext).
    pub segment_ms: Vec<f64>,
    /// Segments read from the viewer's home that were pre-cast there.
    pub precast_hits: u64,
    /// Segments whose plaintext differs from the original.
    pub mismatches: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
    /// Whether it played all it meant to.
    pub finished: bool,
}

/// A segment fetch slower than this is counted as slow (a sign of trouble
/// upstream, even when the buffer hides it).
pub const SLOW_FETCH: Duration = Duration::from_millis(500);

/// Where a viewer connects and what it watches.
#[derive(Debug, Clone)]
pub struct ViewerSetup {
    /// The origin's URL.
    pub origin: String,
    /// The ticket it bought.
    pub ticket: String,
    /// The HTTP client it shares (connections) with its neighbours.
    pub http: reqwest::Client,
    /// Its home's peer service (pre-cast segments, kept segments), if any.
    pub home: Option<Arc<tranzcast_edge::EdgeServer>>,
    /// Segments pre-cast to homes (reads of these from home are pre-cast hits).
    pub precast_segments: u64,
    /// Wall time of one segment's playback.
    pub segment_wall: Duration,
    /// Buffer, in segments.
    pub buffer: u64,
    /// Segments fetched at once.
    pub parallel: usize,
    /// The viewer's access link: Mbit/s (0: not modelled) and round trip.
    pub access: (f64, Duration),
}

/// Plays one viewer's plan to its end (or until `deadline`).
pub async fn watch(
    plan: ViewerPlan,
    title: &Title,
    setup: ViewerSetup,
    run_start: Instant,
    deadline: Instant,
    live: &Live,
) -> ViewerOutcome {
    let mut out = ViewerOutcome {
        id: plan.id,
        title: title.id.clone(),
        arrival_s: plan.arrival.as_secs_f64(),
        startup_ms: None,
        open_ms: None,
        stalls: Vec::new(),
        seek_ms: Vec::new(),
        play_s: 0.0,
        rebuffer_ratio: 0.0,
        segments_played: 0,
        segments_fetched: 0,
        bytes: 0,
        wire_bytes: 0,
        by_role: BTreeMap::new(),
        segment_ms: Vec::new(),
        precast_hits: 0,
        mismatches: 0,
        error: None,
        finished: false,
    };
    live.started.fetch_add(1, Ordering::Relaxed);
    let pressed = Instant::now();
    let r = tokio::time::timeout_at(deadline.into(), play(&plan, title, &setup, pressed, &mut out, live)).await;
    match r {
        Ok(Ok(player)) => {
            out.finished = player.done();
            out.segments_played = player.played();
            out.startup_ms = player.startup.map(|d| d.as_secs_f64() * 1000.0);
            let offset = (pressed - run_start).as_secs_f64();
            out.stalls = player.stalls.iter().map(|s| (offset + s.at.as_secs_f64(), s.len.as_secs_f64())).collect();
            out.seek_ms = player.seek_waits.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
            out.play_s = player.play_time.as_secs_f64();
            out.rebuffer_ratio = player.rebuffer_ratio();
        }
        Ok(Err(e)) => {
            out.error = Some(e);
            live.failed.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => out.error = Some("cut at the run's time limit".into()),
    }
    live.ended.fetch_add(1, Ordering::Relaxed);
    out
}

async fn play(
    plan: &ViewerPlan,
    title: &Title,
    setup: &ViewerSetup,
    pressed: Instant,
    out: &mut ViewerOutcome,
    live: &Live,
) -> Result<Player, String> {
    let opts = OpenOptions {
        origin: setup.origin.clone(),
        ticket: setup.ticket.clone(),
        ca_pem: String::new(),
        parallel: setup.parallel,
        local: setup.home.clone().map(|h| h as Arc<dyn tranzcast_client::PeerService>),
    };
    let session = Arc::new(Session::open_with(opts, setup.http.clone()).await.map_err(|e| format!("open: {e}"))?);
    let roles: BTreeMap<String, String> = session.sources().iter().map(|s| (s.name.clone(), s.role.as_str().to_string())).collect();
    out.open_ms = Some(pressed.elapsed().as_secs_f64() * 1000.0);
    session.pulse().await;
    let segments = session.manifest().segments.len() as u64;
    let wire_len = u64::from(session.manifest().segment_size) + tranzcast_proto::frame::OVERHEAD as u64;
    let mut player = Player::new(segments, plan.watch, plan.seek, setup.segment_wall, setup.buffer);
    let link = Arc::new(std::sync::Mutex::new(AccessLink::new(setup.access.0, setup.access.1)));
    let roles = Arc::new(roles);
    let mut in_flight = FuturesUnordered::new();
    // The first segment, and the first after a seek, is raced on two sources.
    let mut race_next = true;
    let mut was_stalled = false;
    loop {
        if player.take_seek() {
            in_flight = FuturesUnordered::new();
            race_next = true;
        }
        while in_flight.len() < setup.parallel {
            let Some(i) = player.want() else { break };
            let (s, raced, link, roles) = (session.clone(), std::mem::take(&mut race_next), link.clone(), roles.clone());
            in_flight.push(async move {
                let t = Instant::now();
                let r = if raced { s.segment_raced(i).await } else { s.segment(i).await };
                // Bytes from the network cross the viewer's access link; reads from home do not.
                if let Ok((plain, source)) = &r
                    && role_of(&roles, source) != "local"
                {
                    let ready = deliver(&link, t - pressed, pressed.elapsed(), plain.len() as u64);
                    tokio::time::sleep_until((pressed + ready).into()).await;
                }
                (i, t.elapsed(), r)
            });
        }
        if player.done() {
            break;
        }
        let deadline = player.deadline().map(|d| pressed + d);
        tokio::select! {
            Some((i, took, r)) = in_flight.next() => {
                let (plain, source) = r.map_err(|e| format!("segment {i}: {e}"))?;
                let now = pressed.elapsed();
                let role = role_of(&roles, &source);
                *out.by_role.entry(role.to_string()).or_default() += plain.len() as u64;
                if role == "local" && i < setup.precast_segments {
                    out.precast_hits += 1;
                }
                if let Some(h) = title.plain.get(i as usize) && blake3::hash(&plain) != *h {
                    out.mismatches += 1;
                    live.mismatches.fetch_add(1, Ordering::Relaxed);
                }
                out.segments_fetched += 1;
                out.bytes += plain.len() as u64;
                out.wire_bytes += wire_len;
                out.segment_ms.push(took.as_secs_f64() * 1000.0);
                if took > SLOW_FETCH {
                    live.slow.fetch_add(1, Ordering::Relaxed);
                }
                live.bytes.fetch_add(plain.len() as u64, Ordering::Relaxed);
                live.segments.fetch_add(1, Ordering::Relaxed);
                let starting = player.startup.is_none();
                player.ready(i, now);
                if starting && player.startup.is_some() {
                    live.playing.fetch_add(1, Ordering::Relaxed);
                }
            }
            () = sleep_until(deadline) => player.tick(pressed.elapsed()),
        }
        let stalled = player.stalled();
        if stalled != was_stalled {
            if stalled {
                live.stalled.fetch_add(1, Ordering::Relaxed);
                live.stalls.fetch_add(1, Ordering::Relaxed);
            } else {
                live.stalled.fetch_sub(1, Ordering::Relaxed);
            }
            was_stalled = stalled;
        }
    }
    if was_stalled {
        live.stalled.fetch_sub(1, Ordering::Relaxed);
    }
    Ok(player)
}

fn deliver(link: &std::sync::Mutex<AccessLink>, asked: Duration, now: Duration, bytes: u64) -> Duration {
    link.lock().map_or(now, |mut l| l.deliver(asked, now, bytes))
}

fn role_of<'a>(roles: &'a BTreeMap<String, String>, source: &str) -> &'a str {
    if source == tranzcast_client::LOCAL { "local" } else { roles.get(source).map_or("other", String::as_str) }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Shares of bytes by source role over many viewers.
pub fn bytes_by_role(outcomes: &[ViewerOutcome]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        for (r, b) in &o.by_role {
            *m.entry(r.clone()).or_default() += b;
        }
    }
    m
}

/// A counter shared by many tasks.
pub(crate) fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}
