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
//! One address holds at most a sixteenth of the budget beyond its
//! connections' floors ([`address_cap`], at least a full window): with the
//! 256 connections an address may open,
//! first come, first served would let one client that never acknowledges
//! take all of it, and every other connection would be held to the floor.
//!
//! The decision is a pure function of the numbers ([`share`]); the pool
//! around it is one atomic counter, a table of what each address holds
//! (sharded, locked only when a window changes), and a connection's window
//! one more (its requests are polled on the connection's task, one at a time).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::limits::ClientKey;

/// A connection's window when the budget holds it: 2 MiB cost 9 % on 1 MiB
/// answers on loopback, 8 MiB 3 % (docs/loadtest.md, twelfth session).
pub(crate) const FULL: u64 = 8 << 20;

/// The least window a connection is given, whatever the budget: 64 KiB is
/// 10 Mbit/s at a 50 ms round trip, a video stream's rate.
pub(crate) const FLOOR: u64 = 64 << 10;

/// What one address's connections' windows may hold of `budget` beyond
/// their floors (which are theirs whatever the budget).
pub(crate) fn address_cap(budget: u64) -> u64 {
    (budget / 16).max(FULL)
}

/// The window a connection holding `held` should have when `reserved`
/// bytes of `budget` are reserved in all (its own `held` among them), and
/// its address's windows hold `by_address` beyond their floors (its own
/// among them), of the address's `cap`.
pub(crate) fn share(held: u64, reserved: u64, budget: u64, by_address: u64, cap: u64) -> u64 {
    let free = budget.saturating_sub(reserved).min(cap.saturating_sub(by_address));
    held.saturating_add(free).clamp(FLOOR, FULL)
}

const ADDRESS_SHARDS: usize = 16;

/// The windows reserved now, against the budget, in all and per address.
#[derive(Debug)]
pub(crate) struct SendWindows {
    pool: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    budget: u64,
    cap: u64,
    reserved: Arc<AtomicU64>,
    /// Grows held short by an address's cap (the `/metrics` counter).
    capped: Arc<AtomicU64>,
    /// What each address's windows hold beyond their floors (an address
    /// whose windows are all at the floor has no entry).
    addresses: Vec<Mutex<HashMap<ClientKey, u64>>>,
}

impl Pool {
    fn shard(&self, key: ClientKey) -> std::sync::MutexGuard<'_, HashMap<ClientKey, u64>> {
        let h = match key {
            ClientKey::V4(a) => u64::from(a),
            ClientKey::V6(p) => p,
        };
        let i = (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % ADDRESS_SHARDS;
        self.addresses[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives back `n` bytes `key` held, `beyond` of them beyond a floor.
    fn give_back(&self, key: ClientKey, n: u64, beyond: u64) {
        self.reserved.fetch_sub(n, Ordering::AcqRel);
        if beyond == 0 {
            return;
        }
        let n = beyond;
        let mut table = self.shard(key);
        if let Some(held) = table.get_mut(&key) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                table.remove(&key);
            }
        }
    }
}

impl SendWindows {
    /// `reserved` is the gauge `/metrics` shows, `capped` a counter of
    /// grows held to an address's share (`ServerStats`).
    pub(crate) fn new(budget: u64, reserved: Arc<AtomicU64>, capped: Arc<AtomicU64>) -> Self {
        let addresses = (0..ADDRESS_SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self { pool: Arc::new(Pool { budget, cap: address_cap(budget), reserved, capped, addresses }) }
    }

    /// A new connection's window, for a client at `key`: the floor.
    pub(crate) fn open(&self, key: ClientKey) -> SendWindow {
        self.pool.reserved.fetch_add(FLOOR, Ordering::AcqRel);
        SendWindow { pool: self.pool.clone(), key, held: AtomicU64::new(FLOOR) }
    }
}

/// One connection's share of the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct SendWindow {
    pool: Arc<Pool>,
    key: ClientKey,
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
        let pool = &self.pool;
        // The address's entry is locked through the update: its
        // connections on other cores grow one at a time.
        let mut table = pool.shard(self.key);
        let by_address = table.get(&self.key).copied().unwrap_or(0);
        let (mut new, mut capped) = (held, false);
        let _ = pool.reserved.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
            new = share(held, r, pool.budget, by_address, pool.cap).min(want).max(held);
            capped = new < share(held, r, pool.budget, 0, u64::MAX).min(want);
            Some(r - held + new)
        });
        if capped {
            pool.capped.fetch_add(1, Ordering::Relaxed);
        }
        if new > held {
            *table.entry(self.key).or_insert(0) += new - held;
        }
        drop(table);
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
        self.pool.give_back(self.key, held - FLOOR, held - FLOOR);
        Some(FLOOR)
    }
}

