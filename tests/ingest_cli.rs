//! Ingest and export through the real binary: round trips, tampering, plaintext at rest, bad input.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tranzcast_proto::BlobAddress;
use tranzcast_store::{BlobStore, StoreOptions};

const SEG: u64 = 256 << 10;

#[test]
fn round_trip_at_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let data = data.to_str().unwrap();
    for (i, len) in [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 17].into_iter().enumerate() {
        let input = dir.path().join(format!("in-{len}"));
        random_file(&input, len, &len.to_string());
        let title = format!("t{i}");
        let r = json(&ok(&[
            "ingest",
            input.to_str().unwrap(),
            "--data",
            data,
            "--title",
            &title,
            "--segment-size",
            &SEG.to_string(),
            "--json",
        ]));
        assert_eq!(r["bytes"], len);
        assert_eq!(r["segments"], len.div_ceil(SEG));
        assert_eq!(r["segment_size"], SEG);
        assert_eq!(r["title"], title.as_str());
        assert!(r["manifest"].as_str().unwrap().parse::<BlobAddress>().is_ok());
        let out = dir.path().join(format!("out-{len}"));
        ok(&["export", "--data", data, "--title", &title, "--out", out.to_str().unwrap()]);
        assert!(files_equal(&input, &out), "length {len} did not round-trip");
    }
    // Every segment blob has the same size, padding included.
    let store = BlobStore::open(std::path::Path::new(data), StoreOptions::default()).unwrap();
    let sizes: std::collections::BTreeSet<u64> = store.list().unwrap().into_iter().map(|(_, l)| l).filter(|&l| l > 4096).collect();
    assert_eq!(sizes.len(), 1, "segment frames differ in size: {sizes:?}");
    assert_eq!(store.titles().unwrap().len(), 6);
}

#[test]
fn round_trip_200_mib_with_running_time_sizing() {
    let (dir, input) = dir_with_input("big.bin", 200 << 20, "big");
    let data = dir.path().join("store");
    let r = json(&ok(&["ingest", input.to_str().unwrap(), "--data", data.to_str().unwrap(), "--title", "big", "--json"]));
    assert_eq!(r["bytes"], 200u64 << 20);
    // Unknown running time: the documented default rate times 4 s, rounded to 64 KiB.
    let expect = tranzcast_ingest::segment_size_for(200 << 20, 0, 4.0);
    assert_eq!(r["segment_size"], expect);
    assert!(r["running_time_s"].is_null());
    let out = dir.path().join("big.out");
    ok(&["export", "--data", data.to_str().unwrap(), "--title", "big", "--out", out.to_str().unwrap()]);
    assert!(files_equal(&input, &out));
    let v = json(&ok(&["verify", "--data", data.to_str().unwrap(), "--json"]));
    assert_eq!(v["blobs"], r["segments"].as_u64().unwrap() + 1);
    assert_eq!(v["bad"].as_array().unwrap().len(), 0);
}

#[test]
fn one_flipped_bit_in_any_stored_blob_is_detected() {
    let (dir, input) = dir_with_input("in", 5 * SEG + 1000, "flip");
    let data = dir.path().join("store");
    let d = data.to_str().unwrap();
    ok(&["ingest", input.to_str().unwrap(), "--data", d, "--title", "flip", "--segment-size", &SEG.to_string()]);
    // A 48-byte window from the middle of each blob, to find it on disk.
    let windows: Vec<(BlobAddress, Vec<u8>)> = {
        let s = BlobStore::open(&data, StoreOptions::default()).unwrap();
        s.list()
            .unwrap()
            .into_iter()
            .map(|(a, len)| {
                let b = s.get(&a).unwrap().unwrap();
                let mid = (len as usize / 2).saturating_sub(24);
                (a, b[mid..mid + 48].to_vec())
            })
            .collect()
    };
    assert_eq!(windows.len(), 7, "6 segments and a manifest");
    let files: Vec<_> = walk(&data.join("db"))
        .into_iter()
        .filter(|p| {
            let e = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            e == "blob" || e == "sst"
        })
        .collect();
    for (addr, window) in &windows {
        let (path, at) = files
            .iter()
            .find_map(|p| {
                let bytes = std::fs::read(p).unwrap();
                bytes.windows(window.len()).position(|w| w == &window[..]).map(|at| (p.clone(), at + 20))
            })
            .unwrap_or_else(|| panic!("blob {addr} not found in any table or blob file"));
        let original = std::fs::read(&path).unwrap();
        let mut bad = original.clone();
        bad[at] ^= 0x04;
        std::fs::write(&path, &bad).unwrap();
        let err = fails(&["verify", "--data", d]);
        assert!(err.contains("failed verification") || err.contains("corrupt"), "{err}");
        let out = dir.path().join("out");
        let err = fails(&["export", "--data", d, "--title", "flip", "--out", out.to_str().unwrap()]);
        assert!(err.contains("corrupt") || err.contains("Corruption") || err.contains("mismatch"), "{addr}: {err}");
        assert!(!out.exists(), "a partial export was left behind");
        std::fs::write(&path, &original).unwrap();
    }
    ok(&["verify", "--data", d]);
}

