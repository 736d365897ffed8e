//! RocksDB-backed blob store with a moka cache in front.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, IteratorMode, Options, WriteBatch, WriteOptions,
};
use tranzcast_proto::outboard::Outboard;
use tranzcast_proto::{BlobAddress, TitleId};

use crate::StoreError;

/// Name of the marker file that makes a directory ours; it is also the lock file.
pub const MARKER: &str = "TRANZCAST";
const MARKER_TEXT: &str = "tranzcast data directory, store format 1\n";

const CF_BLOBS: &str = "blobs";
const CF_OUTBOARDS: &str = "outboards";
const CF_CATALOG: &str = "catalog";
const CF_KEYS: &str = "keys";

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bytes the in-memory cache may hold.
    pub cache_bytes: u64,
    /// Create the directory and store if missing.
    pub create: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { cache_bytes: 256 << 20, create: true }
    }
}

/// When a write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before the call returns (WAL fsync).
    Sync,
    /// At the next synced write or [`BlobStore::sync`] (WAL, no fsync).
    Unsynced,
    /// At the next [`BlobStore::flush`]: no WAL, so bulk loads write each
    /// byte to disk once. Lost on a crash before the flush; callers publish
    /// nothing that refers to such blobs until then.
    Bulk,
}

/// Counts and sizes, for status pages and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Blobs stored.
    pub blobs: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Reads answered from memory.
    pub cache_hits: u64,
    /// Reads that went to disk.
    pub cache_misses: u64,
    /// Bytes held in the memory cache.
    pub cache_bytes: u64,
}

/// How many blobs and bytes the store holds, kept as blobs come and go (so
/// metrics never scan the store). Counted once at open; a write or delete
/// of one address holds that address's stripe, so a blob stored twice at
/// once is counted once.
struct Census {
    blobs: AtomicU64,
    bytes: AtomicU64,
    stripes: Vec<std::sync::Mutex<()>>,
}

impl Census {
    fn stripe(&self, a: &BlobAddress) -> std::sync::MutexGuard<'_, ()> {
        let i = usize::from(a.as_bytes()[0]) % self.stripes.len();
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn added(&self, len: u64) {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
    }

    fn removed(&self, len: u64) {
        let _ = self.blobs.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
        let _ = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(len)));
    }
}

