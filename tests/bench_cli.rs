//! `tranzcast bench floor-server`, the bare serving stack bench/edge.sh puts
//! beside the edge: a real process on 127.0.0.1 answering whole files and
//! single ranges byte-exact, refusing bad arguments, stopping on SIGTERM.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

#[test]
fn floor_server_serves_files_and_ranges_byte_exact_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    random_file(&files.join("a"), 300_000, "floor-a");
    let want = std::fs::read(files.join("a")).unwrap();
    let ca_dir = dir.path().join("ca");
    let mut child =
        spawn(&["bench", "floor-server", "--dir", files.to_str().unwrap(), "--ca-dir", ca_dir.to_str().unwrap()], Stdio::null());
    let line = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("no address in {line:?}"));
    let ca = std::fs::read(ca_dir.join("ca.pem")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = tranzcast_net::client::https(&ca).unwrap();
        let url = format!("https://localhost:{port}/v1/blobs/a");
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), want);
        let r = http.get(&url).header("range", "bytes=4096-8191").send().await.unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 4096-8191/300000");
        assert_eq!(r.bytes().await.unwrap(), want[4096..8192]);
        // Past the end: clamped, as a server would.
        let r = http.get(&url).header("range", "bytes=299990-400000").send().await.unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap(), want[299_990..]);
        // Anything but one plain range is ignored: the whole file.
        let r = http.get(&url).header("range", "bytes=9-1").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), want.len());
        let r = http.get(format!("https://localhost:{port}/v1/blobs/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    });
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "floor server exited with {status} on SIGTERM");
}

#[test]
fn floor_server_without_a_certificate_or_with_a_missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&["bench", "floor-server", "--dir", dir.path().to_str().unwrap()]);
    assert!(err.contains("--ca-dir") || err.contains("--cert"), "{err}");
    let missing = dir.path().join("missing");
    let ca = dir.path().join("ca");
    let err = fails(&["bench", "floor-server", "--dir", missing.to_str().unwrap(), "--ca-dir", ca.to_str().unwrap()]);
    assert!(err.contains("cannot read") && err.contains("missing"), "{err}");
}
