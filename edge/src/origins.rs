//! The origins of a cluster that runs several (on one shared state): every
//! call to "the origin" (joins and heartbeats, the revocation list, the
//! cluster view, the origin's key) goes to the one that answered last, and
//! on a failure to each other in turn, so a dead origin costs one failed
//! call, not the server's membership or its revocation list.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::EdgeError;

/// The origins, and which one answered last.
#[derive(Debug)]
pub(crate) struct Origins {
    urls: Vec<String>,
    current: AtomicUsize,
}

impl Origins {
    /// From the configured list (at least one URL; config validation says so).
    pub(crate) fn new(urls: Vec<String>) -> Self {
        Self { urls, current: AtomicUsize::new(0) }
    }

    /// Every origin's URL, the current one first.
    pub(crate) fn in_turn(&self) -> Vec<String> {
        let n = self.urls.len();
        let first = self.current.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(|i| self.urls[(first + i) % n].clone()).collect()
    }

    /// Runs `call` against each origin in turn until one succeeds (that
    /// one becomes the first to try next time); the last error when all fail.
    pub(crate) async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, EdgeError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, EdgeError>>,
    {
        let mut last = EdgeError::Origin("no origin configured".into());
        for (i, url) in self.in_turn().into_iter().enumerate() {
            match call(url.clone()).await {
                Ok(v) => {
                    if i > 0 {
                        tracing::warn!(origin = %url, "failed over to this origin");
                        if let Some(at) = self.urls.iter().position(|u| *u == url) {
                            self.current.store(at, Ordering::Relaxed);
                        }
                    }
                    return Ok(v);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_origin_is_skipped_and_the_one_that_answers_is_tried_first_next_time() {
        let o = Origins::new(vec!["a".into(), "b".into(), "c".into()]);
        let tried = std::sync::Mutex::new(Vec::new());
        let r = o
            .call(|u| {
                tried.lock().unwrap().push(u.clone());
                async move { if u == "b" { Ok(u) } else { Err(EdgeError::Origin(format!("{u} down"))) } }
            })
            .await;
        assert_eq!(r.unwrap(), "b");
        assert_eq!(*tried.lock().unwrap(), ["a", "b"]);
        assert_eq!(o.in_turn(), ["b", "c", "a"]);
        let all_down = o.call(|u| async move { Err::<(), _>(EdgeError::Origin(format!("{u} down"))) }).await;
        assert!(all_down.unwrap_err().to_string().contains("a down"), "the last error is the last origin tried");
    }
}
