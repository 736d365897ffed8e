//! The blob store against a real RocksDB on disk.

#![allow(clippy::unwrap_used)]

use tranzcast_proto::BlobAddress;
use tranzcast_store::{BlobStore, MasterOptions, MasterStore, StoreError, StoreOptions};

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn put_get_range_has_delete_list_stats() {
    let dir = tempfile::tempdir().unwrap();
    let s = BlobStore::open(dir.path(), StoreOptions::default()).unwrap();
    let sizes = [0usize, 1, 4095, 4096, 256 << 10, (8 << 20) + 3];
    let mut addrs = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let b = blob(n, i as u8);
        let a = s.put(&b).unwrap();
        assert_eq!(a, BlobAddress::of(&b));
        assert_eq!(s.put(&b).unwrap(), a, "put is idempotent");
        addrs.push((a, b));
    }
    for (a, b) in &addrs {
        assert!(s.has(a).unwrap());
        assert_eq!(&s.get(a).unwrap().unwrap()[..], &b[..]);
        assert_eq!(s.len_of(a).unwrap(), Some(b.len() as u64));
        if b.len() > 10 {
            let r = s.get_range(a, 3..b.len() as u64 - 2).unwrap().unwrap();
            assert_eq!(&r[..], &b[3..b.len() - 2]);
        }
        let len = b.len() as u64;
        assert!(matches!(s.get_range(a, 0..len + 1), Err(StoreError::RangeOutOfBounds { .. })));
    }
    let list = s.list().unwrap();
    assert_eq!(list.len(), sizes.len());
    let stats = s.stats().unwrap();
    assert_eq!(stats.blobs, sizes.len() as u64);
    assert_eq!(stats.bytes, sizes.iter().sum::<usize>() as u64);
    assert!(stats.cache_bytes > 0);
    let missing = BlobAddress::of(b"never stored");
    assert!(!s.has(&missing).unwrap());
    assert!(s.get(&missing).unwrap().is_none());
    assert!(s.delete(&addrs[2].0).unwrap());
    assert!(!s.delete(&addrs[2].0).unwrap());
    assert!(s.get(&addrs[2].0).unwrap().is_none());
    assert_eq!(s.list().unwrap().len(), sizes.len() - 1);
    let after = s.stats().unwrap();
    assert_eq!((after.blobs, after.bytes), (stats.blobs - 1, stats.bytes - sizes[2] as u64), "counts follow deletes");
}

/// The counts behind `/metrics` are kept, not scanned: they agree with a
/// scan after concurrent puts of the same blobs, deletes and a reopen.
#[test]
fn counts_agree_with_a_scan_after_races_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let scan = |s: &BlobStore| {
        let l = s.list().unwrap();
        (l.len() as u64, l.iter().map(|(_, n)| n).sum::<u64>())
    };
    {
        let s = BlobStore::open(dir.path(), StoreOptions::default()).unwrap();
        std::thread::scope(|t| {
            for _ in 0..4 {
                t.spawn(|| {
                    for i in 0..20u8 {
                        s.put_unsynced(&blob(10_000 + usize::from(i), i)).unwrap();
                    }
                });
            }
        });
        s.delete(&BlobAddress::of(&blob(10_003, 3))).unwrap();
        let st = s.stats().unwrap();
        assert_eq!((st.blobs, st.bytes), scan(&s));
        assert_eq!(st.blobs, 19, "each blob counted once however many threads stored it");
        s.sync().unwrap();
    }
    let s = BlobStore::open(dir.path(), StoreOptions::default()).unwrap();
    let st = s.stats().unwrap();
    assert_eq!((st.blobs, st.bytes), scan(&s), "counted again at open");
}

#[test]
fn acknowledged_writes_survive_reopen_and_reads_verify_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let b = blob(3 << 20, 9);
    let a = {
        let s = BlobStore::open(dir.path(), StoreOptions::default()).unwrap();
        s.put(&b).unwrap()
    };
    let s = BlobStore::open(dir.path(), StoreOptions { cache_bytes: 1 << 20, create: false }).unwrap();
    assert_eq!(&s.get(&a).unwrap().unwrap()[..], &b[..]);
    let st = s.stats().unwrap();
    assert_eq!(st.cache_misses, 1);
    // The blob is larger than the cache: it is not kept, every read verifies from disk.
    s.get(&a).unwrap();
    assert_eq!(s.stats().unwrap().cache_misses, 2);
}

#[test]
fn cache_answers_repeat_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = BlobStore::open(dir.path(), StoreOptions::default()).unwrap();
    let a = s.put(&blob(1 << 20, 1)).unwrap();
    s.clear_cache();
    s.get(&a).unwrap();
    s.get(&a).unwrap();
    s.get_range(&a, 0..5).unwrap();
    let st = s.stats().unwrap();
    assert_eq!((st.cache_misses, st.cache_hits), (1, 2));
}

