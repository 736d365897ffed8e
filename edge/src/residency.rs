//! What stays on an edge's disk within `store.disk_bytes` (pure): Greedy-Dual-
//! Size-Frequency (Cherkasova, 1998), the policy of choice for web caches whose
//! objects differ in size.
//!
//! Every unpinned blob has a priority `clock + hits / size_mib`; the lowest
//! goes first, and the clock rises to the priority of what was last evicted,
//! so a blob that was hot long ago ages out against newer demand without any
//! timer. Frequency keeps popular segments; size makes one huge cold blob go
//! before many small warm ones. Pinned blobs (a node's staged sets, title
//! manifests) count against the budget but are never chosen.

use std::collections::{BTreeSet, HashMap};

use tranzcast_proto::BlobAddress;

#[derive(Debug, Clone, Copy)]
struct Entry {
    size: u64,
    hits: u64,
    /// Priority bits (non-negative f64s order like their bit patterns).
    priority: u64,
    pinned: bool,
}

/// What admitting a blob needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Whether to store it (false: it cannot fit even with every unpinned blob gone).
    pub store: bool,
    /// Blobs to delete first.
    pub evict: Vec<BlobAddress>,
}

/// The resident set and its budget.
#[derive(Debug)]
pub struct Residency {
    budget: u64,
    used: u64,
    /// Bytes of pinned blobs (part of `used`).
    pinned: u64,
    clock: f64,
    entries: HashMap<BlobAddress, Entry>,
    order: BTreeSet<(u64, BlobAddress)>,
}

fn priority(clock: f64, hits: u64, size: u64) -> u64 {
    let mib = (size as f64 / (1 << 20) as f64).max(1.0 / 1024.0);
    (clock + hits as f64 / mib).to_bits()
}

impl Residency {
    /// An empty set with `budget` bytes.
    pub fn new(budget: u64) -> Self {
        Self { budget, used: 0, pinned: 0, clock: 0.0, entries: HashMap::new(), order: BTreeSet::new() }
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Blobs held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `a` is held.
    pub fn contains(&self, a: &BlobAddress) -> bool {
        self.entries.contains_key(a)
    }

    /// A request was served from `a`.
    pub fn touch(&mut self, a: &BlobAddress) {
        let clock = self.clock;
        if let Some(e) = self.entries.get_mut(a) {
            e.hits += 1;
            if !e.pinned {
                self.order.remove(&(e.priority, *a));
                e.priority = priority(clock, e.hits, e.size);
                self.order.insert((e.priority, *a));
            }
        }
    }

    /// Makes room for `a` (`size` bytes) and records it. The caller deletes
    /// `evict` from the store before storing `a` (so the disk never holds more
    /// than the budget plus one blob in flight).
    pub fn admit(&mut self, a: BlobAddress, size: u64, pinned: bool) -> Admission {
        if let Some(e) = self.entries.get_mut(&a) {
            // Already here (a push racing a fetch): at most, pin it.
            if pinned && !e.pinned {
                self.order.remove(&(e.priority, a));
                e.pinned = true;
                self.pinned += e.size;
            }
            return Admission { store: true, evict: Vec::new() };
        }
        let mut evict = Vec::new();
        if !pinned {
            // Would it fit if every unpinned blob went? If not, evict nothing.
            if self.pinned + size > self.budget {
                return Admission { store: false, evict };
            }
        }
        while self.used + size > self.budget {
            let Some((p, victim)) = self.order.pop_first() else { break };
            self.clock = f64::from_bits(p);
            if let Some(e) = self.entries.remove(&victim) {
                self.used -= e.size;
            }
            evict.push(victim);
        }
        let e = Entry { size, hits: 1, priority: priority(self.clock, 1, size), pinned };
        if !pinned {
            self.order.insert((e.priority, a));
        }
        self.entries.insert(a, e);
        self.used += size;
        if pinned {
            self.pinned += size;
        }
        Admission { store: true, evict }
    }

    /// Forgets `a` (deleted for another reason).
    pub fn remove(&mut self, a: &BlobAddress) {
        if let Some(e) = self.entries.remove(a) {
            self.order.remove(&(e.priority, *a));
            self.used -= e.size;
            if e.pinned {
                self.pinned -= e.size;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(i: u32) -> BlobAddress {
        BlobAddress::of(&i.to_be_bytes())
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn frequent_blobs_stay_cold_ones_go() {
        let mut r = Residency::new(4 * MIB);
        for i in 0..4 {
            assert_eq!(r.admit(addr(i), MIB, false), Admission { store: true, evict: vec![] });
        }
        for _ in 0..5 {
            r.touch(&addr(0));
            r.touch(&addr(2));
        }
        r.touch(&addr(3));
        r.touch(&addr(3));
        // Blob 1 was asked for once: it goes first.
        assert_eq!(r.admit(addr(4), MIB, false).evict, vec![addr(1)]);
        // Then 4: asked for once, its priority is the risen clock (1) plus 1,
        // still below 3's (asked for three times before the clock rose).
        assert_eq!(r.admit(addr(5), MIB, false).evict, vec![addr(4)]);
        assert!(r.contains(&addr(0)) && r.contains(&addr(2)) && r.contains(&addr(3)) && r.contains(&addr(5)));
        assert_eq!(r.used(), 4 * MIB);
    }

    #[test]
    fn size_counts_a_big_cold_blob_goes_before_small_warm_ones() {
        let mut r = Residency::new(4 * MIB);
        r.admit(addr(0), 2 * MIB, false);
        for i in 1..5 {
            r.admit(addr(i), MIB / 2, false);
        }
        assert_eq!(r.admit(addr(9), MIB / 2, false).evict, vec![addr(0)]);
        assert_eq!(r.len(), 5);
    }

    #[test]
    fn aging_lets_new_demand_displace_old_fame() {
        let mut r = Residency::new(2 * MIB);
        r.admit(addr(0), MIB, false);
        for _ in 0..3 {
            r.touch(&addr(0)); // famous once: 4 hits
        }
        // A stream of new blobs, each asked for a few times, pushes the clock up.
        for i in 1..20 {
            let ad = r.admit(addr(i), MIB, false);
            assert!(ad.store);
            for _ in 0..3 {
                r.touch(&addr(i));
            }
        }
        assert!(!r.contains(&addr(0)), "old fame does not last for ever");
    }

    #[test]
    fn pinned_blobs_are_never_evicted_and_too_big_is_refused() {
        let mut r = Residency::new(3 * MIB);
        r.admit(addr(0), 2 * MIB, true);
        r.admit(addr(1), MIB, false);
        assert_eq!(r.admit(addr(2), MIB, false).evict, vec![addr(1)]);
        assert_eq!(r.admit(addr(3), 2 * MIB, false), Admission { store: false, evict: vec![] }, "cannot fit beside the pinned set");
        assert!(r.contains(&addr(2)), "a refused admission evicts nothing");
        // Pinned ones are admitted whatever it costs (a node must hold its whole set).
        assert_eq!(r.admit(addr(4), MIB, true).evict, vec![addr(2)]);
        assert_eq!(r.used(), 3 * MIB);
        r.remove(&addr(4));
        assert_eq!(r.used(), 2 * MIB);
        // Re-admitting pins an unpinned blob in place; then nothing unpinned fits.
        assert!(r.admit(addr(6), MIB, false).store);
        assert!(r.admit(addr(6), MIB, true).evict.is_empty());
        assert_eq!(r.admit(addr(5), MIB, false), Admission { store: false, evict: vec![] });
    }
}
