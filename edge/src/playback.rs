//! `GET`/`HEAD /v1/play/<token>/<name>`: a title's plaintext as one resource
//! with RFC 9110 ranges, for players that know nothing of Tranzcast.
//!
//! The token (see `tranzcast_proto::playback`) is the credential and carries
//! the title key sealed to this edge's X25519 key pair. The pair lives in
//! memory only and rotates; an opened session (its title key and manifest) is
//! kept in memory while requests use it and dropped a minute after the last.
//! Segments come through the normal store and coalesced miss path, so what
//! reaches the disk is ciphertext; each requested segment is decrypted in
//! memory and only the requested bytes are sent.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{Request, Response, StatusCode};
use tranzcast_net::Body;
use tranzcast_proto::keys::{self, Expected, TitleKey};
use tranzcast_proto::manifest::{Manifest, SignedManifest};
use tranzcast_proto::playback::{EdgeKey, MAX_LIFETIME_SECS, PlaybackGrant, PlaybackToken};
use tranzcast_proto::{BlobAddress, frame::FrameKind};

use crate::Inner;
use crate::reply::{Fail, denied, error};

/// Decrypted segments kept in memory (never on disk) for the ranges that follow.
const PLAIN_CACHE_BYTES: u64 = 128 << 20;
/// An opened session is forgotten (its key dropped) this long after its last request.
const SESSION_IDLE: Duration = Duration::from_secs(60);
/// Key pairs kept: the current one and the two before, so a token (at most
/// `MAX_LIFETIME_SECS` long, sealed to the key the origin last heard of)
/// never outlives its key.
const KEYS_KEPT: usize = 3;

/// This edge's playback key pairs, newest first, with when each was made.
pub(crate) struct PlaybackKeys(RwLock<VecDeque<(Arc<EdgeKey>, Instant)>>);

impl PlaybackKeys {
    pub fn new() -> Self {
        Self(RwLock::new(VecDeque::from([(Arc::new(EdgeKey::from_secret(tranzcast_proto::random_bytes())), Instant::now())])))
    }

    /// The current public key, hex (sent to the origin with each heartbeat).
    pub fn current_public_hex(&self) -> Option<String> {
        crate::read(&self.0).front().map(|(k, _)| hex::encode(k.public))
    }

    /// Makes a new pair when the current one is `MAX_LIFETIME_SECS` old.
    pub fn rotate_if_due(&self) {
        let mut keys = crate::write(&self.0);
        if keys.front().is_some_and(|(_, made)| made.elapsed() >= Duration::from_secs(MAX_LIFETIME_SECS)) {
            keys.push_front((Arc::new(EdgeKey::from_secret(tranzcast_proto::random_bytes())), Instant::now()));
            keys.truncate(KEYS_KEPT);
            tracing::info!("playback key pair rotated");
        }
    }

    fn find(&self, id: &[u8; 8]) -> Option<Arc<EdgeKey>> {
        crate::read(&self.0).iter().find(|(k, _)| &k.id == id).map(|(k, _)| k.clone())
    }
}

/// A token whose signature checked and whose key this edge unsealed.
pub(crate) struct OpenSession {
    grant: PlaybackGrant,
    key: TitleKey,
    manifest: Manifest,
    etag: String,
}

/// Memory the open sessions may hold: about 130,000 of short titles, 4,000
/// of 2-hour titles in 4-second segments. A session evicted is opened again
/// from its token on its next request.
const SESSION_BYTES: u64 = 256 << 20;

/// What a session holds, roughly: its grant, key and token, and its
/// manifest's segment addresses.
fn session_weight(segments: usize) -> u32 {
    u32::try_from(2048 + segments.saturating_mul(32)).unwrap_or(u32::MAX)
}

/// Sessions, the plaintext cache and counters.
pub(crate) struct Playback {
    pub keys: PlaybackKeys,
    /// By blake3 of the token text: the signature is checked once per token.
    sessions: moka::future::Cache<[u8; 32], Arc<OpenSession>>,
    /// Decrypted segments by their blob address.
    plain: moka::future::Cache<BlobAddress, Bytes>,
    pub requests: AtomicU64,
    pub refused: AtomicU64,
    pub decrypted_bytes: AtomicU64,
}

