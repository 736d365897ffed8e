//! What a server lets one client take, as pure decisions (no I/O; the
//! caller passes `now`): connection slots in total and per address,
//! requests in hand per address, the penalty box, the deadline of a request
//! body, and per-address token buckets for rate limits (new connections,
//! cancelled requests, strikes, plays).
//!
//! Addresses are grouped as an operator would: an IPv4 address is one
//! client, an IPv6 client is its /64 (one home or host is handed a whole
//! /64, so counting single IPv6 addresses would let one machine take 2^64
//! slots), and an IPv4-mapped IPv6 address is its IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A client address as limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl ClientKey {
    /// The key `ip` counts under.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a new connection is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// The server holds its most connections.
    Total,
    /// This client address holds its most connections.
    PerAddress,
}

/// Open connections, in total and per client address.
#[derive(Debug)]
pub struct ConnectionTable {
    max_total: u32,
    max_per_address: u32,
    open: u32,
    per_address: HashMap<ClientKey, u32>,
}

impl ConnectionTable {
    /// A table that takes at most `max_total` connections, `max_per_address` from one address.
    pub fn new(max_total: u32, max_per_address: u32) -> Self {
        Self { max_total, max_per_address, open: 0, per_address: HashMap::new() }
    }

    /// Takes a slot for a connection from `key`, or says why not.
    pub fn open(&mut self, key: ClientKey) -> Result<(), ConnectionRefusal> {
        if self.open >= self.max_total {
            return Err(ConnectionRefusal::Total);
        }
        let n = self.per_address.entry(key).or_insert(0);
        if *n >= self.max_per_address {
            return Err(ConnectionRefusal::PerAddress);
        }
        *n += 1;
        self.open += 1;
        Ok(())
    }

    /// Gives back a slot taken by [`ConnectionTable::open`].
    pub fn close(&mut self, key: ClientKey) {
        if let Some(n) = self.per_address.get_mut(&key) {
            *n -= 1;
            self.open = self.open.saturating_sub(1);
            if *n == 0 {
                // Forgotten at once: the table holds only addresses with connections.
                self.per_address.remove(&key);
            }
        }
    }

    /// Connections open now.
    pub fn open_count(&self) -> u32 {
        self.open
    }

    /// Addresses with at least one connection open.
    pub fn addresses(&self) -> usize {
        self.per_address.len()
    }
}

/// A token bucket: `burst` tokens, refilled at `per_s` a second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, at: now }
    }

    /// Takes one token; on failure, how long until one is there.
    fn take(&mut self, per_s: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * per_s).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_s))
        }
    }
}

/// Addresses serving a penalty, until when. Kept apart from the rate tables
/// so that a spray of new addresses cannot push a penalty out; bounded: when
/// full, expired entries are dropped (at most once a second, so a full box
/// costs no scan per request) and a penalty that still does not fit is not
/// recorded (the caller counts it).
#[derive(Debug)]
pub struct PenaltyBox {
    until: HashMap<ClientKey, Instant>,
    max: usize,
    next_purge: Option<Instant>,
}

impl PenaltyBox {
    /// A box holding at most `max` addresses.
    pub fn new(max: usize) -> Self {
        Self { until: HashMap::new(), max: max.max(1), next_purge: None }
    }

    /// Puts `key` in the box until `until`; false if the box is full.
    pub fn penalize(&mut self, key: ClientKey, until: Instant, now: Instant) -> bool {
        if self.until.len() >= self.max && !self.until.contains_key(&key) && self.next_purge.is_none_or(|t| now >= t) {
            self.until.retain(|_, t| *t > now);
            self.next_purge = Some(now + Duration::from_secs(1));
        }
        if self.until.len() >= self.max && !self.until.contains_key(&key) {
            return false;
        }
        let t = self.until.entry(key).or_insert(until);
        *t = (*t).max(until);
        true
    }

    /// How long `key` still has to wait, if it is in the box.
    pub fn remaining(&mut self, key: ClientKey, now: Instant) -> Option<Duration> {
        match self.until.get(&key) {
            Some(t) if *t > now => Some(*t - now),
            Some(_) => {
                self.until.remove(&key);
                None
            }
            None => None,
        }
    }

