//! Pre-casting (Fig. 4): in the off-peak window set in config, the origin
//! pushes the first segments of its most popular titles to registered peer
//! clients, so their playback starts from their own disk.
//!
//! Popularity is pure code over counters the state keeps (orders plus
//! granted plays per title, no scan of the log). Pushing
//! reuses the staging protocol (ask what is missing, push it), authorised
//! with the push token each peer received when it joined.

use std::collections::BTreeMap;
use std::sync::Arc;

use tranzcast_config::TimeWindow;
use tranzcast_proto::BlobAddress;
use tranzcast_proto::manifest::SignedManifest;

use crate::Inner;
use crate::push::TitleProgress;

/// The `n` most popular titles by score (orders + granted plays); ties by
/// id. Only titles in `catalog` count.
pub fn popular<'a>(scores: impl IntoIterator<Item = (&'a str, u64)>, catalog: &[String], n: usize) -> Vec<String> {
    let mut score: BTreeMap<&str, u64> = catalog.iter().map(|t| (t.as_str(), 0)).collect();
    for (t, k) in scores {
        if let Some(s) = score.get_mut(t) {
            *s = s.saturating_add(k);
        }
    }
    let mut ranked: Vec<(&str, u64)> = score.into_iter().filter(|(_, s)| *s > 0).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked.into_iter().take(n).map(|(t, _)| t.to_string()).collect()
}

/// Whether `unix_secs` falls in the daily UTC window.
pub fn in_window(window: &TimeWindow, unix_secs: u64) -> bool {
    window.contains(((unix_secs % 86_400) / 60) as u16)
}

/// One pre-cast round: push the top titles' first segments to every live peer.
pub(crate) async fn round(inner: &Arc<Inner>, http: &reqwest::Client) -> Result<(), String> {
    let cfg = &inner.config.precast;
    if !cfg.enabled || !in_window(&cfg.window, crate::now_secs()) {
        return Ok(());
    }
    let peers: Vec<_> = inner
        .live_members()
        .map_err(|e| format!("{e:?}"))?
        .into_iter()
        .filter(|m| m.role == "peer" && m.push_token.is_some() && inner.peer_live(m))
        .collect();
    if peers.is_empty() {
        return Ok(());
    }
    let catalog: Vec<(String, BlobAddress)> =
        inner.store.titles().map_err(|e| e.to_string())?.into_iter().map(|(t, a)| (t.to_string(), a)).collect();
    let names: Vec<String> = catalog.iter().map(|(t, _)| t.clone()).collect();
    let scores = inner.state.popularity().map_err(|e| e.to_string())?;
    let top = popular(scores.iter().map(|(t, n)| (t.as_str(), *n)), &names, cfg.titles as usize);
    for title in &top {
        let Some((_, maddr)) = catalog.iter().find(|(t, _)| t == title) else { continue };
        let mbytes = inner.store.get(maddr).map_err(|e| e.to_string())?.ok_or("manifest missing")?;
        let m = SignedManifest::decode(&mbytes).map_err(|e| e.to_string())?.manifest;
        // The manifest (public, signed) and the first segments.
        let mut blobs = vec![*maddr];
        blobs.extend(m.segments.iter().take(cfg.segments as usize));
        for peer in &peers {
            // One origin at a time pre-casts a title to a peer.
            if !inner.may_push("precast", &format!("{}/{title}", peer.name)) {
                continue;
            }
            let token = peer.push_token.as_deref().unwrap_or("");
            let pushed = crate::push::push_missing(inner, http, &peer.https, token, &blobs).await?;
            if let Ok(mut s) = inner.precast.lock() {
                s.entry(peer.name.clone()).or_default().insert(
                    title.clone(),
                    TitleProgress { held: pushed, total: blobs.len() as u64, complete: pushed == blobs.len() as u64 },
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_orders_and_plays_within_the_catalog() {
        let catalog = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let top = popular([("b", 3), ("a", 1), ("gone", 9), ("c", 4)], &catalog, 2);
        assert_eq!(top, vec!["c".to_string(), "b".to_string()]);
        assert_eq!(popular([], &catalog, 3), Vec::<String>::new(), "nothing ordered, nothing pre-cast");
        assert_eq!(popular([("a", 1), ("c", 1)], &catalog, 5), vec!["a".to_string(), "c".to_string()], "ties by id");
        assert_eq!(popular([("a", u64::MAX), ("a", 1), ("b", 2)], &catalog, 1), vec!["a".to_string()], "no overflow");
    }

    #[test]
    fn window_in_utc() {
        let w = TimeWindow::parse("02:00-05:00").unwrap();
        assert!(in_window(&w, 2 * 3600));
        assert!(in_window(&w, 86_400 * 1000 + 4 * 3600 + 59 * 60));
        assert!(!in_window(&w, 5 * 3600));
        assert!(!in_window(&w, 86_400 * 7 + 12 * 3600));
    }
}
