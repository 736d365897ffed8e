//! The revoked serials an edge (node, peer) checks certificates against, and
//! how fresh they are, as pure state: the clock is passed in.
//!
//! Fails closed: until the first list is read whole, certificates are refused
//! (503 `revocations_unknown`, with Retry-After: another source may be
//! ready); a pull that fails (an error status, a stall, a body that is not
//! entirely a list) keeps the last good set rather than replacing it with
//! less; a set older than the configured limit is still applied, but the
//! server reports itself unhealthy (pulse `health`, heartbeat), so clients
//! and the origin prefer others until a pull succeeds again.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tranzcast_proto::access::Denial;

/// How fresh the set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No list read yet: certificates are refused.
    Unknown,
    /// Read within the limit.
    Fresh,
    /// Older than the limit: applied, but the server reports itself unhealthy.
    Stale,
}

impl Freshness {
    /// The pulse's `health` for it.
    pub fn health(self) -> &'static str {
        match self {
            Freshness::Fresh => "ok",
            Freshness::Unknown => "revocations_unknown",
            Freshness::Stale => "revocations_stale",
        }
    }
}

/// The last good revocation set and when it was read.
#[derive(Debug, Default)]
pub struct Revocations {
    serials: HashSet<[u8; 16]>,
    read_at: Option<Instant>,
    failures: u64,
    last_error: Option<String>,
}

impl Revocations {
    /// A set read whole at `now` (replacing the last).
    pub fn replace(&mut self, serials: HashSet<[u8; 16]>, now: Instant) {
        self.serials = serials;
        self.read_at = Some(now);
        self.last_error = None;
    }

    /// A pull that failed: the set stays as it was.
    pub fn failed(&mut self, why: String) {
        self.failures += 1;
        self.last_error = Some(why);
    }

    /// How fresh the set is at `now`, against `max_age`.
    pub fn freshness(&self, now: Instant, max_age: Duration) -> Freshness {
        match self.read_at {
            None => Freshness::Unknown,
            Some(t) if now.saturating_duration_since(t) > max_age => Freshness::Stale,
            Some(_) => Freshness::Fresh,
        }
    }

    /// Seconds since the set was read (None: never).
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.read_at.map(|t| now.saturating_duration_since(t))
    }

    /// Failed pulls since start.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Why the last pull failed, while no pull has succeeded since.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Serials in the set.
    pub fn len(&self) -> usize {
        self.serials.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }

    /// Whether a certificate or session serial may be served: refused when
    /// revoked, or when no list has been read yet.
    pub fn check(&self, serial: &[u8; 16]) -> Result<(), Denial> {
        if self.read_at.is_none() {
            return Err((
                503,
                "revocations_unknown",
                "this server has not yet read the origin's revocation list; try another source".into(),
            ));
        }
        if self.serials.contains(serial) {
            return Err((403, "revoked", "the certificate was revoked".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_until_read_keeps_the_last_good_set_and_goes_stale() {
        let t0 = Instant::now();
        let max = Duration::from_secs(60);
        let mut r = Revocations::default();
        assert_eq!(r.freshness(t0, max), Freshness::Unknown);
        assert_eq!(r.check(&[1; 16]).unwrap_err().1, "revocations_unknown");
        r.failed("500".into());
        assert_eq!(r.check(&[1; 16]).unwrap_err().0, 503, "a failed first pull does not open the door");
        r.replace(HashSet::from([[1; 16]]), t0);
        assert_eq!(r.freshness(t0 + max, max), Freshness::Fresh);
        assert_eq!(r.check(&[1; 16]).unwrap_err().1, "revoked");
        assert!(r.check(&[2; 16]).is_ok());
        r.failed("stalled".into());
        r.failed("500".into());
        assert_eq!((r.failures(), r.last_error()), (3, Some("500")));
        assert_eq!(r.check(&[1; 16]).unwrap_err().1, "revoked", "failures keep the last good set");
        assert_eq!(r.freshness(t0 + max + Duration::from_millis(1), max), Freshness::Stale);
        assert_eq!(r.check(&[1; 16]).unwrap_err().1, "revoked", "a stale set is still applied");
        r.replace(HashSet::new(), t0 + max * 2);
        assert_eq!((r.freshness(t0 + max * 2, max), r.last_error()), (Freshness::Fresh, None));
        assert!(r.check(&[1; 16]).is_ok());
    }
}