#[test]
fn locked_and_foreign_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _s = BlobStore::open(dir.path(), StoreOptions::default()).unwrap();
    let e = BlobStore::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("locked by another process"));

    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("family-photos.jpg"), b"precious").unwrap();
    let e = BlobStore::open(foreign.path(), StoreOptions::default()).unwrap_err();
    assert!(matches!(e, StoreError::NotOurs { .. }), "{e}");
    assert_eq!(std::fs::read_dir(foreign.path()).unwrap().count(), 1, "a foreign directory was touched");

    let e = BlobStore::open(&foreign.path().join("absent"), StoreOptions { create: false, ..Default::default() }).unwrap_err();
    assert!(e.to_string().contains("no such data directory"), "{e}");
}

#[test]
fn titles_keys_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let t = tranzcast_proto::TitleId::new("film").unwrap();
    {
        let s = BlobStore::open(dir.path(), StoreOptions::default()).unwrap();
        s.begin_title(&t, &[1; 32]).unwrap();
        assert_eq!(s.pending_title_key(&t).unwrap(), Some([1; 32]));
        assert!(s.title_manifest(&t).unwrap().is_none());
        let m = s.commit_title(&t, b"manifest bytes", &[1; 32]).unwrap();
        assert_eq!(s.title_manifest(&t).unwrap(), Some(m));
        assert_eq!(s.pending_title_key(&t).unwrap(), None);
        let id = s.secret("identity", || [7; 32]).unwrap();
        assert_eq!(id, [7; 32]);
    }
    let s = BlobStore::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(s.titles().unwrap().len(), 1);
    assert_eq!(s.title_secret(&t).unwrap(), Some([1; 32]));
    assert_eq!(s.secret("identity", || [9; 32]).unwrap(), [7; 32], "secret is created once");
}

#[tokio::test]
async fn master_copies_on_the_file_system_verify_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("master").display().to_string();
    let m = MasterStore::open(&MasterOptions::Fs { root: root.clone() }).unwrap();
    let b = bytes::Bytes::from(blob(100_000, 3));
    let a = m.put(b.clone()).await.unwrap();
    assert!(m.has(&a).await.unwrap());
    assert_eq!(m.get(&a).await.unwrap().unwrap(), b);
    assert_eq!(m.list().await.unwrap(), vec![a]);
    // Bit rot in the master copy is caught.
    let hex = a.to_hex();
    let path = std::path::Path::new(&root).join("blobs").join(&hex[..2]).join(&hex);
    let mut raw = std::fs::read(&path).unwrap();
    raw[777] ^= 1;
    std::fs::write(&path, raw).unwrap();
    assert!(matches!(m.get(&a).await, Err(StoreError::Corrupt { .. })));
    m.delete(&a).await.unwrap();
    assert!(m.get(&a).await.unwrap().is_none());
}

#[test]
fn keys_rest_sealed_once_a_key_encryption_key_is_set() {
    use tranzcast_proto::TitleId;
    use tranzcast_proto::envelope::Kek;
    let dir = tempfile::tempdir().unwrap();
    let t = TitleId::new("sealed").unwrap();
    let opts = || StoreOptions { create: true, ..Default::default() };
    {
        // Written in clear before any KEK: sealed when one is set.
        let s = BlobStore::open(dir.path(), opts()).unwrap();
        s.commit_title(&t, b"manifest", &[3; 32]).unwrap();
        let signing = s.secret("origin-ed25519", || [4; 32]).unwrap();
        assert_eq!(s.seal_keys_with(Kek::new([9; 32])).unwrap(), 2, "the title key and the signing key");
        assert_eq!(s.title_secret(&t).unwrap(), Some([3; 32]));
        assert_eq!(s.secret("origin-ed25519", || [0; 32]).unwrap(), signing);
        // New keys are written sealed.
        s.begin_title(&TitleId::new("next").unwrap(), &[5; 32]).unwrap();
        assert_eq!(s.seal_keys_with(Kek::new([9; 32])).unwrap(), 0, "nothing left in clear");
    }
    // Reopened: without the KEK a sealed key is an error, never garbage; another KEK is refused.
    let s = BlobStore::open(dir.path(), opts()).unwrap();
    let e = s.title_secret(&t).unwrap_err().to_string();
    assert!(e.contains("sealed") && e.contains("kek_file"), "{e}");
    assert!(s.seal_keys_with(Kek::new([8; 32])).is_err(), "another KEK");
    assert_eq!(s.seal_keys_with(Kek::new([9; 32])).unwrap(), 0);
    assert_eq!(s.title_secret(&t).unwrap(), Some([3; 32]));
    assert_eq!(s.pending_title_key(&TitleId::new("next").unwrap()).unwrap(), Some([5; 32]));
}
