//! Ask-then-push: the one way a server hands blobs to another (the origin
//! staging a node, pre-casting to a peer; a node mirroring hot segments to an
//! edge). The receiver says which of the blobs it lacks, and only those
//! travel; it verifies each against its address before storing it.

use bytes::Bytes;
use tranzcast_proto::BlobAddress;

/// Asks `base` which of `blobs` it lacks and pushes those, with `token` as
/// the bearer; `get` reads a blob from the sender's store. Returns how many of
/// `blobs` the receiver now holds.
pub async fn push_missing(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    blobs: &[BlobAddress],
    get: impl Fn(&BlobAddress) -> Result<Option<Bytes>, String>,
) -> Result<u64, String> {
    let ask: Vec<String> = blobs.iter().map(BlobAddress::to_hex).collect();
    let r = http
        .post(format!("{base}/v1/staging/missing"))
        .bearer_auth(token)
        .json(&serde_json::json!({"blobs": ask}))
        .send()
        .await
        .map_err(|e| format!("{base}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{base}: missing: {}", r.status()));
    }
    let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    let missing: Vec<BlobAddress> =
        v["missing"].as_array().ok_or("bad missing answer")?.iter().filter_map(|h| h.as_str()?.parse().ok()).collect();
    let mut held = blobs.len() as u64 - missing.len() as u64;
    for a in missing {
        let bytes = get(&a)?.ok_or_else(|| format!("blob {a} is not here to push"))?;
        let r =
            http.put(format!("{base}/v1/blobs/{a}")).bearer_auth(token).body(bytes).send().await.map_err(|e| format!("push {a}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("push {a}: {}", r.status()));
        }
        held += 1;
    }
    Ok(held)
}