impl Playback {
    pub fn new() -> Self {
        Self {
            keys: PlaybackKeys::new(),
            // Weighed by what a session holds (its title's manifest, tens of
            // KiB for a long title), not counted: sessions of long titles
            // would otherwise pin gigabytes before the count was reached.
            sessions: moka::future::Cache::builder()
                .weigher(|_, s: &Arc<OpenSession>| session_weight(s.manifest.segments.len()))
                .max_capacity(SESSION_BYTES)
                .time_to_idle(SESSION_IDLE)
                .build(),
            plain: moka::future::Cache::builder()
                .weigher(|_, b: &Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
                .max_capacity(PLAIN_CACHE_BYTES)
                .time_to_idle(SESSION_IDLE)
                .build(),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            decrypted_bytes: AtomicU64::new(0),
        }
    }

    /// Sessions whose key is in memory now (eventually consistent: a gauge).
    pub fn open_sessions(&self) -> u64 {
        self.sessions.entry_count()
    }
}

type Denied = Fail;

fn deny(code: &'static str, reason: impl Into<String>) -> Denied {
    error(StatusCode::FORBIDDEN, code, reason)
}

/// Answers a playback request.
pub(crate) async fn serve(inner: Arc<Inner>, token: &str, req: &Request<Bytes>, client: IpAddr) -> Result<Response<Body>, Denied> {
    let pb = &inner.playback;
    pb.requests.fetch_add(1, Ordering::Relaxed);
    let session = match open(&inner, token).await {
        Ok(s) => s,
        Err(d) => {
            pb.refused.fetch_add(1, Ordering::Relaxed);
            return Err(d);
        }
    };
    // Fails closed: no list read yet refuses too.
    let revocation = crate::read(&inner.revoked).check(&session.grant.session).map_err(|(status, code, reason)| {
        let reason = if code == "revoked" { "this playback session was revoked".to_string() } else { reason };
        denied((status, code, reason))
    });
    let checked = revocation.and_then(|()| session.grant.check(crate::now_secs(), client).map_err(|(code, reason)| deny(code, reason)));
    if let Err(d) = checked {
        pb.refused.fetch_add(1, Ordering::Relaxed);
        return Err(d);
    }
    let len = session.manifest.plaintext_len;
    let media_type = session.manifest.media_type.clone();
    let etag = session.etag.clone();
    let source = PlainSource { inner: inner.clone(), session, client };
    let rep = tranzcast_net::ranged::Representation {
        etag: &etag,
        content_type: &media_type,
        max_ranges: inner.config.limits.max_ranges as usize,
    };
    Ok(tranzcast_net::ranged::respond_from(req.method(), req.headers(), &source, len, &rep))
}

/// The session a token opens: from memory, or verified, unsealed and given
/// its manifest now.
async fn open(inner: &Arc<Inner>, token: &str) -> Result<Arc<OpenSession>, Denied> {
    let id = *blake3::hash(token.as_bytes()).as_bytes();
    if let Some(s) = inner.playback.sessions.get(&id).await {
        return Ok(s);
    }
    let t = PlaybackToken::from_text(token).map_err(|e| deny("bad_token", format!("malformed playback token: {e}")))?;
    let grant = t.verify(&inner.origin_key).map_err(|_| deny("forged", "the playback token is not signed by the origin"))?.clone();
    let edge_key = inner.playback.keys.find(&grant.edge_key).ok_or_else(|| {
        deny("wrong_edge", "the playback URL was issued for another edge (or before this edge restarted); ask the origin for a new one")
    })?;
    let key = t.unseal(&edge_key).map_err(|_| deny("forged", "the playback token does not open"))?;
    let mb = crate::mirror::manifest_bytes(inner, &grant.title)
        .await
        .map_err(|e| error(StatusCode::BAD_GATEWAY, "upstream", format!("manifest: {e}")))?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "unknown_title", format!("no title {}", grant.title)))?;
    let sm = SignedManifest::decode(&mb).map_err(|e| error(StatusCode::BAD_GATEWAY, "upstream", format!("manifest: {e}")))?;
    let manifest = sm.verify(&inner.origin_key).map_err(|e| error(StatusCode::BAD_GATEWAY, "upstream", format!("manifest: {e}")))?.clone();
    // The ETag names the title's content (its manifest), the same for every session.
    let etag = BlobAddress::of(&mb).etag();
    let s = Arc::new(OpenSession { grant, key, manifest, etag });
    inner.playback.sessions.insert(id, s.clone()).await;
    Ok(s)
}

