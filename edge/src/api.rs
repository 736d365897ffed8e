//! A node's HTTP routes (staging receipt, blobs, pulse, health, metrics).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tranzcast_net::{Body, full};
use tranzcast_proto::answers;
use tranzcast_proto::manifest::SignedManifest;
use tranzcast_proto::{BlobAddress, TitleId};

use crate::Inner;
use crate::access::Credentials;
use crate::reply::{Fail, Reply, denied, error, internal, json_response};

/// Entry point (behind the service stack, which has checked credentials);
/// store work runs on the blocking pool, misses on the fetcher.
pub(crate) async fn handle(inner: Arc<Inner>, req: Request<Bytes>) -> Response<Body> {
    // Split on the stack (this is every blob request's path); longer paths
    // match none of these routes and go on to `route`.
    let mut buf = [""; 6];
    let mut n = 0;
    for p in req.uri().path().split('/') {
        if n == buf.len() {
            n = 0;
            break;
        }
        buf[n] = p;
        n += 1;
    }
    let parts = &buf[..n];
    if let (&Method::GET | &Method::HEAD, ["", "v1", "blobs", hash]) = (req.method(), parts) {
        inner.counters.blob_requests.fetch_add(1, Ordering::Relaxed);
        return blob(inner.clone(), hash, &req).await.unwrap_or_else(Response::from);
    }
    if let (&Method::GET, ["", "v1", "outboards", hash]) = (req.method(), parts) {
        return outboard(&inner, hash, &req).await.unwrap_or_else(Response::from);
    }
    if let (&Method::GET | &Method::HEAD, ["", "v1", "play", token, _name]) = (req.method(), parts) {
        let client = req.extensions().get::<tranzcast_net::RequestContext>().map(|cx| cx.peer.ip());
        let client = client.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        return crate::playback::serve(inner.clone(), token, &req, client).await.unwrap_or_else(Response::from);
    }
    if let (&Method::GET, ["", "v1", "titles", id, "manifest"]) = (req.method(), parts) {
        return title_manifest(&inner, id).await.unwrap_or_else(Response::from);
    }
    let i2 = inner.clone();
    tokio::task::spawn_blocking(move || route(&i2, &req)).await.unwrap_or_else(|e| internal(e).into())
}

fn route(inner: &Inner, req: &Request<Bytes>) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let parts: Vec<&str> = path.split('/').collect();
    let result = match (req.method(), parts.as_slice()) {
        (&Method::GET, ["", "healthz"]) => {
            let health = answers::Health { status: "ok".into(), role: role(inner).into(), name: Some(inner.config.name.clone()) };
            Ok(json_response(StatusCode::OK, &health))
        }
        (&Method::GET, ["", "metrics"]) => Ok(metrics(inner)),
        (&Method::GET, ["", "v1", "pulse"]) => pulse(inner, req.uri().query().unwrap_or("")),
        (&Method::GET, ["", "v1", "demand"]) => Ok(demand(inner)),
        (&Method::PUT, ["", "v1", "blobs", hash]) => put_blob(inner, hash, req.body()),
        (&Method::POST, ["", "v1", "staging", "missing"]) => missing(inner, req.body()),
        (&Method::PUT, ["", "v1", "titles", id, "manifest"]) => put_manifest(inner, id, req.body()),
        (_, ["", "v1", ..]) => {
            Err(error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{} is not allowed on {path}", req.method())))
        }
        _ => Err(error(StatusCode::NOT_FOUND, "not_found", format!("no such resource: {path}"))),
    };
    result.unwrap_or_else(Response::from)
}

fn role(inner: &Inner) -> &'static str {
    inner.config.role.as_str()
}

fn parse_address(hash: &str) -> Result<BlobAddress, Fail> {
    hash.parse().map_err(|e: tranzcast_proto::ProtoError| error(StatusCode::BAD_REQUEST, "bad_address", e.to_string()))
}

