//! Plays (`POST /v1/play`): a ticket validated (Fig. 13, `crate::validation`)
//! under the state's lock, the grant and its effects written in one synced
//! batch, and the answer: the certificate, the replacement ticket, the
//! signed manifest and the live sources; or, in url mode, playback URLs with
//! the title key sealed to each edge.

use super::*;

/// Edges that can serve playback URLs now: live, with a playback key, least loaded first.
fn playback_edges(inner: &Inner, n: usize) -> Result<Vec<(Member, [u8; 32])>, ApiError> {
    let mut edges: Vec<(Member, [u8; 32])> = inner
        .live_members()
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|m| m.role == "edge")
        .filter_map(|m| {
            let mut k = [0u8; 32];
            hex::decode_to_slice(m.playback_key.as_deref()?, &mut k).ok()?;
            Some((m, k))
        })
        .collect();
    // Healthy edges first (one whose revocation list is stale or unread is a
    // last resort), then the least loaded.
    edges.sort_by(|a, b| (!a.0.healthy()).cmp(&!b.0.healthy()).then(a.0.load.total_cmp(&b.0.load)).then_with(|| a.0.name.cmp(&b.0.name)));
    edges.truncate(n);
    Ok(edges)
}

/// A play up to its decision: the request read, the ticket's signature
/// checked, the title looked up.
struct Prepared {
    ticket: tranzcast_proto::ticket::PlayTicket,
    play_key: Option<[u8; 32]>,
    url: Option<wire::UrlMode>,
    bind: Option<std::net::IpAddr>,
    edges: Vec<(Member, [u8; 32])>,
    entry: ValidationEntry,
    key: Option<TitleKey>,
    manifest_addr: Option<BlobAddress>,
    manifest_bytes: Option<Bytes>,
    running_time_s: u64,
    now: u64,
}

/// What the state's read-decide-write hands back.
type Decided = Result<Result<validation::Grant, Refusal>, ApiError>;

/// `POST /v1/play` on the blocking pool (any engine).
pub(super) fn play(inner: &Inner, req: &Request<Bytes>, cx: RequestContext) -> ApiResult {
    let mut p = prepare(inner, req, cx)?;
    let grant = inner.state.validate(&p.ticket.serial, |view| decide(inner, &p, view)).map_err(ApiError::internal)??;
    finish(inner, &mut p, grant)
}

/// `POST /v1/play` on the embedded engine, on the async runtime: the
/// decision holds its stripe's lock across the group commit it waits for,
/// without a thread of its own (no hop to the blocking pool).
pub(super) async fn play_async(inner: &Inner, state: &crate::state::OriginState, req: &Request<Bytes>, cx: RequestContext) -> ApiResult {
    let mut p = prepare(inner, req, cx)?;
    let grant = state.validate_async(&p.ticket.serial, |view| decide(inner, &p, view)).await.map_err(ApiError::internal)??;
    finish(inner, &mut p, grant)
}

fn prepare(inner: &Inner, req: &Request<Bytes>, cx: RequestContext) -> Result<Prepared, ApiError> {
    let p = wire::play(req.body()).map_err(ApiError::wire)?;
    // A retry after a lost answer carries its first attempt's key.
    let play_key = idempotency_key(req)?.map(|k| *blake3::hash(k.as_bytes()).as_bytes());
    let bind = match p.url.map(|u| u.bind) {
        None | Some(wire::Bind::Anyone) => None,
        Some(wire::Bind::Caller) => Some(cx.peer.ip()),
        Some(wire::Bind::Address(a)) => Some(a),
    };
    // Chosen before the play is counted: no edge, no play spent.
    let edges = if let Some(u) = p.url {
        let e = playback_edges(inner, u.urls)?;
        if e.is_empty() {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_edge", "no edge can serve playback URLs now; try again"));
        }
        e
    } else {
        Vec::new()
    };
    let now = now_secs();
    let mut entry = ValidationEntry {
        time: now,
        serial: String::new(),
        customer: 0,
        title: String::new(),
        client: cx.peer.to_string(),
        result: String::new(),
    };
    let Ok(signed) = SignedToken::from_text(&p.ticket) else { return Err(refuse(inner, &mut entry, Refusal::Forged, None)) };
    // Our own signature, checked by signing again (deterministic Ed25519,
    // AWS-LC): a fifth of the cost of verifying, on every play.
    let Ok(Token::Ticket(ticket)) = signed.verify_own(&inner.tokens) else {
        return Err(refuse(inner, &mut entry, Refusal::Forged, None));
    };
    let ticket = ticket.clone();
    entry.serial = hex::encode(ticket.serial);
    entry.customer = ticket.customer;
    entry.title = ticket.title.to_string();
    let catalog = inner.catalog_entry(&ticket.title).map_err(ApiError::internal)?;
    let key = catalog.as_ref().map(|e| TitleKey::from_bytes(e.key));
    let manifest_addr = catalog.as_ref().map(|e| e.address);
    let running_time_s = catalog.as_ref().map_or(0, |e| e.running_time_s);
    let manifest_bytes = catalog.map(|e| e.manifest);
    Ok(Prepared { ticket, play_key, url: p.url, bind, edges, entry, key, manifest_addr, manifest_bytes, running_time_s, now })
}