    /// The addresses serving a penalty at `now`, the latest penalised first
    /// (the ones a bounded list keeps), and when the first of them ends.
    pub fn active(&self, now: Instant) -> (Vec<ClientKey>, Option<Instant>) {
        let mut live: Vec<(ClientKey, Instant)> = self.until.iter().filter(|(_, t)| **t > now).map(|(k, t)| (*k, *t)).collect();
        live.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let first_end = live.iter().map(|(_, t)| *t).min();
        (live.into_iter().map(|(k, _)| k).collect(), first_end)
    }

    /// Addresses in the box (some perhaps expired, until looked up or purged).
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether the box is empty.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// Requests in hand an address may always reach, whatever the server's
/// load (within its own cap): a player's parallel fetches and a few more.
pub const SHARE_FLOOR: u32 = 8;

/// Beyond [`SHARE_FLOOR`], an address holding `n` requests may start another
/// only while `n` times this is below the places still free server-wide.
pub const SHARE_DIVISOR: u64 = 8;

/// Whether an address holding `held` requests in hand may start another
/// while `free` places are left of the server's `max_concurrent_requests`.
///
/// The per-address cap alone let a few addresses take every place: eight
/// addresses at the default 1,024 each fill 8,192, and every other client
/// is refused for as long as they keep their requests in hand (a reader
/// that stops reading keeps one for the idle timeout, and reconnects). With
/// each address held to an eighth of what is free, `n` addresses holding
/// all they may leave `8 / (n + 8)` of the places free: a newcomer finds
/// one until over a thousand addresses each hold the floor. (Requests
/// refused hold no place meanwhile, `server/request.rs::process`; the
/// operator's own servers are held to their cap only, `ClusterMember`.)
pub fn may_start(held: u32, free: u64) -> bool {
    held < SHARE_FLOOR || u64::from(held).saturating_mul(SHARE_DIVISOR) < free
}

/// Requests in hand per client address, and at most how many.
#[derive(Debug)]
pub struct AddressLoad {
    max: u32,
    in_hand: HashMap<ClientKey, u32>,
}

impl AddressLoad {
    /// At most `max` requests in hand per address.
    pub fn new(max: u32) -> Self {
        Self { max: max.max(1), in_hand: HashMap::new() }
    }

    /// Takes a place for a request from `key` while `free` places are left
    /// server-wide; false when it holds its most, or its share of what is
    /// free ([`may_start`]).
    pub fn start(&mut self, key: ClientKey, free: u64) -> bool {
        // One lookup: a refusal leaves no empty entry, since an address is
        // refused only when it holds some (the cap is at least 1, the floor 8).
        let n = self.in_hand.entry(key).or_insert(0);
        if *n >= self.max || !may_start(*n, free) {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back a place taken by [`AddressLoad::start`].
    pub fn end(&mut self, key: ClientKey) {
        if let Some(n) = self.in_hand.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.in_hand.remove(&key);
            }
        }
    }

