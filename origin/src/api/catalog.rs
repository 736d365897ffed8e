//! The catalog: titles and their manifests, blobs read by their holders,
//! uploads and publishing.

use super::*;

/// A title's summary from its signed manifest (`bytes`, when at hand).
pub(super) fn manifest_summary(title: &str, addr: &BlobAddress, bytes: Option<&[u8]>) -> Result<answers::TitleSummary, ApiError> {
    let bare = answers::TitleSummary { title: title.to_string(), manifest: addr.to_hex(), ..Default::default() };
    let Some(b) = bytes else { return Ok(bare) };
    let sm = SignedManifest::decode(b).map_err(ApiError::internal)?;
    let m = &sm.manifest;
    let chapters =
        m.chapters.iter().map(|c| answers::Chapter { start_ms: c.start_ms, byte_offset: c.byte_offset, name: c.name.clone() }).collect();
    Ok(answers::TitleSummary {
        segments: Some(m.segments.len()),
        segment_size: Some(m.segment_size),
        bytes: Some(m.plaintext_len),
        running_time_s: Some(m.running_time_ms as f64 / 1000.0),
        media_type: Some(m.media_type.clone()),
        chapters: Some(chapters),
        ..bare
    })
}

/// Every title this origin answers for: its store's, and on a shared
/// engine the cluster's catalog (titles other origins published, whose
/// blobs this one may not hold), each with its signed manifest's address
/// and, when at hand, bytes.
fn catalog(inner: &Inner) -> Result<Vec<(String, BlobAddress, Option<Bytes>)>, ApiError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (t, a) in inner.store.titles().map_err(ApiError::internal)? {
        seen.insert(t.as_str().to_string());
        out.push((t.as_str().to_string(), a, inner.store.get(&a).map_err(ApiError::internal)?));
    }
    if let Some(pg) = inner.state.shared() {
        for (t, manifest) in pg.titles().map_err(ApiError::internal)? {
            if seen.insert(t.clone()) {
                out.push((t, BlobAddress::of(&manifest), Some(Bytes::from(manifest))));
            }
        }
    }
    Ok(out)
}

/// How long a built title list is served before it is built again.
pub(crate) const TITLE_LIST_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a failed build is answered with 503 before another is tried.
const TITLE_LIST_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The public title list as built, and who is building it now.
#[derive(Default)]
pub(crate) struct TitleList {
    /// The answer and when it was built.
    built: Option<(std::time::Instant, Bytes)>,
    /// A build is under way (one at a time; the others answer the last list).
    building: bool,
    /// When the last build failed.
    failed: Option<std::time::Instant>,
    /// Publishes here so far: a build that began before one is not kept.
    generation: u64,
}

impl TitleList {
    /// Forgets the list (a title was just published here).
    pub(crate) fn clear(&mut self) {
        self.built = None;
        self.generation += 1;
    }
}

/// `GET /v1/titles`. Anyone may ask, and building the answer reads and
/// decodes every manifest (on a shared engine, fetches every manifest from
/// the database): so it is built at most once per [`TITLE_LIST_TTL`]
/// whoever asks and however often, and again at once after a publish
/// through this origin. One request builds, without holding the lock;
/// meanwhile the others get the last list built, or a 503 when there is
/// none yet, as for a second after a failed build (a slow or absent
/// database ties up one thread, not one per reader). A title published
/// through another origin appears within the TTL.
pub(super) fn titles(inner: &Inner) -> ApiResult {
    let busy = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the title list is being built; try again in a second");
    let generation = {
        let mut list = inner.title_list.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = list.built.as_ref().filter(|(at, _)| at.elapsed() < TITLE_LIST_TTL).map(|(_, b)| b.clone());
        let stale = list.built.as_ref().map(|(_, b)| b.clone());
        match (fresh, list.building, stale) {
            (Some(body), _, _) | (None, true, Some(body)) => return Ok(list_response(body)),
            (None, true, None) => return Err(busy()),
            (None, false, _) if list.failed.is_some_and(|f| f.elapsed() < TITLE_LIST_RETRY) => return Err(busy()),
            (None, false, _) => list.building = true,
        }
        list.generation
    };
    let built = (|| {
        let mut out = Vec::new();
        for (t, a, bytes) in catalog(inner)? {
            out.push(manifest_summary(&t, &a, bytes.as_deref())?);
        }
        serde_json::to_vec(&answers::Titles { titles: out }).map(Bytes::from).map_err(ApiError::internal)
    })();
    let mut list = inner.title_list.lock().unwrap_or_else(|p| p.into_inner());
    list.building = false;
    match built {
        Ok(body) => {
            inner.metrics.title_list_builds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if list.generation == generation {
                list.built = Some((std::time::Instant::now(), body.clone()));
            }
            list.failed = None;
            Ok(list_response(body))
        }
        Err(e) => {
            list.failed = Some(std::time::Instant::now());
            Err(e)
        }
    }
}

fn list_response(body: Bytes) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(super) fn title(inner: &Inner, id: &str) -> ApiResult {
    let (t, a, bytes) = manifest_of(inner, id)?;
    let mut summary = manifest_summary(t.as_str(), &a, bytes.as_deref())?;
    summary.manifest_blob = bytes.map(|b| URL_SAFE_NO_PAD.encode(b));
    Ok(json_response(StatusCode::OK, &summary))
}

/// The signed manifest itself (public: it names blobs and is signed; the key is elsewhere).
pub(super) fn title_manifest(inner: &Inner, id: &str) -> ApiResult {
    let (t, _, bytes) = manifest_of(inner, id)?;
    let bytes = bytes.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_title", format!("title {t}'s manifest is not here")))?;
    let mut r = Response::new(full(bytes));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    Ok(r)
}