impl Drop for SendWindow {
    fn drop(&mut self) {
        let held = *self.held.get_mut();
        self.pool.give_back(self.key, held, held.saturating_sub(FLOOR));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_what_is_free_within_the_floor_and_the_full_window() {
        let b = 20 << 20;
        let share = |held, reserved, budget| share(held, reserved, budget, 0, u64::MAX);
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
    fn an_address_holds_at_most_its_cap_whatever_the_budget_has_free() {
        const M: u64 = 1 << 20;
        assert_eq!(address_cap(1 << 30), 64 * M, "a sixteenth of the default budget");
        assert_eq!(address_cap(20 * M), FULL, "at least a full window");
        let (b, cap) = (1 << 30, 64 * M);
        // The address's other connections hold 60 MiB beyond their floors:
        // 4 MiB left for this one beyond its own.
        assert_eq!(share(FLOOR, 70 * M, b, 60 * M, cap), 4 * M + FLOOR);
        // At its cap: the floor, with the budget nearly all free.
        assert_eq!(share(FLOOR, 70 * M, b, 64 * M, cap), FLOOR);
        // A window past the floor keeps what it holds.
        assert_eq!(share(2 * M, 70 * M, b, 64 * M, cap), 2 * M);
        // The budget, not the cap, is what is short.
        assert_eq!(share(FLOOR, b - M, b, 0, cap), M + FLOOR);
    }

    #[test]
    fn one_address_cannot_take_the_budget_from_the_others() {
        const M: u64 = 1 << 20;
        let (reserved, capped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let pool = SendWindows::new(16 * 16 * M, reserved.clone(), capped.clone());
        let (x, y) = (ClientKey::V4(1), ClientKey::V4(2));
        // x's connections: two full windows, what is left of its cap (16
        // MiB beyond the floors), then nothing.
        let xs: Vec<_> = (0..4).map(|_| pool.open(x)).collect();
        assert_eq!(xs[0].grow(u64::MAX), Some(FULL));
        assert_eq!(xs[1].grow(u64::MAX), Some(FULL));
        assert_eq!(xs[2].grow(u64::MAX), Some(3 * FLOOR));
        assert_eq!(capped.load(Ordering::Relaxed), 1, "held to the address's share, counted");
        assert_eq!(xs[3].grow(u64::MAX), None);
        assert_eq!(capped.load(Ordering::Relaxed), 2);
        // y, another address, still gets a full window.
        let yw = pool.open(y);
        assert_eq!(yw.grow(u64::MAX), Some(FULL));
        assert_eq!(capped.load(Ordering::Relaxed), 2);
        // x's first window idle again: its share is free for its others.
        assert_eq!(xs[0].shrink(), Some(FLOOR));
        assert_eq!(xs[3].grow(u64::MAX), Some(FULL));
        drop(xs);
        drop(yw);
        assert_eq!(reserved.load(Ordering::Relaxed), 0, "every byte given back");
        assert!(pool.pool.addresses.iter().all(|t| t.lock().unwrap().is_empty()), "no address left in the table");
    }

    #[test]
    fn windows_come_out_of_the_budget_and_grow_back_when_others_close() {
        const M: u64 = 1 << 20;
        let reserved = Arc::new(AtomicU64::new(0));
        let load = || reserved.load(Ordering::Relaxed);
        let pool = SendWindows::new(20 * M, reserved.clone(), Arc::default());
        let open = |i| pool.open(ClientKey::V4(i));
        let (a, b, c, d) = (open(1), open(2), open(3), open(4));
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
