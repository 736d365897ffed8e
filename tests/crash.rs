//! Crash safety: SIGKILL an ingest at random moments, reopen, verify everything listed.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tranzcast_proto::TitleId;
use tranzcast_store::{BlobStore, StoreError, StoreOptions};

/// xorshift: reproducible "random" kill times (the seed is printed on failure).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_during_ingest_never_corrupts_and_rerun_completes() {
    let (dir, input) = dir_with_input("in.bin", 96 << 20, "crash");
    let data = dir.path().join("store");
    let (i, d) = (input.to_str().unwrap(), data.to_str().unwrap());
    let args = |title: &str| {
        vec![
            "ingest".to_string(),
            i.into(),
            "--data".into(),
            d.into(),
            "--title".into(),
            title.into(),
            "--segment-size".into(),
            "1048576".into(),
        ]
    };

    // Calibrate: how long one whole ingest takes here (the faster of a cold and a warm run).
    let mut full = Duration::MAX;
    for t in ["calibrate", "calibrate-warm"] {
        let t0 = Instant::now();
        ok(&args(t).iter().map(String::as_str).collect::<Vec<_>>());
        full = full.min(t0.elapsed());
    }

    let seed = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut state = seed;
    let mut generation = 0;
    let mut interrupted = 0;
    let mut completed = vec!["calibrate".to_string(), "calibrate-warm".to_string()];
    for round in 0..20 {
        let title = format!("crash-{generation}");
        let mut child = Command::new(bin()).args(args(&title)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Kill anywhere from process start to just before the expected end.
        let delay = Duration::from_micros(next(&mut state) % (full.as_micros() as u64 * 9 / 10 + 1));
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        // Reopen: every listed blob verifies, and every published title is whole.
        // A child the killed ingest was spawning (ffprobe) may hold an inherited
        // descriptor of the lock for an instant: allow the lock 3 s to clear.
        let opened = Instant::now();
        let s = loop {
            match BlobStore::open(&data, StoreOptions { cache_bytes: 1 << 20, create: false }) {
                Ok(s) => break s,
                Err(StoreError::Locked { .. }) if opened.elapsed() < Duration::from_secs(3) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("round {round} (seed {seed:#x}): store does not reopen: {e}"),
            }
        };
        // A kill after the commit point still published the title: that is a completion.
        let published = s.title_manifest(&TitleId::new(&title).unwrap()).unwrap().is_some();
        assert!(published || !status.success(), "exit 0 without a published title");
        if published {
            completed.push(title);
            generation += 1;
        } else {
            interrupted += 1;
        }
        for (addr, _) in s.list().unwrap() {
            match s.get(&addr) {
                Ok(Some(_)) => {}
                other => panic!("round {round} (seed {seed:#x}): blob {addr} listed but {other:?}"),
            }
        }
        for t in &completed {
            assert!(s.title_manifest(&TitleId::new(t).unwrap()).unwrap().is_some(), "title {t} lost");
        }
    }
    // Kill times are random: most land mid-ingest; demand enough that the test means something.
    assert!(interrupted >= 5, "only {interrupted} of 20 kills interrupted an ingest (seed {seed:#x})");
    // The interrupted title: a re-run completes (resuming), and exports byte-identical.
    let title = format!("crash-{generation}");
    let r = json(&ok(&[&args(&title).iter().map(String::as_str).collect::<Vec<_>>()[..], &["--json"]].concat()));
    assert_eq!(r["bytes"], 96u64 << 20);
    for t in completed.iter().chain(std::iter::once(&title)) {
        let out = dir.path().join(format!("{t}.out"));
        ok(&["export", "--data", d, "--title", t, "--out", out.to_str().unwrap()]);
        assert!(files_equal(&input, &out), "title {t} differs");
        std::fs::remove_file(out).unwrap();
    }
    eprintln!("{interrupted} interrupted, {} completed, last re-run resumed {} blobs", completed.len(), r["resumed_blobs"]);
}
