//! Titles read, kept in memory: a play needs its title's key and signed
//! manifest, and reading them from the store each time (the title's row, its
//! sealed key opened, the manifest blob) was a twentieth of a play's CPU.
//!
//! An entry is only used for the manifest address it was read with. A title
//! whose manifest changes gets a new address (the manifest names every
//! segment's blake3, and segments sealed under another key hash otherwise),
//! so a key and a manifest always go together: never a new key with an old
//! manifest. The cache is bounded by bytes (manifests of long titles are
//! hundreds of KiB), and emptied when full: titles played are few and hot.

use std::collections::HashMap;

use bytes::Bytes;
use tranzcast_proto::BlobAddress;

/// Bytes of manifests kept at most, per cache (the store's, the shared catalog's).
pub(crate) const BUDGET_BYTES: usize = 32 << 20;

/// A title's key, signed manifest and what a play reads of it.
#[derive(Clone)]
pub(crate) struct CatalogEntry {
    /// The title key KM.
    pub key: [u8; 32],
    /// The signed manifest.
    pub manifest: Bytes,
    /// Its address.
    pub address: BlobAddress,
    /// The title's running time, seconds (0 when the manifest does not decode).
    pub running_time_s: u64,
}

impl CatalogEntry {
    pub(crate) fn new(key: [u8; 32], manifest: Bytes, address: BlobAddress) -> Self {
        let running_time_s =
            tranzcast_proto::manifest::SignedManifest::decode(&manifest).map(|m| m.manifest.running_time_ms / 1000).unwrap_or(0);
        Self { key, manifest, address, running_time_s }
    }
}

// The key stays out of logs.
impl std::fmt::Debug for CatalogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogEntry").field("address", &self.address).field("manifest_len", &self.manifest.len()).finish_non_exhaustive()
    }
}

/// Entries by title name, within a byte budget.
#[derive(Debug)]
pub(crate) struct TitlesRead {
    entries: HashMap<String, CatalogEntry>,
    bytes: usize,
    budget: usize,
}

impl Default for TitlesRead {
    fn default() -> Self {
        Self::with_budget(BUDGET_BYTES)
    }
}

impl TitlesRead {
    pub(crate) fn with_budget(budget: usize) -> Self {
        Self { entries: HashMap::new(), bytes: 0, budget }
    }

    /// The entry of `title`, if read before; with `address`, only if it was
    /// read with that manifest address.
    pub(crate) fn get(&self, title: &str, address: Option<&BlobAddress>) -> Option<&CatalogEntry> {
        self.entries.get(title).filter(|e| address.is_none_or(|a| *a == e.address))
    }

    /// Keeps `entry` for `title` (in place of any other), emptying the cache
    /// first when it would go over budget. An entry larger than the whole
    /// budget is not kept.
    pub(crate) fn insert(&mut self, title: &str, entry: CatalogEntry) {
        let size = Self::cost(title, &entry);
        if size > self.budget {
            return;
        }
        if let Some(old) = self.entries.remove(title) {
            self.bytes -= Self::cost(title, &old);
        }
        if self.bytes + size > self.budget {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.entries.insert(title.to_string(), entry);
    }

    /// Bytes kept.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn cost(title: &str, e: &CatalogEntry) -> usize {
        title.len() + e.manifest.len() + std::mem::size_of::<CatalogEntry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u8, manifest: &[u8]) -> CatalogEntry {
        let manifest = Bytes::copy_from_slice(manifest);
        CatalogEntry::new([key; 32], manifest.clone(), BlobAddress::of(&manifest))
    }

    #[test]
    fn an_entry_serves_only_the_manifest_address_it_was_read_with() {
        let mut c = TitlesRead::default();
        let old = entry(1, b"manifest one");
        c.insert("film", old.clone());
        assert_eq!(c.get("film", Some(&old.address)).map(|e| e.key), Some([1; 32]));
        assert_eq!(c.get("film", None).map(|e| e.key), Some([1; 32]));
        // Republished: another manifest (so another address) and key.
        let new = entry(2, b"manifest two");
        assert!(c.get("film", Some(&new.address)).is_none(), "a stale key served for a new manifest");
        c.insert("film", new.clone());
        assert_eq!(c.get("film", Some(&new.address)).map(|e| e.key), Some([2; 32]));
        assert!(c.get("film", Some(&old.address)).is_none());
        assert!(c.get("other", None).is_none());
    }

    #[test]
    fn the_byte_budget_holds_and_replacing_an_entry_frees_its_bytes() {
        let one = entry(1, &[7u8; 1000]);
        let cost = TitlesRead::cost("t0", &one);
        let mut c = TitlesRead::with_budget(cost * 3);
        for i in 0..10 {
            c.insert(&format!("t{i}"), entry(i as u8, &[i as u8; 1000]));
            assert!(c.bytes() <= cost * 3, "over budget after {i}: {}", c.bytes());
            assert!(c.get(&format!("t{i}"), None).is_some(), "the entry just kept is there");
        }
        // The same title again, many times: its bytes are counted once.
        for _ in 0..10 {
            c.insert("t9", entry(9, &[9u8; 1000]));
        }
        // Ten entries into room for three: emptied after t2, t5 and t8, so t9 alone.
        assert_eq!(c.bytes(), cost);
        // Larger than the whole budget: not kept, nothing else dropped.
        let before = c.bytes();
        c.insert("huge", entry(0, &[0u8; 10_000]));
        assert!(c.get("huge", None).is_none());
        assert_eq!(c.bytes(), before);
    }

    #[test]
    fn the_key_stays_out_of_debug() {
        let e = entry(0xab, b"m");
        assert!(!format!("{e:?}").contains("171"), "{e:?}");
        assert!(!format!("{e:?}").to_lowercase().contains("abab"));
    }
}
