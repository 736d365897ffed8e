//! The server's budget for answer bytes quinn holds for its HTTP/3
//! connections. quinn keeps every byte written to a connection until the
//! client acknowledges it, up to the connection's send window; a client
//! that grants credit and never acknowledges pins that much for as long as
//! it keeps the answer in hand. 8 MiB per connection across
//! `limits.max_connections` (16,384) would be 128 GiB, so the windows come
//! out of one budget (`limits.h3_send_memory`). A connection holds
//! [`FLOOR`] when opened and when idle; each answer, as it starts and while
//! it is written, grows the window by its length, up to the full window
//! while the budget holds it, what is left otherwise (so the sum passes the
//! budget by at most a floor per connection, and a request that has no
//! answer yet takes nothing). A connection with nothing in
//! hand (every answer acknowledged or reset, so quinn holds none of it)
//! gives back all but the floor.
//!
//! The decision is a pure function of the numbers ([`share`]); the pool
//! around it is one atomic counter, and a connection's window one more
//! (its requests are polled on the connection's task, one at a time).

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

    /// A new connection's window: the floor.
    pub(crate) fn open(&self) -> SendWindow {
        self.reserved.fetch_add(FLOOR, Ordering::AcqRel);
        SendWindow { reserved: self.reserved.clone(), budget: self.budget, held: AtomicU64::new(FLOOR) }
    }
}

/// One connection's share of the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct SendWindow {
    reserved: Arc<AtomicU64>,
    budget: u64,
    held: AtomicU64,
}

impl SendWindow {
    /// The window, bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Grows toward `want` (at most [`FULL`]) from what the budget has
    /// free; the new window if it grew. Cheap when already there.
    pub(crate) fn grow(&self, want: u64) -> Option<u64> {
        let want = want.min(FULL);
        let held = self.bytes();
        if held >= want {
            return None;
        }
        let mut new = held;
        let _ = self.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
            new = share(held, r, self.budget).min(want).max(held);
            Some(r - held + new)
        });
        self.held.store(new, Ordering::Release);
        (new > held).then_some(new)
    }

    /// Gives back all but [`FLOOR`], for a connection with nothing in hand
    /// (every answer acknowledged or reset, so quinn holds none of it); the
    /// new window if it shrank.
    pub(crate) fn shrink(&self) -> Option<u64> {
        let held = self.held.swap(FLOOR, Ordering::AcqRel);
        if held <= FLOOR {
            return None;
        }
        self.reserved.fetch_sub(held - FLOOR, Ordering::AcqRel);
        Some(FLOOR)
    }
}

impl Drop for SendWindow {
    fn drop(&mut self) {
        self.reserved.fetch_sub(*self.held.get_mut(), Ordering::AcqRel);
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
        let (a, b, c, d) = (pool.open(), pool.open(), pool.open(), pool.open());
        assert_eq!(load(), 4 * FLOOR, "opened: the floor each");
        // A small answer within the floor takes nothing; a larger one its length.
        assert_eq!(a.grow(FLOOR), None);
        assert_eq!(a.grow(FLOOR + M), Some(FLOOR + M));
        // Answers past the full window: full windows while the budget holds them, then what is left.
        assert_eq!(a.grow(u64::MAX), Some(FULL));
        assert_eq!(b.grow(u64::MAX), Some(FULL));
        assert_eq!(c.grow(u64::MAX), Some(4 * M - FLOOR));
        assert_eq!(d.grow(u64::MAX), None, "nothing free: the floor");
        assert_eq!(load(), 20 * M);
        assert_eq!(c.grow(u64::MAX), None);
        drop(a);
        assert_eq!(c.grow(u64::MAX), Some(FULL));
        assert_eq!(d.grow(u64::MAX), Some(4 * M));
        // Idle, d keeps only the floor; its next answer takes what is free again.
        assert_eq!(d.shrink(), Some(FLOOR));
        assert_eq!(d.shrink(), None);
        assert_eq!(load(), 16 * M + FLOOR);
        drop(b);
        assert_eq!(d.grow(2 * M), Some(2 * M));
        assert_eq!(d.grow(u64::MAX), Some(FULL));
        drop((c, d));
        assert_eq!(load(), 0, "every byte given back");
    }
}
