//! A playback session: a ticket validated at the origin, the title key
//! joined from its two halves, the signed manifest, and the cluster's
//! sources; segments fetched in parallel from the best source for each,
//! verified against their blake3 address, decrypted and delivered in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tranzcast_proto::frame::FrameKind;
use tranzcast_proto::keys::{self, Expected, TitleKey};
use tranzcast_proto::manifest::Manifest;
use tranzcast_proto::pulse::EdgeRole;

use crate::Event;
use crate::{ClientError, PeerService};

mod driver;
mod open;
mod play;

use self::driver::Core;

/// How to open a session.
#[derive(Clone)]
pub struct OpenOptions {
    /// The origin's URL (`https://...`); a cluster's several origins
    /// separated by commas, tried in turn when one fails.
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

/// Decrypted segments kept for the local gateway's range requests.
const PLAIN_CACHE_BYTES: u64 = 128 << 20;

/// An open session (the ticket has been validated: a play is counted).
pub struct Session {
    /// Decrypted segments by index; concurrent asks for one segment share one fetch.
    plain: moka::future::Cache<u64, Bytes>,
    key: TitleKey,
    manifest: Manifest,
    certificate: String,
    /// The signed manifest as the origin sent it (handed to our peer service).
    signed_manifest: Bytes,
    replacement: Option<String>,
    sources: Vec<Source>,
    parallel: usize,
    local: Option<Arc<dyn PeerService>>,
    /// The scheduler and the task that does its I/O (see `driver`).
    core: Arc<Core>,
    _driver: driver::AbortOnDrop,
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

/// The source name of segments read from this client's own store.
pub const LOCAL: &str = "local";

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
        let keep: Vec<bool> = self.sources.iter().map(|s| s.name != name).collect();
        if keep.contains(&false) {
            self.keep_sources(&keep)?;
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
        self.core.events.subscribe()
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
        self.keep_sources(&keep)
    }

    fn keep_sources(&mut self, keep: &[bool]) -> Result<(), ClientError> {
        if !self.core.retain_sources(keep) {
            return Err(ClientError::Invalid("sources can only change before the first fetch".into()));
        }
        let mut k = keep.iter();
        self.sources.retain(|_| *k.next().unwrap_or(&false));
        Ok(())
    }

    /// The sources the origin named.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Each source's throughput estimate (bytes/s) as the session sees it
    /// now, by name (None: not measured, or forgotten as stale).
    pub fn estimates(&self) -> Vec<(String, Option<f64>)> {
        self.core.estimates()
    }

    /// Pulses every source at once: round trip, load, and which segments it holds.
    pub async fn pulse(&self) {
        self.core.pulse().await;
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

    async fn fetch_segment(&self, i: u64, raced: bool) -> Result<(Bytes, String), ClientError> {
        let idx = usize::try_from(i).map_err(|_| ClientError::Invalid("segment index".into()))?;
        let addr = *self.manifest.segments.get(idx).ok_or_else(|| ClientError::Invalid(format!("no segment {i}")))?;
        // Our own store first: pre-cast segments, or ones played before.
        if let Some(local) = &self.local {
            let l = local.clone();
            if let Ok(Some(frame)) = tokio::task::spawn_blocking(move || l.local_blob(&addr)).await {
                let plain = self.decrypt(i, &frame).map_err(ClientError::Invalid)?;
                let _ = self.core.events.send(Event::Segment { index: i, source: LOCAL.into(), bytes: plain.len() as u64 });
                return Ok((plain, LOCAL.into()));
            }
        }
        let (frame, source) = self.core.want(i, raced).await?;
        let plain = self.decrypt(i, &frame).map_err(ClientError::Invalid)?;
        self.keep(frame);
        Ok((plain, self.source_name(source)))
    }

    fn source_name(&self, index: usize) -> String {
        self.sources.get(index).map_or_else(|| LOCAL.to_string(), |s| s.name.clone())
    }

    /// Keeps a verified frame (ciphertext) for other viewers; the playback does not wait for it.
    fn keep(&self, frame: Bytes) {
        if let Some(local) = &self.local {
            let l = local.clone();
            tokio::task::spawn_blocking(move || l.keep_blob(&frame));
        }
    }

    fn decrypt(&self, i: u64, frame: &[u8]) -> Result<Bytes, String> {
        let plain = keys::open(&self.key, frame, &Expected { title: &self.manifest.title, kind: FrameKind::Media, sequence: i })
            .map_err(|e| format!("segment {i} does not decrypt: {e}"))?;
        let mut plain = Bytes::from(plain);
        plain.truncate(self.manifest.segment_plain_len(i) as usize);
        Ok(plain)
    }
}