/// blake3-addressed blobs on disk with a verified in-memory cache.
pub struct BlobStore {
    db: DB,
    cache: moka::sync::Cache<BlobAddress, Bytes>,
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
    census: Census,
    /// Seals the `keys` column family's values (title keys, the signing
    /// key) once set ([`BlobStore::seal_keys_with`]).
    kek: std::sync::RwLock<Option<tranzcast_proto::envelope::Kek>>,
    // Held for the store's lifetime: the OS lock that keeps a second process out.
    _lock: File,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn is_disk_full(e: &rocksdb::Error) -> bool {
    let s = e.to_string();
    s.contains("No space left") || s.contains("NoSpace")
}

impl BlobStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// Refuses a directory that has other files but no marker, and one that
    /// another process holds open.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let io = |context: String| move |source| StoreError::Io { context, source };
        let marker = dir.join(MARKER);
        if !marker.exists() {
            if dir.exists() {
                let mut entries = std::fs::read_dir(dir).map_err(io(format!("{}: cannot read", dir.display())))?;
                if entries.next().is_some() {
                    return Err(StoreError::NotOurs { dir: dir.into() });
                }
            } else if !opts.create {
                return Err(StoreError::Io {
                    context: format!("{}: no such data directory", dir.display()),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
            std::fs::create_dir_all(dir).map_err(io(format!("{}: cannot create", dir.display())))?;
            let tmp = dir.join(format!("{MARKER}.tmp"));
            let mut f = File::create(&tmp).map_err(io(format!("{}: cannot create", tmp.display())))?;
            f.write_all(MARKER_TEXT.as_bytes()).and_then(|_| f.sync_all()).map_err(io(format!("{}: cannot write", tmp.display())))?;
            std::fs::rename(&tmp, &marker).map_err(io(format!("{}: cannot create", marker.display())))?;
        }
        let lock = OpenOptions::new().read(true).write(true).open(&marker).map_err(io(format!("{}: cannot open", marker.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { dir: dir.into(), detail: String::new() }),
            Err(TryLockError::Error(e)) => return Err(io(format!("{}: cannot lock", marker.display()))(e)),
        }

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_bytes_per_sync(8 << 20);
        db_opts.set_paranoid_checks(true);
        // Small column families share the WAL with blobs; cap it so it is
        // recycled during long ingests instead of doubling their disk use.
        db_opts.set_max_total_wal_size(256 << 20);
        // Bulk writes skip the WAL and put a blob and its outboard in two
        // column families: flush them together so a crash never keeps one
        // without the other.
        db_opts.set_atomic_flush(true);

        // Blobs are 256 KiB to 8 MiB of ciphertext: keep them out of the LSM
        // tree in blob files (no rewriting on compaction), uncompressed (they
        // are incompressible), with garbage collection for deletions.
        let mut blobs = Options::default();
        blobs.set_enable_blob_files(true);
        blobs.set_min_blob_size(4096);
        blobs.set_blob_file_size(256 << 20);
        blobs.set_blob_compression_type(DBCompressionType::None);
        blobs.set_compression_type(DBCompressionType::None);
        blobs.set_enable_blob_gc(true);
        blobs.set_blob_gc_age_cutoff(0.25);
        // Large memtables, several of them: a bulk load keeps writing while
        // earlier memtables are flushed to blob files, instead of stalling.
        blobs.set_write_buffer_size(128 << 20);
        blobs.set_max_write_buffer_number(4);
        blobs.set_min_write_buffer_number_to_merge(1);
        let mut small = Options::default();
        let mut bbo = BlockBasedOptions::default();
        bbo.set_bloom_filter(10.0, false);
        small.set_block_based_table_factory(&bbo);
        small.set_compression_type(DBCompressionType::None);

        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_BLOBS, blobs),
            ColumnFamilyDescriptor::new(CF_OUTBOARDS, small.clone()),
            ColumnFamilyDescriptor::new(CF_CATALOG, small.clone()),
            ColumnFamilyDescriptor::new(CF_KEYS, small),
        ];
        let db_dir = dir.join("db");
        let db = DB::open_cf_descriptors(&db_opts, &db_dir, cfs).map_err(|e| {
            if is_disk_full(&e) {
                StoreError::DiskFull { dir: dir.into() }
            } else if e.to_string().contains("lock") {
                StoreError::Locked { dir: dir.into(), detail: format!(" ({e})") }
            } else {
                StoreError::backend(format!("{}: cannot open RocksDB", db_dir.display()), e)
            }
        })?;
        let cache = moka::sync::Cache::builder()
            .max_capacity(opts.cache_bytes)
            .weigher(|_k: &BlobAddress, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .build();
        let census = Census { blobs: AtomicU64::new(0), bytes: AtomicU64::new(0), stripes: (0..64).map(|_| Default::default()).collect() };
        let store = Self {
            db,
            cache,
            dir: dir.into(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            census,
            kek: std::sync::RwLock::new(None),
            _lock: lock,
        };
        for (_, len) in store.list()? {
            store.census.added(len);
        }
        Ok(store)
    }

    /// Bytes free for this store on its file system.
    pub fn available_bytes(&self) -> Result<u64, StoreError> {
        let st = rustix::fs::statvfs(&self.dir)
            .map_err(|e| StoreError::Io { context: format!("{}: statvfs", self.dir.display()), source: e.into() })?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Refuses, before anything is written, a write of about `bytes` that the
    /// disk cannot hold: the blobs, the write-ahead log until the next flush,
    /// and a margin for RocksDB's own files.
    pub fn ensure_room_for(&self, bytes: u64) -> Result<(), StoreError> {
        let need = bytes + bytes.min(128 << 20) + (8 << 20);
        let have = self.available_bytes()?;
        if have < need {
            return Err(StoreError::NoRoom { dir: self.dir.clone(), need, have });
        }
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StoreError> {
        self.db.cf_handle(name).ok_or_else(|| StoreError::backend("open", format!("column family {name} missing")))
    }

    fn write(&self, batch: WriteBatch, sync: bool, what: &str) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch, &wo).map_err(|e| {
            if is_disk_full(&e) { StoreError::DiskFull { dir: self.dir.clone() } } else { StoreError::backend(what.to_string(), e) }
        })
    }

    /// Stores `bytes` durably and returns their address. Idempotent.
    pub fn put(&self, bytes: &[u8]) -> Result<BlobAddress, StoreError> {
        self.put_with(bytes, true)
    }

    /// Stores `bytes` without waiting for the disk; durable after the next
    /// synced write or [`BlobStore::sync`]. For bulk loads.
    pub fn put_unsynced(&self, bytes: &[u8]) -> Result<BlobAddress, StoreError> {
        self.put_with(bytes, false)
    }

    fn put_with(&self, bytes: &[u8], sync: bool) -> Result<BlobAddress, StoreError> {
        let (address, outboard) = Outboard::compute(bytes);
        let _stripe = self.census.stripe(&address);
        if self.has(&address)? {
            return Ok(address);
        }
        let batch = self.blob_batch(&address, bytes, &outboard)?;
        self.write(batch, sync, "put blob")?;
        self.census.added(bytes.len() as u64);
        Ok(address)
    }

    /// Stores bytes whose address and outboard the caller computed from these
    /// very bytes (ingest hashes on its worker threads; a network fetch has
    /// checked every group against a verified outboard).
    pub fn put_hashed(&self, address: &BlobAddress, bytes: &[u8], outboard: &Outboard, durability: Durability) -> Result<(), StoreError> {
        if outboard.len != bytes.len() as u64 {
            return Err(StoreError::Corrupt { address: *address, reason: "outboard length differs from the bytes".into() });
        }
        let _stripe = self.census.stripe(address);
        if self.has(address)? {
            return Ok(());
        }
        let batch = self.blob_batch(address, bytes, outboard)?;
        let mut wo = WriteOptions::default();
        match durability {
            Durability::Sync => wo.set_sync(true),
            Durability::Unsynced => {}
            Durability::Bulk => wo.disable_wal(true),
        }
        self.db.write_opt(batch, &wo).map_err(|e| {
            if is_disk_full(&e) { StoreError::DiskFull { dir: self.dir.clone() } } else { StoreError::backend("put blob", e) }
        })?;
        self.census.added(bytes.len() as u64);
        Ok(())
    }

    /// A blob and its outboard in one batch, sized up front (a batch grown
    /// by doubling copies a 4 MiB segment several times over).
    fn blob_batch(&self, address: &BlobAddress, bytes: &[u8], outboard: &Outboard) -> Result<WriteBatch, StoreError> {
        let outboard = outboard.encode();
        let mut batch = WriteBatch::with_capacity_bytes(bytes.len() + outboard.len() + 128);
        batch.put_cf(self.cf(CF_BLOBS)?, address.as_bytes(), bytes);
        batch.put_cf(self.cf(CF_OUTBOARDS)?, address.as_bytes(), outboard);
        Ok(batch)
    }

    /// Waits until every earlier write is on disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(|e| StoreError::backend("sync", e))
    }

    /// Moves memtables into table and blob files, synced (ends a bulk load).
    pub fn flush(&self) -> Result<(), StoreError> {
        let cfs = [self.cf(CF_BLOBS)?, self.cf(CF_OUTBOARDS)?];
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
            .map_err(|e| if is_disk_full(&e) { StoreError::DiskFull { dir: self.dir.clone() } } else { StoreError::backend("flush", e) })
    }

    /// Whether the store holds `address`.
    pub fn has(&self, address: &BlobAddress) -> Result<bool, StoreError> {
        if self.cache.contains_key(address) {
            return Ok(true);
        }
        Ok(self.db.get_pinned_cf(self.cf(CF_OUTBOARDS)?, address.as_bytes()).map_err(|e| StoreError::backend("has", e))?.is_some())
    }

    /// Length of a stored blob, from its outboard (no blob read).
    pub fn len_of(&self, address: &BlobAddress) -> Result<Option<u64>, StoreError> {
        Ok(self.outboard(address)?.map(|o| o.len))
    }

    /// The blob's outboard, for verified streaming to others.
    pub fn outboard(&self, address: &BlobAddress) -> Result<Option<Outboard>, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_OUTBOARDS)?, address.as_bytes()).map_err(|e| StoreError::backend("outboard", e))? {
            Some(v) => Ok(Some(Outboard::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The whole blob, verified against its address.
    pub fn get(&self, address: &BlobAddress) -> Result<Option<Bytes>, StoreError> {
        if let Some(b) = self.get_cached(address) {
            return Ok(Some(b));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let pinned = match self.db.get_pinned_cf(self.cf(CF_BLOBS)?, address.as_bytes()) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => {
                return Err(StoreError::Corrupt { address: *address, reason: e.to_string() });
            }
            Err(e) => return Err(StoreError::backend("get", e)),
        };
        // RocksDB returns whole values, so the cheapest sound check is the
        // whole blob once, on its way into the (trusted) memory cache.
        address.verify(&pinned).map_err(|e| StoreError::Corrupt { address: *address, reason: e.to_string() })?;
        let bytes = Bytes::copy_from_slice(&pinned);
        self.cache.insert(*address, bytes.clone());
        Ok(Some(bytes))
    }

    /// The blob if it is in the memory cache (no I/O: safe on an async thread).
    pub fn get_cached(&self, address: &BlobAddress) -> Option<Bytes> {
        let b = self.cache.get(address)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(b)
    }

    /// Bytes `range` of the blob, verified.
    pub fn get_range(&self, address: &BlobAddress, range: Range<u64>) -> Result<Option<Bytes>, StoreError> {
        let Some(all) = self.get(address)? else { return Ok(None) };
        let len = all.len() as u64;
        if range.start > range.end || range.end > len {
            return Err(StoreError::RangeOutOfBounds { address: *address, start: range.start, end: range.end, len });
        }
        Ok(Some(all.slice(range.start as usize..range.end as usize)))
    }

    /// Deletes a blob; returns whether it was there.
    pub fn delete(&self, address: &BlobAddress) -> Result<bool, StoreError> {
        let _stripe = self.census.stripe(address);
        let existed = self.len_of(address)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_BLOBS)?, address.as_bytes());
        batch.delete_cf(self.cf(CF_OUTBOARDS)?, address.as_bytes());
        self.write(batch, true, "delete blob")?;
        self.cache.invalidate(address);
        if let Some(len) = existed {
            self.census.removed(len);
        }
        Ok(existed.is_some())
    }

    /// Every stored address with its length, in address order.
    pub fn list(&self) -> Result<Vec<(BlobAddress, u64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_OUTBOARDS)?, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| StoreError::backend("list", e))?;
            let address = BlobAddress::from_slice(&k)?;
            out.push((address, Outboard::decode(&v)?.len));
        }
        Ok(out)
    }

    /// Counts and sizes, from counters kept up to date (no scan).
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        self.cache.run_pending_tasks();
        Ok(StoreStats {
            blobs: self.census.blobs.load(Ordering::Relaxed),
            bytes: self.census.bytes.load(Ordering::Relaxed),
            cache_hits: self.hits.load(Ordering::Relaxed),
            cache_misses: self.misses.load(Ordering::Relaxed),
            cache_bytes: self.cache.weighted_size(),
        })
    }

    /// Drops every cached blob (the next reads verify from disk again).
    pub fn clear_cache(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }

    // ---- catalog: titles and, on the origin only, their keys ----

    fn title_key(prefix: &str, title: &TitleId) -> Vec<u8> {
        format!("{prefix}{title}").into_bytes()
    }

    /// Records the start of an ingest: the title key it uses (so a re-run
    /// after a crash resumes with the same key and the same blobs).
    pub fn begin_title(&self, title: &TitleId, key: &[u8; 32]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let row = Self::title_key("pending/", title);
        batch.put_cf(self.cf(CF_KEYS)?, &row, self.key_value(&row, key));
        self.write(batch, true, "begin title")
    }

    /// The key of an unfinished ingest of `title`, if any.
    pub fn pending_title_key(&self, title: &TitleId) -> Result<Option<[u8; 32]>, StoreError> {
        self.key_bytes(&Self::title_key("pending/", title))
    }

    /// A batch holding a title's manifest blob, its outboard and its catalog entry.
    fn manifest_batch(
        &self,
        title: &TitleId,
        manifest: &[u8],
        address: &BlobAddress,
        outboard: &Outboard,
    ) -> Result<WriteBatch, StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_BLOBS)?, address.as_bytes(), manifest);
        batch.put_cf(self.cf(CF_OUTBOARDS)?, address.as_bytes(), outboard.encode());
        batch.put_cf(self.cf(CF_CATALOG)?, Self::title_key("title/", title), address.as_bytes());
        Ok(batch)
    }

    /// Atomically publishes a title: its manifest blob, its catalog entry and its key.
    pub fn commit_title(&self, title: &TitleId, manifest: &[u8], key: &[u8; 32]) -> Result<BlobAddress, StoreError> {
        let (address, outboard) = Outboard::compute(manifest);
        let _stripe = self.census.stripe(&address);
        let new = !self.has(&address)?;
        let mut batch = self.manifest_batch(title, manifest, &address, &outboard)?;
        let row = Self::title_key("title/", title);
        batch.put_cf(self.cf(CF_KEYS)?, &row, self.key_value(&row, key));
        batch.delete_cf(self.cf(CF_KEYS)?, Self::title_key("pending/", title));
        self.write(batch, true, "commit title")?;
        if new {
            self.census.added(manifest.len() as u64);
        }
        Ok(address)
    }

    /// Undoes a failed ingest: deletes the blobs it wrote and, if it began
    /// the title, its pending key.
    pub fn abort_title(&self, title: &TitleId, drop_pending: bool, written: &[BlobAddress]) -> Result<(), StoreError> {
        let mut gone = Vec::new();
        for a in written {
            if let Some(len) = self.len_of(a)? {
                gone.push(len);
            }
        }
        let mut batch = WriteBatch::default();
        for a in written {
            batch.delete_cf(self.cf(CF_BLOBS)?, a.as_bytes());
            batch.delete_cf(self.cf(CF_OUTBOARDS)?, a.as_bytes());
            self.cache.invalidate(a);
        }
        if drop_pending {
            batch.delete_cf(self.cf(CF_KEYS)?, Self::title_key("pending/", title));
        }
        self.write(batch, true, "abort title")?;
        for len in gone {
            self.census.removed(len);
        }
        Ok(())
    }

    /// Records a title's manifest without its key (nodes and edges: they never hold keys).
    pub fn put_title_manifest(&self, title: &TitleId, manifest: &[u8]) -> Result<BlobAddress, StoreError> {
        let (address, outboard) = Outboard::compute(manifest);
        let _stripe = self.census.stripe(&address);
        let new = !self.has(&address)?;
        let batch = self.manifest_batch(title, manifest, &address, &outboard)?;
        self.write(batch, true, "put title")?;
        if new {
            self.census.added(manifest.len() as u64);
        }
        Ok(address)
    }

    /// The manifest address of a published title.
    pub fn title_manifest(&self, title: &TitleId) -> Result<Option<BlobAddress>, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_CATALOG)?, Self::title_key("title/", title)).map_err(|e| StoreError::backend("title", e))? {
            Some(v) => Ok(Some(BlobAddress::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Every published title with its manifest address.
    pub fn titles(&self) -> Result<Vec<(TitleId, BlobAddress)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_CATALOG)?, b"title/") {
            let (k, v) = item.map_err(|e| StoreError::backend("titles", e))?;
            let Some(name) = k.strip_prefix(b"title/") else { break };
            let name = std::str::from_utf8(name).map_err(|_| StoreError::backend("titles", "non-UTF-8 title"))?;
            out.push((TitleId::new(name)?, BlobAddress::from_slice(&v)?));
        }
        Ok(out)
    }

    /// A published title's key (origin only).
    pub fn title_secret(&self, title: &TitleId) -> Result<Option<[u8; 32]>, StoreError> {
        self.key_bytes(&Self::title_key("title/", title))
    }

    /// A named 32-byte secret (such as the origin's signing key), created at random on first use.
    pub fn secret(&self, name: &str, fresh: impl FnOnce() -> [u8; 32]) -> Result<[u8; 32], StoreError> {
        let k = format!("secret/{name}").into_bytes();
        if let Some(v) = self.key_bytes(&k)? {
            return Ok(v);
        }
        let v = fresh();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_KEYS)?, &k, self.key_value(&k, &v));
        self.write(batch, true, "create secret")?;
        Ok(v)
    }

    /// Seals this store's keys under `kek` from now on, and re-seals every
    /// key stored in clear before, in one synced batch; returns how many.
    /// Fails closed when a sealed key does not open under `kek` (another
    /// KEK sealed this store). Without it, a sealed key reads as an error.
    pub fn seal_keys_with(&self, kek: tranzcast_proto::envelope::Kek) -> Result<u64, StoreError> {
        // Re-sealing under the same key: the clear ones sealed, the sealed
        // ones checked (each must open), none rewritten.
        self.reseal_keys(&kek.clone(), kek)
    }

    /// Re-seals every key of this store under `new`: those sealed under
    /// `old` (each must open, or nothing changes: fails closed) and those
    /// in clear, in one synced batch; returns how many (those already under
    /// `new` are left). Keys are sealed under `new` from now on.
    pub fn reseal_keys(&self, old: &tranzcast_proto::envelope::Kek, new: tranzcast_proto::envelope::Kek) -> Result<u64, StoreError> {
        let cf = self.cf(CF_KEYS)?;
        let mut batch = WriteBatch::default();
        let mut resealed = 0;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (row, v) = item.map_err(|e| StoreError::backend("keys", e))?;
            let name = String::from_utf8_lossy(&row);
            let clear = match <[u8; 32]>::try_from(v.as_ref()) {
                Ok(clear) => clear,
                // Already under `new` (a rekey run again after it stopped half-way).
                Err(_) if new.open32(&name, &v).is_ok() => continue,
                Err(_) => old.open32(&name, &v).map_err(|e| StoreError::backend(format!("key {name}"), e))?,
            };
            batch.put_cf(cf, &row, new.seal(&name, &clear));
            resealed += 1;
        }
        if resealed > 0 {
            self.write(batch, true, "reseal keys")?;
        }
        *self.kek.write().unwrap_or_else(|p| p.into_inner()) = Some(new);
        Ok(resealed)
    }

    /// Whether every key of this store is in clear or opens under one of
    /// `keks` (the first that fails is the error); changes nothing.
    pub fn keys_open_under(&self, keks: &[&tranzcast_proto::envelope::Kek]) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(self.cf(CF_KEYS)?, IteratorMode::Start) {
            let (row, v) = item.map_err(|e| StoreError::backend("keys", e))?;
            let name = String::from_utf8_lossy(&row);
            if v.len() != 32 && !keks.iter().any(|k| k.open32(&name, &v).is_ok()) {
                return Err(StoreError::backend(format!("key {name}"), "opens under neither key-encryption key"));
            }
        }
        Ok(())
    }

    /// A key as stored in row `row`: sealed when a KEK is set.
    fn key_value(&self, row: &[u8], key: &[u8; 32]) -> Vec<u8> {
        match &*self.kek.read().unwrap_or_else(|p| p.into_inner()) {
            Some(kek) => kek.seal(&String::from_utf8_lossy(row), key),
            None => key.to_vec(),
        }
    }

    fn key_bytes(&self, k: &[u8]) -> Result<Option<[u8; 32]>, StoreError> {
        let Some(v) = self.db.get_pinned_cf(self.cf(CF_KEYS)?, k).map_err(|e| StoreError::backend("key", e))? else { return Ok(None) };
        if let Ok(clear) = <[u8; 32]>::try_from(v.as_ref()) {
            return Ok(Some(clear));
        }
        let name = String::from_utf8_lossy(k);
        match &*self.kek.read().unwrap_or_else(|p| p.into_inner()) {
            Some(kek) => kek.open32(&name, &v).map(Some).map_err(|e| StoreError::backend(format!("key {name}"), e)),
            None => Err(StoreError::backend(
                format!("key {name}"),
                "this store's keys are sealed under a key-encryption key: configure keys.kek_file (or TRANZCAST_KEK)",
            )),
        }
    }

    #[cfg(test)]
    fn overwrite_raw(&self, address: &BlobAddress, bytes: &[u8]) {
        self.db.put_cf(self.cf(CF_BLOBS).unwrap(), address.as_bytes(), bytes).unwrap();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_value_is_detected_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path(), StoreOptions::default()).unwrap();
        let data = vec![5u8; 300_000];
        let a = s.put(&data).unwrap();
        let mut bad = data.clone();
        bad[123_456] ^= 0x20;
        s.overwrite_raw(&a, &bad);
        s.clear_cache();
        assert!(matches!(s.get(&a), Err(StoreError::Corrupt { .. })));
        assert!(matches!(s.get_range(&a, 0..10), Err(StoreError::Corrupt { .. })));
    }
}
