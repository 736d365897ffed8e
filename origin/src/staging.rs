//! Staging (Fig. 13, first step): the origin pushes the complete set of every
//! title to every node. Each round asks each live node which of a title's
//! blobs it lacks, pushes those (the node checks each against its address),
//! and sends the signed manifest last, which the node accepts only once every
//! segment is there. Asking first makes staging resumable: an interrupted
//! push, a restarted origin or a node that joins late all converge on the
//! next round. Nodes are staged concurrently, every call bounded
//! ([`crate::push::PUSH_BOUNDS`]): a node that hangs holds its own staging only.

use std::sync::Arc;

use tranzcast_proto::manifest::SignedManifest;

use crate::Inner;
use crate::push::{PUSH_BOUNDS, TitleProgress, push_missing};
use crate::state::Member;

/// Runs staging (and pre-cast) rounds until the task is aborted.
pub(crate) async fn run(inner: Arc<Inner>, http: reqwest::Client) {
    let mut tick = tokio::time::interval(inner.config.staging_interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = crate::masters::copy_round(&inner).await {
            tracing::warn!(error = %e, "master copies: round failed; retrying next round");
        }
        let nodes: Vec<Member> = match inner.live_members() {
            Ok(m) => m.into_iter().filter(|m| m.role == "node").collect(),
            Err(e) => {
                tracing::warn!(error = ?e, "staging: cannot list members");
                continue;
            }
        };
        let mut round = tokio::task::JoinSet::new();
        for node in nodes {
            let (inner, http) = (inner.clone(), http.clone());
            round.spawn(async move {
                if let Err(e) = stage_node(&inner, &http, &node).await {
                    tracing::warn!(node = %node.name, error = %e, "staging round failed; retrying next round");
                }
            });
        }
        while round.join_next().await.is_some() {}
        if let Err(e) = crate::precast::round(&inner, &http).await {
            tracing::warn!(error = %e, "pre-cast round failed; retrying next round");
        }
    }
}

/// Every title this origin can stage, with its signed manifest: its
/// store's, and on a shared engine with master copies the cluster's catalog
/// too (their blobs come from the master store).
fn titles(inner: &Inner) -> Result<Vec<(String, bytes::Bytes)>, String> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (title, maddr) in inner.store.titles().map_err(|e| e.to_string())? {
        let mbytes = inner.store.get(&maddr).map_err(|e| e.to_string())?.ok_or("manifest missing")?;
        seen.insert(title.to_string());
        out.push((title.to_string(), mbytes));
    }
    if let (Some(pg), Some(_)) = (inner.state.shared(), &inner.masters) {
        for (title, manifest) in pg.titles().map_err(|e| e.to_string())? {
            if seen.insert(title.clone()) {
                out.push((title, bytes::Bytes::from(manifest)));
            }
        }
    }
    Ok(out)
}

async fn stage_node(inner: &Arc<Inner>, http: &reqwest::Client, node: &Member) -> Result<(), String> {
    let titles = titles(inner)?;
    for (title, mbytes) in titles {
        let m = SignedManifest::decode(&mbytes).map_err(|e| e.to_string())?.manifest;
        let total = m.segments.len() as u64 + 1;
        let known = inner.staging.lock().map(|s| s.get(&node.name).and_then(|t| t.get(title.as_str())).cloned()).ok().flatten();
        if known.as_ref().is_some_and(|p| p.complete) {
            continue;
        }
        // One origin at a time stages a title to a node.
        if !inner.may_push("staging", &format!("{}/{title}", node.name)) {
            continue;
        }
        set(inner, &node.name, title.as_str(), TitleProgress { held: known.map(|p| p.held).unwrap_or(0), total, complete: false });
        crate::masters::restore(inner, &m.segments).await?;
        let held = push_missing(inner, http, &node.https, &inner.config.cluster_token, &m.segments).await?;
        set(inner, &node.name, title.as_str(), TitleProgress { held, total, complete: false });
        let req =
            http.put(format!("{}/v1/titles/{title}/manifest", node.https)).bearer_auth(inner.config.cluster_token.expose()).body(mbytes);
        let limits = tranzcast_net::client::CallLimits { answer: PUSH_BOUNDS.1, total: PUSH_BOUNDS.1, max_body: 64 << 10 };
        let (status, _) = tranzcast_net::client::call(req, limits).await.map_err(|e| format!("manifest: {e}"))?;
        if !status.is_success() {
            return Err(format!("manifest {title}: {status}"));
        }
        set(inner, &node.name, title.as_str(), TitleProgress { held: total, total, complete: true });
        tracing::info!(node = %node.name, title = %title, blobs = total, "staged");
    }
    Ok(())
}

fn set(inner: &Inner, node: &str, title: &str, p: TitleProgress) {
    if let Ok(mut s) = inner.staging.lock() {
        s.entry(node.to_string()).or_default().insert(title.to_string(), p);
    }
}
