//! Ask-then-push: the one way a server hands blobs to another (the origin
//! staging a node, pre-casting to a peer; a node mirroring hot segments to an
//! edge). The receiver says which of the blobs it lacks, and only those
//! travel; it verifies each against its address before storing it.
//!
//! The receiver is not trusted with what travels: only addresses that were
//! offered are pushed (each once), whatever else its answer lists; every
//! call is bounded ([`crate::client::CallLimits`]), so a receiver that
//! stalls holds one push, never the sender's round.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use tranzcast_proto::BlobAddress;

use crate::client::{CallLimits, call};

/// What to push: the offered addresses the receiver said it lacks, each
/// once, in the order offered; and how many offered it already holds. Pure.
pub fn plan(offered: &[BlobAddress], missing: &[BlobAddress]) -> (Vec<BlobAddress>, u64) {
    let lacking: HashSet<&BlobAddress> = missing.iter().collect();
    let mut seen = HashSet::new();
    let push: Vec<BlobAddress> = offered.iter().filter(|a| lacking.contains(a) && seen.insert(**a)).copied().collect();
    let held = offered.iter().collect::<HashSet<_>>().len().saturating_sub(push.len()) as u64;
    (push, held)
}

/// Asks `base` which of `blobs` it lacks and pushes those, with `token` as
/// the bearer; `get` reads a blob from the sender's store. Each call (the
/// question, each push) answers within `answer` and ends within `total`.
/// Returns how many distinct blobs of `blobs` the receiver now holds.
pub async fn push_missing(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    blobs: &[BlobAddress],
    (answer, total): (Duration, Duration),
    get: impl Fn(&BlobAddress) -> Result<Option<Bytes>, String>,
) -> Result<u64, String> {
    let ask: Vec<String> = blobs.iter().map(BlobAddress::to_hex).collect();
    // 64 hex digits and punctuation per address the receiver may list.
    let limits = CallLimits { answer, total, max_body: 1024 + blobs.len() * 72 };
    let req = http.post(format!("{base}/v1/staging/missing")).bearer_auth(token).json(&tranzcast_proto::api::MissingBody { blobs: ask });
    let (status, body) = call(req, limits).await.map_err(|e| format!("{base}: missing: {e}"))?;
    if !status.is_success() {
        return Err(format!("{base}: missing: {status}"));
    }
    let answer: tranzcast_proto::answers::Missing =
        tranzcast_proto::json::parse_bounded("missing answer", limits.max_body, &body).map_err(|e| format!("{base}: {e}"))?;
    let missing: Vec<BlobAddress> = answer.missing.iter().filter_map(|h| h.parse().ok()).collect();
    let (push, mut held) = plan(blobs, &missing);
    for a in push {
        let bytes = get(&a)?.ok_or_else(|| format!("blob {a} is not here to push"))?;
        let req = http.put(format!("{base}/v1/blobs/{a}")).bearer_auth(token).body(bytes);
        // The answer comes after the whole body is up: the whole call's bound.
        let (status, _) = call(req, CallLimits { answer: total, total, max_body: 64 << 10 }).await.map_err(|e| format!("push {a}: {e}"))?;
        if !status.is_success() {
            return Err(format!("push {a}: {status}"));
        }
        held += 1;
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_offered_travels_once_and_counts_never_underflow() {
        let a = |i: u8| BlobAddress::of(&[i]);
        let offered = [a(1), a(2), a(3), a(2)];
        // The receiver lists blobs never offered, twice the same one, more than offered.
        let missing = [a(9), a(2), a(2), a(8), a(7), a(6), a(1)];
        let (push, held) = plan(&offered, &missing);
        assert_eq!(push, vec![a(1), a(2)]);
        assert_eq!(held, 1, "three distinct offered, two to push");
        assert_eq!(plan(&[], &missing), (vec![], 0));
        assert_eq!(plan(&offered, &[]), (vec![], 3));
    }
}