/// A blob: from the store when held, else through the coalesced, verified
/// miss path (nodes and edges; peers only serve what they hold).
async fn blob(inner: Arc<Inner>, hash: &str, req: &Request<Bytes>) -> Reply {
    let a = parse_address(hash)?;
    let mut etag_buf = [0; 66];
    let etag = a.etag_in(&mut etag_buf);
    // Credentials were checked by the service stack; what is left is whether
    // they open this blob's title, known from its first bytes.
    let creds = req.extensions().get::<Arc<Credentials>>();
    let check = |prefix: &[u8]| -> Result<(), Fail> {
        let Some(c) = &creds else { return Ok(()) };
        crate::access::allow_blob(c, tranzcast_proto::owner::blob_title(prefix).as_ref()).map_err(denied)
    };
    // Only the cluster's own requests name an edge: a viewer's request skips the lookup.
    let edge = creds
        .is_some_and(|c| **c == Credentials::Cluster)
        .then(|| req.headers().get("x-tranzcast-edge").and_then(|v| v.to_str().ok()))
        .flatten();
    // Demand and cache frequency count reads, not the ranges they come in.
    let starts = crate::demand::starts_read(req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()));
    // Hot blobs come from memory without a trip to the blocking pool.
    if let Some(mut b) = crate::blobs::held(&inner, a).await? {
        let prefix = &b[..b.len().min(tranzcast_proto::owner::PREFIX_LEN)];
        check(prefix)?;
        if starts {
            crate::mirror::read_started(&inner, &a, prefix, true, edge);
        }
        if inner.config.fault_corrupt_blobs && b.len() > 1 {
            let mut v = b.to_vec();
            let mid = v.len() / 2;
            v[mid] ^= 0x01;
            b = Bytes::from(v);
        }
        return Ok(tranzcast_net::ranged::respond(req.method(), req.headers(), b, &blob_representation(&inner, etag)));
    }
    if inner.config.role == tranzcast_config::EdgeRole::Peer {
        return Err(error(StatusCode::NOT_FOUND, "unknown_blob", format!("no blob {a}")));
    }
    // Not held: a certificate must be for the title whose manifest names
    // this blob before any upstream request (nothing is fetched, stored or
    // charged for a refused one).
    certificate_names(&inner, creds, &a).await?;
    let flight = crate::blobs::fetch(&inner, a, starter(req)).await?;
    // The title is in the blob's first bytes: check once they are verified.
    let prefix =
        flight.prefix(tranzcast_proto::owner::PREFIX_LEN as u64).await.map_err(|e| error(StatusCode::BAD_GATEWAY, "upstream", e))?;
    check(&prefix)?;
    if starts {
        crate::mirror::read_started(&inner, &a, &prefix, false, edge);
    }
    let len = flight.len;
    Ok(tranzcast_net::ranged::respond_from(
        req.method(),
        req.headers(),
        &crate::fetch::FlightSource(flight),
        len,
        &blob_representation(&inner, etag),
    ))
}

fn blob_representation<'a>(inner: &Inner, etag: &'a str) -> tranzcast_net::ranged::Representation<'a> {
    tranzcast_net::ranged::Representation {
        etag,
        content_type: "application/octet-stream",
        max_ranges: inner.config.limits.max_ranges as usize,
    }
}

/// Records a signed manifest as its title's (pinned), once its signature
/// checks: the pulse bitmap of a peer is computed against it.
pub(crate) fn record_title_manifest(inner: &Inner, body: &[u8]) -> Result<(), String> {
    let sm = SignedManifest::decode(body).map_err(|e| format!("manifest: {e}"))?;
    let m = sm.verify(&inner.origin_key).map_err(|e| format!("manifest: {e}"))?;
    crate::mirror::keep_manifest(inner, &m.title, body).map_err(|e| e.to_string())?;
    Ok(())
}

/// A title's signed manifest (public), fetched from upstream and kept when not held.
async fn title_manifest(inner: &Arc<Inner>, id: &str) -> Reply {
    let t = TitleId::new(id).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_title", e.to_string()))?;
    let b = crate::mirror::manifest_bytes(inner, &t)
        .await
        .map_err(|e| error(StatusCode::BAD_GATEWAY, "upstream", e))?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "unknown_title", format!("no title {t}")))?;
    let mut r = Response::new(full(b));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    Ok(r)
}

/// Titles with demand in the last minute, hottest first.
fn demand(inner: &Inner) -> Response<Body> {
    let heat = crate::lock(&inner.policy.demand).heat(std::time::Instant::now());
    let hot = inner.config.mirroring.hot_requests_per_min;
    let titles = heat
        .iter()
        .map(|h| answers::TitleDemand {
            title: h.title.as_str().to_string(),
            last_minute: u64::from(h.last_minute),
            total: h.total,
            hot: h.last_minute >= hot,
            top_segments: h.top_segments.iter().map(|&(segment, requests)| answers::SegmentDemand { segment, requests }).collect(),
        })
        .collect();
    let answer = answers::Demand {
        hot_requests_per_min: u64::from(hot),
        prefetch_segments: u64::from(inner.config.mirroring.prefetch_segments),
        titles,
    };
    json_response(StatusCode::OK, &answer)
}