/// The decision (Fig. 13) over what the state read under the lock, and what
/// a grant writes. Pure but for fresh randomness: it may run again after a
/// conflict on a shared engine.
fn decide(inner: &Inner, p: &Prepared, view: crate::state::TicketView) -> (Decided, Option<GrantWrite>) {
    let cx = Context {
        lineage_revoked: view.lineage_revoked,
        request: p.play_key,
        retry_window_s: inner.config.play_retry_window.0.as_secs(),
        replacement: view.replacement.as_ref(),
        now: p.now,
        title_key: p.key.as_ref(),
        running_time_s: p.running_time_s,
        margin_s: inner.config.certificate_margin.0.as_secs(),
        fresh_serial: random16(),
        fresh_serial_2: random16(),
        fresh_k1: tranzcast_proto::random_bytes(),
    };
    match validation::decide(&p.ticket, view.record.as_ref(), &cx) {
        Err(r) => (Ok(Err(r)), None),
        // The same answer again: nothing written, no play counted.
        Ok(g) if g.repeated => (Ok(Ok(g)), None),
        Ok(g) => {
            let Some(mut presented) = view.record.clone() else {
                return (Err(ApiError::internal("granted without a record")), None);
            };
            presented.state = g.presented_state;
            presented.last_grant = g.presented_last_grant.clone();
            let mut entry = p.entry.clone();
            entry.result = "granted".into();
            let write = GrantWrite {
                presented: (p.ticket.serial, presented),
                replacement: g.replacement.as_ref().map(|(t, r)| (t.serial, r.clone())),
                certificate: (g.certificate.serial, g.certificate.expires),
                entry,
            };
            (Ok(Ok(g)), Some(write))
        }
    }
}

/// A refusal costs no synced write and no log line each: anyone can send
/// garbage tickets, and a synced line each would let them fill the disk and
/// the fsync queue. Refusals are counted by result in /metrics; those of
/// genuine tickets (signed by us: a spent, replaced, revoked or expired one
/// played again is a fraud signal) are kept per ticket and reason, a
/// counter merged in without fsync, so they cost one record per ticket
/// however often it is replayed; one refusal a second per result is logged.
fn refuse(inner: &Inner, entry: &mut ValidationEntry, r: Refusal, serial: Option<&[u8; 16]>) -> ApiError {
    entry.result = r.code().to_string();
    inner.metrics.validation(r.code());
    if let Some(s) = serial
        && let Err(e) = inner.state.count_refusal(s, r.code())
    {
        tracing::warn!(error = %e, "cannot count a refused play");
    }
    let now = now_secs();
    if inner.refusal_logged[r as usize % crate::REFUSAL_KINDS].swap(now, std::sync::atomic::Ordering::Relaxed) != now {
        tracing::info!(result = r.code(), serial = %entry.serial, customer = entry.customer, title = %entry.title,
            client = %entry.client, "play refused (one a second per result is logged; all are counted in origin_validations_total)");
    }
    ApiError::refused(r)
}

/// The answer to a decided play: the refusal, or the grant's certificate,
/// replacement, manifest and sources (or its playback URLs).
fn finish(inner: &Inner, p: &mut Prepared, grant: Result<validation::Grant, Refusal>) -> ApiResult {
    let grant = match grant {
        Ok(g) => g,
        Err(r) => {
            let serial = p.ticket.serial;
            return Err(refuse(inner, &mut p.entry, r, Some(&serial)));
        }
    };
    inner.metrics.validation(if grant.repeated { "granted_again" } else { "granted" });
    let replacement = grant.replacement.as_ref().map(|(t, _)| ticket::to_text(&t.sign(&inner.tokens)));
    if let Some(url) = p.url {
        let key = p.key.as_ref().ok_or_else(|| ApiError::internal("granted without a title key"))?;
        let manifest = p.manifest_bytes.as_ref().and_then(|b| SignedManifest::decode(b).ok()).map(|m| m.manifest);
        let manifest = manifest.ok_or_else(|| ApiError::internal("granted without a manifest"))?;
        return playback_urls(inner, &grant.certificate, key, &manifest, &p.edges, (p.bind, url.lifetime_s), replacement);
    }
    let answer = tranzcast_proto::answers::PlayGrant {
        certificate: ticket::to_text(&grant.certificate.sign(&inner.tokens)),
        ticket: replacement,
        manifest: p.manifest_bytes.take().map(|b| URL_SAFE_NO_PAD.encode(b)),
        manifest_address: p.manifest_addr.map(|a| a.to_hex()),
        sources: sources(inner)?,
    };
    Ok(json_response(StatusCode::OK, &answer))
}

