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
//! window, at its next request, from what closed connections gave back.
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
    (held + free).clamp(FLOOR, FULL)
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

    /// A new connection's window.
    pub(crate) fn open(&self) -> SendWindow {
        let mut w = SendWindow { reserved: self.reserved.clone(), budget: self.budget, held: 0 };
        w.regrant();
        w
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
        let reserved = Arc::new(AtomicU64::new(0));
        let pool = SendWindows::new(20 << 20, reserved.clone());
        let a = pool.open();
        let b = pool.open();
        let mut c = pool.open();
        let mut d = pool.open();
        assert_eq!((a.bytes(), b.bytes(), c.bytes(), d.bytes()), (FULL, FULL, 4 << 20, FLOOR));
        assert_eq!(reserved.load(Ordering::Relaxed), (20 << 20) + FLOOR);
        assert_eq!(c.grow(), None, "nothing free");
        drop(a);
        assert_eq!(c.grow(), Some(FULL));
        // What is left beside b and c (8 MiB each) is d's: 4 MiB.
        assert_eq!(d.grow(), Some(4 << 20));
        assert_eq!(d.grow(), None);
        drop(b);
        assert_eq!(d.grow(), Some(FULL));
        drop((c, d));
        assert_eq!(reserved.load(Ordering::Relaxed), 0, "every byte given back");
    }
}