/// The title named `id`, its signed manifest's address and, when at hand,
/// its bytes: from this origin's store, else (on a shared engine) from the
/// cluster's catalog. 400 for a bad name, 404 for a title in neither.
fn manifest_of(inner: &Inner, id: &str) -> Result<(TitleId, BlobAddress, Option<Bytes>), ApiError> {
    let t = TitleId::new(id).map_err(|e| ApiError::bad(e.to_string()))?;
    if let Some(a) = inner.store.title_manifest(&t).map_err(ApiError::internal)? {
        let bytes = inner.store.get(&a).map_err(ApiError::internal)?;
        return Ok((t, a, bytes));
    }
    if let Some(manifest) = inner.state.shared().map(|pg| pg.title_manifest(t.as_str())).transpose().map_err(ApiError::internal)?.flatten()
    {
        return Ok((t, BlobAddress::of(&manifest), Some(Bytes::from(manifest))));
    }
    Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_title", format!("no title {t}")))
}

pub(super) fn parse_address(hash: &str) -> Result<BlobAddress, ApiError> {
    hash.parse().map_err(|e: tranzcast_proto::ProtoError| ApiError::bad(e.to_string()))
}

pub(super) fn blob(inner: &Inner, hash: &str, req: &Request<Bytes>) -> ApiResult {
    let a = parse_address(hash)?;
    let load = || {
        inner
            .store
            .get(&a)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_blob", format!("no blob {a}")))
    };
    // Read once: by the credentials check when it needs the title, else here.
    let mut held = None;
    blob_reader(inner, req, || load().inspect(|b| held = Some(b.clone())))?;
    let b = match held {
        Some(b) => b,
        None => load()?,
    };
    let etag = a.etag();
    let rep = tranzcast_net::ranged::Representation {
        etag: &etag,
        content_type: "application/octet-stream",
        max_ranges: inner.config.limits.max_ranges as usize,
    };
    Ok(tranzcast_net::ranged::respond(req.method(), req.headers(), b, &rep))
}

pub(super) fn upload_blob(inner: &Inner, hash: &str, body: &Bytes) -> ApiResult {
    let a = parse_address(hash)?;
    a.verify(body).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch", e.to_string()))?;
    inner.store.put(body).map_err(ApiError::internal)?;
    Ok(json_response(StatusCode::CREATED, &answers::Stored { stored: a.to_hex() }))
}

/// Publishes an uploaded title: every segment must be here, decrypt under
/// the given key at its position and hold a whole segment (every segment is
/// padded to `segment_size`: an edge slices a decrypted segment by the
/// manifest's lengths); the manifest is re-signed by the origin. The check
/// that the title is free and the commit are one step under a lock.
pub(super) fn publish_title(inner: &Inner, req: &Request<Bytes>) -> ApiResult {
    use tranzcast_proto::frame::FrameKind;
    use tranzcast_proto::keys::{self, Expected};
    let p = wire::publish(req.body()).map_err(ApiError::wire)?;
    let title = p.title;
    if inner.store.title_manifest(&title).map_err(ApiError::internal)?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "title_exists", format!("title {title} already exists")));
    }
    let key = TitleKey::from_bytes(p.key);
    let mut m = SignedManifest::decode(&p.manifest).map_err(|e| ApiError::bad(format!("manifest: {e}")))?.manifest;
    if m.title != title {
        return Err(ApiError::bad(format!("manifest is for {}, not {title}", m.title)));
    }
    for (i, a) in m.segments.iter().enumerate() {
        let frame = inner
            .store
            .get(a)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "incomplete", format!("segment {i} ({a}) has not been uploaded")))?;
        let plain = keys::open(&key, &frame, &Expected { title: &title, kind: FrameKind::Media, sequence: i as u64 })
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_segment", format!("segment {i}: {e}")))?;
        if plain.len() as u64 != u64::from(m.segment_size) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_segment",
                format!("segment {i} holds {} bytes; the manifest's segments are {} bytes", plain.len(), m.segment_size),
            ));
        }
    }
    m.created = now_secs();
    let signed = m.sign(&inner.signing).map_err(|e| ApiError::bad(e.to_string()))?;
    let _one_at_a_time = inner.publishing.lock().unwrap_or_else(|p| p.into_inner());
    let taken = |inner: &Inner| -> Result<bool, ApiError> {
        Ok(inner.store.title_manifest(&title).map_err(ApiError::internal)?.is_some()
            || inner.state.shared().map(|pg| pg.title(title.as_str())).transpose().map_err(ApiError::internal)?.flatten().is_some())
    };
    if taken(inner)? {
        return Err(ApiError::new(StatusCode::CONFLICT, "title_exists", format!("title {title} already exists")));
    }
    let addr = inner.store.commit_title(&title, &signed, key.expose()).map_err(ApiError::internal)?;
    // Listed from the next request on.
    inner.title_list.lock().unwrap_or_else(|p| p.into_inner()).clear();
    // Then to every origin; another origin that published the same name
    // between the check and here keeps it (the first stays).
    if let Some(pg) = inner.state.shared()
        && !pg.publish_title(title.as_str(), &signed, key.expose()).map_err(ApiError::internal)?
    {
        tracing::error!(%title, "another origin published this title at the same time; its copy stands");
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "title_exists",
            format!("title {title} was published by another origin meanwhile"),
        ));
    }
    let answer = answers::Published { title: title.as_str().to_string(), manifest: addr.to_hex(), segments: Some(m.segments.len()) };
    Ok(json_response(StatusCode::CREATED, &answer))
}