/// A blob's outboard: from the store, or (on nodes and edges) from the
/// flight that fetches the blob, so a client verifying per group can start at once.
async fn outboard(inner: &Arc<Inner>, hash: &str, req: &Request<Bytes>) -> Reply {
    let a = parse_address(hash)?;
    // An outboard is the blob's verification data: it goes only to those
    // the blob would go to, held or not.
    certificate_names(inner, req.extensions().get::<Arc<Credentials>>(), &a).await?;
    let i2 = inner.clone();
    let held = tokio::task::spawn_blocking(move || i2.store.outboard(&a)).await.map_err(internal)?.map_err(internal)?;
    let ob = match held {
        Some(ob) => ob,
        None if inner.config.role == tranzcast_config::EdgeRole::Peer => {
            return Err(error(StatusCode::NOT_FOUND, "unknown_blob", format!("no blob {a}")));
        }
        None => crate::blobs::join(inner, a, starter(req)).await?.outboard.clone(),
    };
    let mut r = Response::new(full(ob.encode()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    Ok(r)
}

/// With a certificate: whether its title's signed manifest names `a` (403
/// `wrong_title` if not; 502 when the manifest cannot be read: fail closed).
/// The cluster's own servers, and open test setups, pass.
async fn certificate_names(inner: &Arc<Inner>, creds: Option<&Arc<Credentials>>, a: &BlobAddress) -> Result<(), Fail> {
    let Some(Credentials::Certificate { title, .. }) = creds.map(|c| &**c) else { return Ok(()) };
    match crate::titles::belongs(inner, title, a).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(error(StatusCode::FORBIDDEN, "wrong_title", format!("blob {a} is not in the manifest of {title}"))),
        Err(e) => Err(error(StatusCode::BAD_GATEWAY, "upstream", format!("cannot check the title: {e}"))),
    }
}

/// The client address a miss is charged to: none for the cluster's own servers.
fn starter(req: &Request<Bytes>) -> Option<std::net::IpAddr> {
    let cluster = req.extensions().get::<Arc<Credentials>>().is_some_and(|c| **c == Credentials::Cluster);
    if cluster { None } else { req.extensions().get::<tranzcast_net::RequestContext>().map(|cx| cx.peer.ip()) }
}

fn put_blob(inner: &Inner, hash: &str, body: &Bytes) -> Reply {
    let a = parse_address(hash)?;
    // Verified on arrival: nothing is stored under an address its bytes do not hash to.
    if let Err(e) = a.verify(body) {
        return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch", e.to_string()));
    }
    // A peer holds only the first segments the origin pre-casts, so the
    // manifest pushed with them is recorded as the title's at once (for the
    // pulse bitmap), once its signature checks; nodes record manifests only
    // for complete sets (PUT /v1/titles/{id}/manifest).
    if inner.config.role == tranzcast_config::EdgeRole::Peer && body.starts_with(b"TZMF") {
        record_title_manifest(inner, body).map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, "bad_manifest", e))?;
    } else {
        // A node pins what the origin stages; edges and peers keep pushes like fetches.
        // A node holds what the origin stages to it; an edge or a peer keeps
        // what is pushed to it (a node's mirroring, the origin's pre-cast)
        // whenever it fits.
        let offer =
            if inner.config.role == tranzcast_config::EdgeRole::Node { crate::mirror::Offer::Pinned } else { crate::mirror::Offer::Pushed };
        crate::mirror::keep(inner, &a, body, None, offer);
    }
    inner.counters.staged_blobs.fetch_add(1, Ordering::Relaxed);
    inner.counters.staged_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    Ok(json_response(StatusCode::CREATED, &answers::Stored { stored: a.to_hex() }))
}

fn missing(inner: &Inner, body: &Bytes) -> Reply {
    let ask: tranzcast_proto::api::MissingBody =
        serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_request", format!("invalid JSON body: {e}")))?;
    if ask.blobs.len() > 1 << 20 {
        return Err(error(StatusCode::BAD_REQUEST, "bad_request", "at most 1048576 addresses per call"));
    }
    let mut out = Vec::new();
    for h in &ask.blobs {
        let a = parse_address(h)?;
        // A blob on its way here is not missing: a push would only race the fetch.
        if !inner.store.has(&a).map_err(internal)? && !inner.fetcher.is_in_air(&a) {
            out.push(a.to_hex());
        }
    }
    Ok(json_response(StatusCode::OK, &answers::Missing { missing: out }))
}

