//! Keeps a listener's socket filter ([`crate::synfilter`]) in step with the
//! penalty box: rebuilt when an address is penalised or a penalty ends, at
//! most ten times a second (a flood of penalties is one rebuild).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::guards::Slots;
use crate::stats::ServerStats;
use crate::synfilter;

const REBUILD_EVERY: Duration = Duration::from_millis(100);

pub(super) struct PenaltyFilter {
    slots: Arc<Slots>,
    changes: watch::Receiver<u64>,
    /// When the first penalty in the filter ends.
    next_end: Option<Instant>,
    /// A change seen and not yet applied (kept across cancelled waits).
    pending: bool,
    last: Option<Instant>,
    attached: bool,
    /// The socket took no filter (not Linux, or refused): user space refuses alone.
    off: bool,
}

impl PenaltyFilter {
    pub(super) fn new(slots: &Arc<Slots>) -> Self {
        Self {
            slots: slots.clone(),
            changes: slots.penalty_changes.subscribe(),
            next_end: None,
            pending: false,
            last: None,
            attached: false,
            off: !cfg!(any(target_os = "linux", target_os = "android")),
        }
    }

    /// Resolves when the filter should be rebuilt. Cancel-safe: a change
    /// seen by a wait that is then dropped is kept in `pending`.
    pub(super) async fn due(&mut self) {
        if self.off {
            return std::future::pending().await;
        }
        if !self.pending {
            let end = self.next_end;
            tokio::select! {
                r = self.changes.changed() => if r.is_err() { return std::future::pending().await },
                () = async { match end { Some(t) => tokio::time::sleep_until(t.into()).await, None => std::future::pending().await } } => {}
            }
            self.pending = true;
        }
        if let Some(last) = self.last {
            tokio::time::sleep_until((last + REBUILD_EVERY).into()).await;
        }
    }

    /// Builds the program from the addresses serving a penalty now and attaches it.
    pub(super) fn apply(&mut self, listener: &TcpListener, stats: &ServerStats) {
        let now = Instant::now();
        let (keys, first_end) = self.slots.penalties.lock().map(|p| p.active(now)).unwrap_or_default();
        (self.next_end, self.pending, self.last) = (first_end, false, Some(now));
        match attach(listener, &keys, self.attached) {
            Ok(held) => {
                self.attached = held > 0;
                stats.filtered_addresses.store(held as u64, Ordering::Relaxed);
                tracing::debug!(addresses = held, "penalty filter");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the listener takes no socket filter: penalised addresses are refused after accept");
                self.off = true;
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn attach(listener: &TcpListener, keys: &[crate::limits::ClientKey], attached: bool) -> std::io::Result<usize> {
    let sock = socket2::SockRef::from(listener);
    match synfilter::drop_from(keys) {
        Some((program, held)) => {
            let insns: Vec<socket2::SockFilter> = program.iter().map(|i| socket2::SockFilter::new(i.code, i.jt, i.jf, i.k)).collect();
            sock.attach_filter(&insns).map(|()| held)
        }
        None if attached => sock.detach_filter().map(|()| 0),
        None => Ok(0),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn attach(_: &TcpListener, _: &[crate::limits::ClientKey], _: bool) -> std::io::Result<usize> {
    Err(std::io::Error::other("socket filters are Linux's"))
}
