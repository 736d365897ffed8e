//! `tranzcast ingest FILE --origin URL --token T --ca PEM`: ingest into a
//! temporary local store (ciphertext only), upload every segment to the
//! origin (which checks each against its address), then publish: the origin
//! checks every segment decrypts under the key and signs the manifest itself.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tranzcast_ingest::{IngestOptions, ingest};
use tranzcast_proto::TitleId;
use tranzcast_proto::manifest::SignedManifest;

use crate::IngestArgs;

pub fn run(a: &IngestArgs, origin: &str, title: TitleId) -> Result<()> {
    let token = a.token.clone().context("--origin needs the storefront token (--token or TRANZCAST_STOREFRONT_TOKEN)")?;
    let ca_path = a.ca.clone().context("--origin needs --ca, the CA certificate (PEM) the origin's certificate is signed by")?;
    let ca = std::fs::read(&ca_path).with_context(|| format!("cannot read {}", ca_path.display()))?;
    let origin = origin.trim_end_matches('/').to_string();
    if !origin.starts_with("https://") {
        bail!("--origin must be an https:// URL");
    }
    let meta = std::fs::metadata(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    if meta.is_dir() {
        bail!("{} is a directory, not a media file", a.file.display());
    }
    let rt = tokio::runtime::Runtime::new()?;
    let http = tranzcast_net::client::https(&ca)?;
    // Refuse early, before any work, if the origin already has the title or refuses the token.
    rt.block_on(async {
        let r = http.get(format!("{origin}/v1/titles/{title}")).send().await.with_context(|| format!("cannot reach {origin}"))?;
        if r.status().is_success() {
            bail!("title {title} already exists at {origin}");
        }
        let r = http.get(format!("{origin}/v1/storefront")).bearer_auth(&token).send().await?;
        if r.status() == 401 || r.status() == 403 {
            bail!("the origin refused the storefront token ({})", r.status());
        }
        anyhow::Ok(())
    })?;

    let temp = tempfile::Builder::new().prefix("tranzcast-upload-").tempdir()?;
    let store = crate::open_store(&temp.path().join("store"), true)?;
    let mut opts = IngestOptions::new(title.clone());
    opts.segment_seconds = a.segment_seconds;
    opts.segment_size = a.segment_size;
    opts.encode = a.encode;
    opts.workers = a.workers;
    opts.progress = crate::progress_bar(a.json, "ingest");
    let report = ingest(&store, &a.file, &opts)?;
    let maddr = store.title_manifest(&title)?.context("ingested title has no manifest")?;
    let mbytes = store.get(&maddr)?.context("manifest blob missing")?;
    let key = store.title_secret(&title)?.context("ingested title has no key")?;
    let manifest = SignedManifest::decode(&mbytes)?.manifest;

    let pb = crate::progress_bar(a.json, "upload");
    pb.set_length(manifest.segments.len() as u64 * (u64::from(manifest.segment_size) + tranzcast_proto::frame::OVERHEAD as u64));
    let published = rt.block_on(async {
        for (i, s) in manifest.segments.iter().enumerate() {
            let bytes = store.get(s)?.with_context(|| format!("segment {i} missing locally"))?;
            let n = bytes.len() as u64;
            let r = http.put(format!("{origin}/v1/blobs/{s}")).bearer_auth(&token).body(bytes).send().await?;
            if !r.status().is_success() {
                bail!("upload of segment {i} refused: {} {}", r.status(), r.text().await.unwrap_or_default());
            }
            pb.inc(n);
        }
        let body = tranzcast_proto::api::PublishBody {
            title: title.as_str().to_string(),
            key: hex::encode(key),
            manifest: URL_SAFE_NO_PAD.encode(&mbytes),
        };
        let r = http.post(format!("{origin}/v1/titles")).bearer_auth(&token).json(&body).send().await?;
        let status = r.status();
        let b = r.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let (code, reason) = tranzcast_proto::answers::ErrorBody::read(&b);
            bail!("the origin refused to publish {title}: {status}: {reason} ({code})");
        }
        let published: tranzcast_proto::answers::Published = tranzcast_proto::answers::parse_small("publish answer", &b)?;
        anyhow::Ok(published)
    })?;
    pb.finish_and_clear();
    if a.json {
        let mut out = serde_json::to_value(&report)?;
        out["manifest"] = published.manifest.clone().into();
        out["origin"] = serde_json::Value::String(origin);
        println!("{out}");
    } else {
        println!(
            "ingested {} as {} and published at {origin}: {} bytes, {} segments, manifest {}",
            a.file.display(),
            title,
            report.bytes,
            report.segments,
            published.manifest
        );
    }
    Ok(())
}