fn put_manifest(inner: &Inner, id: &str, body: &Bytes) -> Reply {
    let title = TitleId::new(id).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_title", e.to_string()))?;
    let sm = SignedManifest::decode(body).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_manifest", e.to_string()))?;
    let m = sm.verify(&inner.origin_key).map_err(|e| error(StatusCode::FORBIDDEN, "forged", e.to_string()))?;
    if m.title != title {
        return Err(error(StatusCode::BAD_REQUEST, "bad_manifest", format!("manifest is for {}, not {title}", m.title)));
    }
    // A node holds complete sets: the manifest is recorded only once every segment is here.
    for a in &m.segments {
        if !inner.store.has(a).map_err(internal)? {
            return Err(error(StatusCode::CONFLICT, "incomplete", format!("segment {a} not staged yet")));
        }
    }
    let addr = crate::mirror::keep_manifest(inner, &title, body).map_err(internal)?;
    Ok(json_response(
        StatusCode::CREATED,
        &answers::Published { title: title.as_str().to_string(), manifest: addr.to_hex(), segments: None },
    ))
}

fn pulse(inner: &Inner, query: &str) -> Reply {
    let title = query.split('&').find_map(|kv| kv.strip_prefix("title="));
    // Bytes/s over the last window of at least a second: cheap, no timer task.
    let out = inner.server.bytes_out();
    let rate = {
        let mut w = crate::lock(&inner.out_rate);
        let dt = w.0.elapsed().as_secs_f64();
        if dt >= 1.0 {
            *w = (std::time::Instant::now(), out, (out - w.1) as f64 / dt);
        }
        w.2
    };
    use tranzcast_proto::pulse::{Health, Load, Pulse, SegmentBitmap, Segments};
    let health = match crate::health(inner) {
        crate::revocation::Freshness::Fresh => Health::Ok,
        crate::revocation::Freshness::Unknown => Health::RevocationsUnknown,
        crate::revocation::Freshness::Stale => Health::RevocationsStale,
    };
    let mut v = Pulse {
        name: inner.config.name.clone(),
        role: inner.config.role,
        version: env!("CARGO_PKG_VERSION").to_string(),
        health,
        load: Load {
            requests: inner.counters.requests.load(Ordering::Relaxed),
            // Not counting this pulse itself.
            in_flight: (inner.server.in_flight() - 1).max(0) as u64,
            queued: inner.fetcher.in_air() as u64,
            bytes_out_total: out,
            bytes_out_per_s: rate,
            capacity_bytes_per_s: inner.throttle.as_ref().map(|t| t.rate()),
        },
        segments: None,
    };
    if let Some(t) = title {
        let t = TitleId::new(t).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_title", e.to_string()))?;
        v.segments = Some(match inner.store.title_manifest(&t).map_err(internal)? {
            None => Segments { title: t.as_str().to_string(), held: 0, total: None, bitmap: SegmentBitmap::default() },
            Some(a) => {
                let b = inner.store.get(&a).map_err(internal)?.ok_or_else(|| internal("manifest listed but missing"))?;
                let m = SignedManifest::decode(&b).map_err(internal)?.manifest;
                let mut bits = SegmentBitmap::new(m.segments.len());
                let mut held = 0;
                for (i, s) in m.segments.iter().enumerate() {
                    if inner.store.has(s).map_err(internal)? {
                        bits.set(i);
                        held += 1;
                    }
                }
                Segments { title: t.as_str().to_string(), held, total: Some(m.segments.len() as u64), bitmap: bits }
            }
        });
    }
    Ok(json_response(StatusCode::OK, &v))
}