    /// Addresses with requests in hand.
    pub fn addresses(&self) -> usize {
        self.in_hand.len()
    }
}

/// How long a request body of `len` bytes may take to arrive: the header
/// timeout (a grace for the first bytes) plus its length at the slowest
/// rate accepted. Bounded, whatever the inputs.
pub fn body_deadline(len: u64, header_timeout: Duration, min_rate: u64) -> Duration {
    let secs = len as f64 / min_rate.max(1) as f64;
    header_timeout.saturating_add(Duration::from_secs_f64(secs.min(86_400.0)))
}

/// Per-address token buckets (`per_s` a second, bursts of `burst`), for
/// rate limits on routes any client may call.
///
/// Memory is bounded: addresses live in two generations of at most
/// `max_addresses / 2` each; when the current one is full the older is
/// dropped. An address forgotten that way starts again with a full bucket,
/// which only happens after `max_addresses / 2` other addresses were seen
/// since its last request (a spray from that many addresses is a job for
/// load shedding, not for a per-address limit).
#[derive(Debug)]
pub struct RateLimiter {
    per_s: f64,
    burst: f64,
    half: usize,
    current: HashMap<ClientKey, Bucket>,
    previous: HashMap<ClientKey, Bucket>,
}

impl RateLimiter {
    /// A limiter of `per_s` requests a second per address, bursts of `burst`,
    /// tracking at most `max_addresses` addresses.
    pub fn new(per_s: u32, burst: u32, max_addresses: u32) -> Self {
        Self {
            per_s: f64::from(per_s.max(1)),
            burst: f64::from(burst.max(1)),
            half: (max_addresses as usize / 2).max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// Counts a request from `key` at `now`: Ok, or how long until it would be allowed.
    pub fn check(&mut self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        let bucket = match self.current.get_mut(&key) {
            Some(b) => b,
            None => {
                let b = self.previous.remove(&key).unwrap_or_else(|| Bucket::full(self.burst, now));
                if self.current.len() >= self.half {
                    self.previous = std::mem::take(&mut self.current);
                }
                self.current.entry(key).or_insert(b)
            }
        };
        bucket.take(self.per_s, self.burst, now)
    }

    /// Addresses tracked now (both generations).
    pub fn tracked(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v4(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    #[test]
    fn keys_group_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(v4("2001:db8:1:2::1"), v4("2001:db8:1:2:ffff::9"));
        assert_ne!(v4("2001:db8:1:2::1"), v4("2001:db8:1:3::1"));
        assert_eq!(v4("::ffff:10.0.0.1"), v4("10.0.0.1"));
        assert_ne!(v4("10.0.0.1"), v4("10.0.0.2"));
    }

    #[test]
    fn connection_table_counts_total_and_per_address() {
        let mut t = ConnectionTable::new(3, 2);
        let (a, b) = (v4("10.0.0.1"), v4("10.0.0.2"));
        assert_eq!(t.open(a), Ok(()));
        assert_eq!(t.open(a), Ok(()));
        assert_eq!(t.open(a), Err(ConnectionRefusal::PerAddress));
        assert_eq!(t.open(b), Ok(()));
        assert_eq!(t.open(b), Err(ConnectionRefusal::Total));
        t.close(a);
        assert_eq!(t.open_count(), 2);
        assert_eq!(t.open(b), Ok(()));
        for k in [a, b, b] {
            t.close(k);
        }
        assert_eq!((t.open_count(), t.addresses()), (0, 0), "closed addresses are forgotten");
        // A close without an open (a bug elsewhere) does not underflow.
        t.close(a);
        assert_eq!(t.open_count(), 0);
    }

    #[test]
    fn body_deadline_grows_with_length_and_stays_bounded() {
        let h = Duration::from_secs(10);
        assert_eq!(body_deadline(0, h, 65536), h);
        assert_eq!(body_deadline(65536 * 4, h, 65536), h + Duration::from_secs(4));
        assert_eq!(body_deadline(u64::MAX, h, 0), h + Duration::from_secs(86_400), "hostile inputs stay bounded");
        assert_eq!(body_deadline(10, Duration::MAX, 1), Duration::MAX);
    }

    #[test]
    fn rate_limiter_buckets_per_address() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, 20, 1000);
        let a = v4("10.0.0.1");
        assert!((0..20).all(|_| r.check(a, t0).is_ok()));
        let wait = r.check(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(r.check(v4("10.0.0.2"), t0).is_ok(), "another address has its own bucket");
        assert!(r.check(a, t0 + Duration::from_millis(100)).is_ok(), "a token back after 1/rate");
    }

    #[test]
    fn the_active_penalties_come_latest_first_without_the_ended_ones() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = PenaltyBox::new(10);
        b.penalize(ClientKey::V4(1), t0 + s(5), t0);
        b.penalize(ClientKey::V4(2), t0 + s(20), t0);
        b.penalize(ClientKey::V6(3), t0 + s(10), t0);
        assert_eq!(b.active(t0), (vec![ClientKey::V4(2), ClientKey::V6(3), ClientKey::V4(1)], Some(t0 + s(5))));
        assert_eq!(b.active(t0 + s(6)), (vec![ClientKey::V4(2), ClientKey::V6(3)], Some(t0 + s(10))));
        assert_eq!(b.active(t0 + s(30)), (vec![], None));
    }

    #[test]
    fn the_penalty_box_is_bounded_and_not_emptied_by_a_spray() {
        let t0 = Instant::now();
        let mut b = PenaltyBox::new(3);
        let until = t0 + Duration::from_secs(10);
        for i in 0..3 {
            assert!(b.penalize(ClientKey::V4(i), until, t0));
        }
        assert!(!b.penalize(ClientKey::V4(99), until, t0), "full: not recorded");
        assert!(b.remaining(ClientKey::V4(0), t0).is_some(), "a spray did not push a penalty out");
        // Later, expired entries make room (purged at most once a second).
        let t1 = t0 + Duration::from_secs(11);
        assert!(b.penalize(ClientKey::V4(99), t1 + Duration::from_secs(10), t1));
        assert_eq!(b.len(), 1);
        assert_eq!(b.remaining(ClientKey::V4(0), t1), None);
        assert_eq!(b.active(t1), (vec![ClientKey::V4(99)], Some(t1 + Duration::from_secs(10))));
        // A second penalty extends, never shortens.
        assert!(b.penalize(ClientKey::V4(99), t1 + Duration::from_secs(1), t1));
        assert!(b.remaining(ClientKey::V4(99), t1).unwrap() > Duration::from_secs(9));
    }

    #[test]
    fn address_load_caps_requests_in_hand_per_address() {
        let mut l = AddressLoad::new(2);
        let (a, b) = (v4("10.0.0.1"), v4("10.0.0.2"));
        let free = u64::MAX;
        assert!(l.start(a, free) && l.start(a, free));
        assert!(!l.start(a, free), "a third request from one address");
        assert!(l.start(b, free), "another address has its own share");
        l.end(a);
        assert!(l.start(a, free));
        for k in [a, a, b] {
            l.end(k);
        }
        assert_eq!(l.addresses(), 0, "addresses with nothing in hand are forgotten");
        l.end(a);
        assert_eq!(l.addresses(), 0, "an end without a start does not underflow");
    }

    #[test]
    fn addresses_taking_all_they_may_always_leave_a_place_for_a_newcomer() {
        // `n` addresses each start requests, in turn, as long as they may,
        // against the default 8,192 places; then a newcomer asks.
        let limit = 8192u64;
        for n in [1usize, 2, 8, 12, 64, 500, 1000] {
            let mut l = AddressLoad::new(1024);
            let keys: Vec<ClientKey> = (0..n as u32).map(ClientKey::V4).collect();
            let mut in_hand = 0u64;
            loop {
                let mut took = false;
                for &k in &keys {
                    if in_hand < limit && l.start(k, limit - in_hand) {
                        in_hand += 1;
                        took = true;
                    }
                }
                if !took {
                    break;
                }
            }
            let free = limit - in_hand;
            // What a greedy address can take is bounded by the share, not by
            // the count of them: 8 / (n + 8) of the places stay free, or
            // what is left beyond n floors.
            let floors = n as u64 * u64::from(SHARE_FLOOR);
            assert!(free + 8 >= (limit * 8 / (n as u64 + 8)).min(limit.saturating_sub(floors)), "{n} addresses left {free} free");
            assert!(l.start(ClientKey::V4(u32::MAX), free), "{n} addresses holding all they may shut a newcomer out");
        }
        // Alone on an idle server an address reaches about a ninth of the places.
        let mut l = AddressLoad::new(u32::MAX);
        let mut held = 0u64;
        while l.start(v4("10.0.0.9"), limit - held) {
            held += 1;
        }
        assert_eq!(held, 911, "8 * 910 < 8192 - 910, 8 * 911 >= 8192 - 911");
        // The floor, whatever the load: a player's fetches are not refused
        // for others' load, only by the server's own cap.
        let mut l = AddressLoad::new(64);
        for _ in 0..SHARE_FLOOR {
            assert!(l.start(v4("10.0.0.10"), 1));
        }
        assert!(!l.start(v4("10.0.0.10"), 1));
        assert!(may_start(0, 0) && !may_start(SHARE_FLOOR, 64) && may_start(SHARE_FLOOR, 65));
    }

    #[test]
    fn rate_limiter_memory_is_bounded_under_a_spray() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1, 1, 100);
        for i in 0..100_000u32 {
            let _ = r.check(ClientKey::V4(i), t0);
            assert!(r.tracked() <= 100, "{} tracked after {i}", r.tracked());
        }
        // A recent address keeps its (empty) bucket across a generation change.
        let a = ClientKey::V4(7_000_000);
        assert!(r.check(a, t0).is_ok());
        assert!(r.check(a, t0).is_err());
        for i in 0..49u32 {
            let _ = r.check(ClientKey::V4(8_000_000 + i), t0);
        }
        assert!(r.check(a, t0).is_err(), "still limited after the generation moved");
    }
}