/// Playback URLs for a granted play: one token per edge, the title key sealed
/// to that edge's current key; the session is the certificate's serial, so it
/// is revoked with the certificate (or its ticket).
fn playback_urls(
    inner: &Inner,
    cert: &tranzcast_proto::ticket::Certificate,
    key: &TitleKey,
    manifest: &tranzcast_proto::manifest::Manifest,
    edges: &[(Member, [u8; 32])],
    (bind, lifetime_s): (Option<std::net::IpAddr>, Option<u64>),
    replacement: Option<String>,
) -> ApiResult {
    use tranzcast_proto::playback::{self, MAX_LIFETIME_SECS, PlaybackGrant};
    let now = now_secs();
    // A minute of clock skew between origin and edges either way.
    let not_before = now.saturating_sub(60);
    let expires = cert.expires.min(not_before + MAX_LIFETIME_SECS).min(lifetime_s.map_or(u64::MAX, |l| now + l));
    let name = format!("{}.{}", manifest.title, tranzcast_proto::manifest::extension_for(&manifest.media_type));
    let mut urls = Vec::new();
    for (m, edge_public) in edges {
        let grant = PlaybackGrant { session: cert.serial, not_before, expires, title: cert.title.clone(), client: bind, edge_key: [0; 8] };
        let token = grant
            .seal(key, edge_public, tranzcast_proto::random_bytes(), &inner.signing)
            .map_err(|e| ApiError::internal(format!("sealing a playback token: {e}")))?;
        let url = format!("{}/v1/play/{}/{name}", m.https.trim_end_matches('/'), playback::to_text(&token));
        urls.push(tranzcast_proto::answers::PlaybackUrl { edge: m.name.clone(), h3: Some(m.h3.clone()), url });
    }
    let answer = tranzcast_proto::answers::PlaybackUrls {
        urls,
        session: hex::encode(cert.serial),
        not_before,
        expires,
        media_type: manifest.media_type.clone(),
        bytes: manifest.plaintext_len,
        ticket: replacement,
    };
    Ok(json_response(StatusCode::OK, &answer))
}

fn sources(inner: &Inner) -> Result<Vec<tranzcast_proto::answers::SourceEntry>, ApiError> {
    // Read again at most every SOURCES_FRESH: every member's record decoded
    // (and each peer's certificate looked up) on every play costs a play
    // more the larger the cluster, and the list is a hint (clients pulse
    // each source, and verify every byte). Keys are not chosen from it: URL
    // mode's edges are read at each play (`playback_edges`).
    let now = std::time::Instant::now();
    let generation = {
        let kept = inner.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, list)) = &kept.list
            && now.saturating_duration_since(*at) < SOURCES_FRESH
        {
            return Ok(list.clone());
        }
        kept.generation
    };
    let list: Vec<_> = inner
        .live_members()
        .map_err(ApiError::internal)?
        .into_iter()
        // A peer whose certificate expired or was revoked is no source.
        .filter(|m| m.role != "peer" || inner.peer_live(m))
        .filter_map(source_entry)
        .collect();
    let mut kept = inner.sources.lock().unwrap_or_else(|p| p.into_inner());
    // Kept only if no join, retirement or revocation came while it was
    // read: a list read before one must not outlive it.
    if kept.generation == generation {
        kept.list = Some((now, list.clone()));
    }
    Ok(list)
}

/// How long the plays' list of sources is reused.
const SOURCES_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// A member as clients see it (None for a role this version does not know).
pub(super) fn source_entry(m: Member) -> Option<tranzcast_proto::answers::SourceEntry> {
    Some(tranzcast_proto::answers::SourceEntry {
        role: tranzcast_proto::pulse::EdgeRole::from_name(&m.role)?,
        name: m.name,
        https: m.https,
        h3: Some(m.h3),
        load: m.load,
    })
}