fn metrics(inner: &Inner) -> Response<Body> {
    let mut out = String::new();
    out.push_str("# TYPE edge_requests_total counter\n");
    out.push_str(&format!("edge_requests_total {}\n", inner.counters.requests.load(Ordering::Relaxed)));
    let f = &inner.fetcher.stats;
    for (name, v) in [
        ("edge_blob_requests_total", inner.counters.blob_requests.load(Ordering::Relaxed)),
        ("edge_hits_total", inner.counters.hits.load(Ordering::Relaxed)),
        ("edge_misses_total", inner.counters.misses.load(Ordering::Relaxed)),
        ("edge_upstream_fetches_total", f.flights.load(Ordering::Relaxed)),
        ("edge_coalesced_waiters_total", f.coalesced.load(Ordering::Relaxed)),
        ("edge_upstream_demoted_total", f.demoted.load(Ordering::Relaxed)),
        ("edge_playback_requests_total", inner.playback.requests.load(Ordering::Relaxed)),
        ("edge_playback_refused_total", inner.playback.refused.load(Ordering::Relaxed)),
        ("edge_playback_decrypted_bytes_total", inner.playback.decrypted_bytes.load(Ordering::Relaxed)),
    ] {
        out.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
    }
    out.push_str(&format!("# TYPE edge_playback_sessions gauge\nedge_playback_sessions {}\n", inner.playback.open_sessions()));
    {
        let r = crate::read(&inner.revoked);
        let now = std::time::Instant::now();
        let fresh = r.freshness(now, inner.config.revocation_max_age.0) == crate::revocation::Freshness::Fresh;
        out.push_str(&format!(
            "# HELP edge_revocation_pull_failures_total Revocation list pulls that failed (the last good list was kept).\n# TYPE edge_revocation_pull_failures_total counter\nedge_revocation_pull_failures_total {}\n\
             # HELP edge_revocation_list_age_seconds Since the revocation list was last read whole (-1: never; certificates refused).\n# TYPE edge_revocation_list_age_seconds gauge\nedge_revocation_list_age_seconds {}\n\
             # HELP edge_revocation_list_fresh 1 when the list is younger than revocation_max_age.\n# TYPE edge_revocation_list_fresh gauge\nedge_revocation_list_fresh {}\n\
             # TYPE edge_revoked_serials gauge\nedge_revoked_serials {}\n",
            r.failures(),
            r.age(now).map_or(-1.0, |a| a.as_secs_f64()),
            u8::from(fresh),
            r.len(),
        ));
    }
    out.push_str(&format!(
        "# HELP edge_flights_in_air Upstream fetches in the air now (at most limits.max_flights).\n# TYPE edge_flights_in_air gauge\nedge_flights_in_air {}\n",
        inner.fetcher.in_air()
    ));
    out.push_str("# TYPE edge_staged_blobs_total counter\n");
    out.push_str(&format!("edge_staged_blobs_total {}\n", inner.counters.staged_blobs.load(Ordering::Relaxed)));
    out.push_str("# TYPE edge_staged_bytes_total counter\n");
    out.push_str(&format!("edge_staged_bytes_total {}\n", inner.counters.staged_bytes.load(Ordering::Relaxed)));
    if let Ok(s) = inner.store.stats() {
        out.push_str(&format!(
            "# TYPE edge_store_blobs gauge\nedge_store_blobs {}\n# TYPE edge_store_bytes gauge\nedge_store_bytes {}\n",
            s.blobs, s.bytes
        ));
        out.push_str(&format!("# TYPE edge_cache_hits_total counter\nedge_cache_hits_total {}\n# TYPE edge_cache_misses_total counter\nedge_cache_misses_total {}\n", s.cache_hits, s.cache_misses));
    }
    let m = &inner.mirror;
    for (name, v) in [
        ("edge_evicted_blobs_total", m.evicted.load(Ordering::Relaxed)),
        ("edge_evicted_bytes_total", m.evicted_bytes.load(Ordering::Relaxed)),
        ("edge_refused_blobs_total", m.refused.load(Ordering::Relaxed)),
        ("edge_not_admitted_blobs_total", m.not_admitted.load(Ordering::Relaxed)),
        ("edge_prefetched_segments_total", m.prefetched.load(Ordering::Relaxed)),
        ("edge_pushed_segments_total", m.pushed.load(Ordering::Relaxed)),
    ] {
        out.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
    }
    {
        let r = crate::lock(&inner.policy.residency);
        out.push_str(&format!(
            "# TYPE edge_resident_bytes gauge\nedge_resident_bytes {}\n# TYPE edge_disk_budget_bytes gauge\nedge_disk_budget_bytes {}\n",
            r.used(),
            inner.config.store.disk_bytes.0
        ));
    }
    out.push_str("# HELP edge_parent_rtt_seconds Round trip of the last pulse to each parent (absent: no answer).\n# TYPE edge_parent_rtt_seconds gauge\n");
    for (url, probe) in inner.fetcher.parent_view() {
        if let Some((rtt, _)) = probe {
            out.push_str(&format!("edge_parent_rtt_seconds{{parent=\"{url}\"}} {}\n", rtt.as_secs_f64()));
        }
    }
    inner.server.render("edge", &mut out);
    let mut r = Response::new(full(out));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}