/// The title's plaintext, produced segment by segment from ciphertext.
struct PlainSource {
    inner: Arc<Inner>,
    session: Arc<OpenSession>,
    /// Charged for the upstream fetches its misses start: a viewer may
    /// start as many as on the blob route, however many ranges it asks.
    client: IpAddr,
}

impl tranzcast_net::ranged::Source for PlainSource {
    fn stream(&self, start: u64, end: u64) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        let seg = u64::from(self.session.manifest.segment_size);
        if end <= start {
            return futures_util::stream::empty().boxed();
        }
        let (first, last) = (start / seg, (end - 1) / seg);
        let inner = self.inner.clone();
        let session = self.session.clone();
        let client = self.client;
        futures_util::stream::iter(first..=last)
            .map(move |i| {
                let (inner, session) = (inner.clone(), session.clone());
                async move { segment_plain(&inner, &session, i, client).await.map(|p| (i, p)) }
            })
            // One segment ahead while the current one is sent.
            .buffered(2)
            .flat_map(move |r| {
                let parts: Vec<Result<Bytes, std::io::Error>> = match r {
                    Err(e) => vec![Err(std::io::Error::other(e))],
                    Ok((i, plain)) => {
                        let len = plain.len() as u64;
                        let from = (start.max(i * seg) - i * seg).min(len);
                        let to = (end.min((i + 1) * seg) - i * seg).min(len);
                        let b = plain.slice(from as usize..to.max(from) as usize);
                        let frame = tranzcast_net::ranged::FRAME;
                        (0..b.len().div_ceil(frame)).map(|k| Ok(b.slice(k * frame..((k + 1) * frame).min(b.len())))).collect()
                    }
                };
                futures_util::stream::iter(parts)
            })
            .boxed()
    }
}

/// Segment `i`'s plaintext: from the in-memory cache, or its ciphertext
/// (store, or the coalesced, verified miss path) decrypted now.
async fn segment_plain(inner: &Arc<Inner>, session: &Arc<OpenSession>, i: u64, client: IpAddr) -> Result<Bytes, String> {
    let m = &session.manifest;
    let addr = *m.segments.get(i as usize).ok_or_else(|| format!("no segment {i}"))?;
    let (inner2, session2) = (inner.clone(), session.clone());
    inner
        .playback
        .plain
        .try_get_with(addr, async move {
            let frame = ciphertext(&inner2, addr, client).await?;
            let len = session2.manifest.segment_plain_len(i) as usize;
            let plain = tokio::task::spawn_blocking(move || {
                let m = &session2.manifest;
                keys::open(&session2.key, &frame, &Expected { title: &m.title, kind: FrameKind::Media, sequence: i })
                    .map_err(|e| format!("segment {i} does not decrypt: {e}"))
            })
            .await
            .map_err(|e| e.to_string())??;
            // Every segment is padded to segment_size: a shorter one is not
            // what the manifest describes (the ranges below are cut by it).
            if plain.len() < len {
                return Err(format!("segment {i} holds {} bytes, the manifest says {len}", plain.len()));
            }
            let mut plain = Bytes::from(plain);
            plain.truncate(len);
            inner2.playback.decrypted_bytes.fetch_add(plain.len() as u64, Ordering::Relaxed);
            Ok::<_, String>(plain)
        })
        .await
        .map_err(|e: Arc<String>| e.to_string())
}

/// A whole framed segment, verified against its address; a miss is
/// charged to `client`, as on the blob route.
async fn ciphertext(inner: &Arc<Inner>, addr: BlobAddress, client: IpAddr) -> Result<Bytes, String> {
    let (b, hit) = crate::blobs::read_or_fetch(inner, addr, Some(client)).await.map_err(|f| f.reason)?;
    let prefix = &b[..b.len().min(tranzcast_proto::owner::PREFIX_LEN)];
    crate::mirror::read_started(inner, &addr, prefix, hit, None);
    Ok(b)
}
