//! The server's budget for answer bytes quinn holds for its HTTP/3
//! connections. quinn keeps every byte written to a connection until the
//! client acknowledges it, up to the connection's send window; a client
//! that grants credit and never acknowledges pins that much for as long as
//! it keeps the connection alive. 8 MiB per connection across
//! `limits.max_connections` (16,384) would be 128 GiB, so the windows come
//! out of one budget (`limits.h3_send_memory`): a connection gets the full
//! window while the budget holds it, what is left otherwise, and never
//! less than [`FLOOR`] (so the sum passes the budget by at most a floor
//! per connection). A connection given less grows back toward the full
//! window, at its next request, from what others gave back; a connection
//! with nothing in hand (every answer acknowledged or reset, so quinn holds
//! none of it) gives back all but the floor, so idle connections do not
//! hold the budget.
//!
//! The decision is a pure function of the numbers ([`share`]); the pool
//! around it is one atomic counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A connection's window when the budget holds it: 2 MiB cost 9 % on 1 MiB
/// answers on loopback, 8 MiB 3 % (docs/loadtest.md, twelfth session).
pub(crate) const FULL: u64 = 8 << 20;

/// The least window a connection is given, whatever the budget: 64 KiB is
/// 10 Mbit/s at a 50 ms round trip, a video stream's rate.
pub(crate) const FLOOR: u64 = 64 << 10;

/// The window a connection holding `held` should have when `reserved`
/// bytes of `budget` are reserved in all (its own `held` among them).
pub(crate) fn share(held: u64, reserved: u64, budget: u64) -> u64 {
    let free = budget.saturating_sub(reserved);
    held.saturating_add(free).clamp(FLOOR, FULL)
}

/// The windows reserved now, against the budget.
#[derive(Debug)]
pub(crate) struct SendWindows {
    budget: u64,
    reserved: Arc<AtomicU64>,
}

impl SendWindows {
    /// `reserved` is the gauge `/metrics` shows (`ServerStats`).
    pub(crate) fn new(budget: u64, reserved: Arc<AtomicU64>) -> Self {
        Self { budget, reserved }
    }

    /// A new connection's window: the floor, until its first request
    /// ([`SendWindow::grow`]), so connections that ask nothing hold nothing more.
    pub(crate) fn open(&self) -> SendWindow {
        self.reserved.fetch_add(FLOOR, Ordering::AcqRel);
        SendWindow { reserved: self.reserved.clone(), budget: self.budget, held: FLOOR }
    }
}

/// One connection's share of the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct SendWindow {
    reserved: Arc<AtomicU64>,
    budget: u64,
    held: u64,
}

impl SendWindow {
    /// The window, bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.held
    }

    /// Grows toward [`FULL`] from what the budget has free; the new window
    /// if it grew. Cheap when full (no atomic operation).
    pub(crate) fn grow(&mut self) -> Option<u64> {
        if self.held >= FULL {
            return None;
        }
        let before = self.held;
        self.regrant();
        (self.held > before).then_some(self.held)
    }

    /// Gives back all but [`FLOOR`], for a connection with nothing in hand
    /// (every answer acknowledged or reset, so quinn holds none of it); the
    /// new window if it shrank.
    pub(crate) fn shrink(&mut self) -> Option<u64> {
        if self.held <= FLOOR {
            return None;
        }
        self.reserved.fetch_sub(self.held - FLOOR, Ordering::AcqRel);
        self.held = FLOOR;
        Some(FLOOR)
    }

    fn regrant(&mut self) {
        let held = self.held;
        let mut new = held;
        let _ = self.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
            new = share(held, r, self.budget).max(held);
            Some(r - held + new)
        });
        self.held = new;
    }
}

impl Drop for SendWindow {
    fn drop(&mut self) {
        self.reserved.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_what_is_free_within_the_floor_and_the_full_window() {
        let b = 20 << 20;
        assert_eq!(share(0, 0, b), FULL);
        assert_eq!(share(0, 16 << 20, b), 4 << 20);
        assert_eq!(share(0, b, b), FLOOR);
        // Over the budget already (floors): still the floor.
        assert_eq!(share(0, b + (5 << 20), b), FLOOR);
        // A connection holding 4 MiB, 8 MiB given back: full again.
        assert_eq!(share(4 << 20, 12 << 20, b), FULL);
        assert_eq!(share(4 << 20, 19 << 20, b), 5 << 20);
    }

    #[test]
    fn windows_come_out_of_the_budget_and_grow_back_when_others_close() {
        const M: u64 = 1 << 20;
        let reserved = Arc::new(AtomicU64::new(0));
        let load = || reserved.load(Ordering::Relaxed);
        let pool = SendWindows::new(20 * M, reserved.clone());
        let (mut a, mut b, mut c, mut d) = (pool.open(), pool.open(), pool.open(), pool.open());
        assert_eq!(load(), 4 * FLOOR, "opened: the floor each");
        // Their first requests: full windows while the budget holds them, then what is left.
        assert_eq!(a.grow(), Some(FULL));
        assert_eq!(b.grow(), Some(FULL));
        assert_eq!(c.grow(), Some(4 * M - FLOOR));
        assert_eq!(d.grow(), None, "nothing free: the floor");
        assert_eq!(load(), 20 * M);
        assert_eq!(c.grow(), None);
        drop(a);
        assert_eq!(c.grow(), Some(FULL));
        assert_eq!(d.grow(), Some(4 * M));
        // Idle, d keeps only the floor; its next request takes what is free again.
        assert_eq!(d.shrink(), Some(FLOOR));
        assert_eq!(d.shrink(), None);
        assert_eq!(load(), 16 * M + FLOOR);
        drop(b);
        assert_eq!(d.grow(), Some(FULL));
        drop((c, d));
        assert_eq!(load(), 0, "every byte given back");
    }
}