#[test]
fn no_plaintext_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("marker.txt");
    let marker = b"TRANZCAST-PLAINTEXT-MARKER";
    std::fs::write(&input, marker.repeat(200_000)).unwrap();
    let data = dir.path().join("store");
    ok(&["ingest", input.to_str().unwrap(), "--data", data.to_str().unwrap(), "--title", "marked", "--segment-size", "262144"]);
    let files = walk(&data);
    assert!(files.len() > 3);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!bytes.windows(16).any(|w| w == &marker[5..21]), "plaintext found in {}", f.display());
    }
}

#[test]
fn bad_input_gets_clear_errors_and_leaves_the_store_as_it_was() {
    let (dir, input) = dir_with_input("in", 100_000, "bad");
    let data = dir.path().join("store");
    let (i, d) = (input.to_str().unwrap(), data.to_str().unwrap());

    let err = fails(&["ingest", "/nonexistent/file.mp4", "--data", d, "--title", "x"]);
    assert!(err.contains("/nonexistent/file.mp4") && err.contains("No such file"), "{err}");
    assert!(!data.exists(), "a store was created for a missing input");
    let err = fails(&["ingest", dir.path().to_str().unwrap(), "--data", d, "--title", "x"]);
    assert!(err.contains("is a directory"), "{err}");
    let err = fails(&["ingest", i, "--data", d, "--title", "Bad Title"]);
    assert!(err.contains("--title") && err.contains("only a-z"), "{err}");
    let err = fails(&["ingest", i, "--data", d, "--title", "x", "--segment-seconds", "0"]);
    assert!(err.contains("--segment-seconds"), "{err}");
    let err = fails(&["ingest", i, "--data", d, "--title", "x", "--segment-size", "10"]);
    assert!(err.contains("segment size"), "{err}");

    ok(&["ingest", i, "--data", d, "--title", "x"]);
    let before = ok(&["verify", "--data", d, "--json"]);
    let err = fails(&["ingest", i, "--data", d, "--title", "x"]);
    assert!(err.contains("title x already exists"), "{err}");
    assert_eq!(json(&ok(&["verify", "--data", d, "--json"]))["blobs"], json(&before)["blobs"]);

    let err = fails(&["export", "--data", d, "--title", "nope", "--out", dir.path().join("o").to_str().unwrap()]);
    assert!(err.contains("title nope is not in this store"), "{err}");

    // Not our directory: refused, untouched.
    let foreign = dir.path().join("home");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.tex"), b"years of work").unwrap();
    let err = fails(&["ingest", i, "--data", foreign.to_str().unwrap(), "--title", "x"]);
    assert!(err.contains("not a Tranzcast data directory"), "{err}");
    assert_eq!(walk(&foreign).len(), 1);

    // Locked by another process (this one).
    {
        let _held = BlobStore::open(&data, StoreOptions::default()).unwrap();
        let err = fails(&["ingest", i, "--data", d, "--title", "y"]);
        assert!(err.contains("locked by another process"), "{err}");
    }

    // --encode without ffmpeg on the PATH.
    let empty = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin())
        .args(["ingest", i, "--data", d, "--title", "enc", "--encode"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ffmpeg is not installed"), "{err}");
    assert_eq!(json(&ok(&["verify", "--data", d, "--json"]))["blobs"], json(&before)["blobs"]);
}

#[test]
fn full_disk_is_a_clear_error_and_the_store_survives() {
    // A small tmpfs is a full disk we own; mounting needs root (CI runs as root).
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"]).arg(&mnt).status();
    if !matches!(mounted, Ok(s) if s.success()) {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let data = mnt.join("store");
    let d = data.to_str().unwrap();
    let small = dir.path().join("small.bin");
    random_file(&small, 4 << 20, "small");
    ok(&["ingest", small.to_str().unwrap(), "--data", d, "--title", "fits", "--segment-size", "262144"]);
    let big = dir.path().join("big.bin");
    random_file(&big, 120 << 20, "big");
    let err = fails(&["ingest", big.to_str().unwrap(), "--data", d, "--title", "too-big", "--segment-size", "262144"]);
    assert!(err.contains("disk full"), "{err}");
    // Make room the way an operator would, then the earlier title is intact and the big one absent.
    let titles = ok(&["titles", "--data", d]);
    assert!(titles.contains("fits") && !titles.contains("too-big"), "{titles}");
    let out = dir.path().join("fits.out");
    ok(&["export", "--data", d, "--title", "fits", "--out", out.to_str().unwrap()]);
    assert!(files_equal(&small, &out));
}
