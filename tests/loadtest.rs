//! `tranzcast loadtest` end to end: a small crowd against a local cluster it
//! starts (real servers, TLS, RocksDB), with an edge killed mid-run and
//! pre-casting on against off; every byte verified, the report's figures
//! and plots present. (Against a running cluster: tests/players.rs.)

#![allow(clippy::unwrap_used)]

mod common;

use common::{fails, loadtest};

const SCENARIO: &str = r#"
name = "ci"
description = "the test suite's crowd"
seed = 11
max_seconds = 60

[cluster]
nodes = 1
edges = 2
homes = 6
precast_segments = 1

[titles]
count = 2
seconds = 8
bitrate_kbps = 1000
segment_seconds = 2

[viewers]
count = 36
arrival_seconds = 3
seek_probability = 0.3
speed = 4.0
per_connection = 4

[[events]]
at_seconds = 2.5
kill = "edge-2"

[[variants]]
name = "on"
precast = true

[[variants]]
name = "off"
precast = false
"#;

#[test]
fn a_crowd_plays_through_a_kill_with_and_without_precasts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ci.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let out_dir = dir.path().join("report");
    let summary = loadtest(&file, &out_dir, &["--data", dir.path().join("data").to_str().unwrap()]);
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        let name = r["name"].as_str().unwrap();
        assert_eq!((r["viewers"].as_u64(), r["finished"].as_u64(), r["failed"].as_u64()), (Some(36), Some(36), Some(0)), "{name}: {r}");
        assert_eq!(r["mismatches"], 0, "{name}: every byte checked against the original");
        assert!(r["bytes_delivered"].as_u64().unwrap() > 36 * 250_000, "{name}: {r}");
        assert!(r["origin_offload"].as_f64().unwrap() > 0.9, "{name}: {r}");
        assert_eq!(r["startup_ms"]["count"], 36, "{name}: every viewer started");
        assert_eq!(r["marks"][0]["what"], "kill edge-2", "{name}: {r}");
        assert!(r["marks"][0]["t"].as_f64().unwrap() >= 2.5, "{name}: the kill came before its time: {r}");
        assert!(r["hit_ratio"]["node"].as_f64().unwrap() > 0.99, "{name}: nodes hold complete sets: {r}");
    }
    assert!(runs[0]["precast_hits"].as_u64().unwrap() > 0, "pre-cast on: {}", runs[0]);
    assert_eq!(runs[1]["precast_hits"], 0, "pre-cast off: {}", runs[1]);
    // The report: JSON with every figure, HTML with every plot.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    let run = &report["runs"][0];
    assert!(run["marks"][0]["t"].as_f64().unwrap() < run["seconds"].as_f64().unwrap(), "the kill fell inside the run");
    assert!(run["series"].as_array().unwrap().len() >= 2, "one sample a second");
    assert_eq!(run["startup_samples"].as_array().unwrap().len(), 36);
    assert!(run["tiers"]["edge"]["bytes_out"].as_f64().unwrap() > 0.0);
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2 + 2 * 6, "two distributions, six plots per run");
    assert!(html.contains("kill edge-2") && html.contains("Startup time"));
}

#[test]
fn bad_scenarios_and_targets_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&["loadtest", "--scenario", "no-such-scenario"]);
    assert!(e.contains("not a built-in scenario") && e.contains("flash-crowd"), "{e}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nmax_seconds = 10\n[viewers]\ncount = 100000\narrival_seconds = 1\n").unwrap();
    let e = fails(&["loadtest", "--scenario", bad.to_str().unwrap()]);
    assert!(e.contains("viewers.count"), "{e}");
    let e = fails(&["loadtest", "--scenario", "smoke", "--viewers", "0"]);
    assert!(e.contains("viewers.count"), "{e}");
    // Killing servers needs the cluster the load test starts itself.
    let cluster = dir.path().join("cluster.json");
    std::fs::write(&cluster, "{}").unwrap();
    let e = fails(&["loadtest", "--scenario", "failure", "--cluster", cluster.to_str().unwrap()]);
    assert!(e.contains("kills servers"), "{e}");
    let e = fails(&["loadtest", "--scenario", "flash-crowd", "--cluster", cluster.to_str().unwrap()]);
    assert!(e.contains("cluster description"), "{e}");
}

/// The crowd of the test above on two origins sharing one PostgreSQL,
/// origin-2 crashing mid-run instead of an edge (one run: no variants).
fn two_origins() -> String {
    let s = SCENARIO.replace("name = \"ci\"", "name = \"two-origins\"").replace("[cluster]\n", "[cluster]\norigins = 2\n");
    let s = s.replace("homes = 6\n", "").replace("at_seconds = 2.5\nkill = \"edge-2\"", "at_seconds = 2\nkill = \"origin-2\"");
    let s = s.replace("arrival_seconds = 3\n", "arrival_seconds = 6\n");
    s[..s.find("[[variants]]").unwrap()].to_string()
}

#[test]
fn a_crowd_plays_through_the_crash_of_one_of_two_origins() {
    let pg = tranzcast_testkit::Postgres::start();
    let url = pg.database("loadtest");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.toml");
    std::fs::write(&file, two_origins()).unwrap();
    let out_dir = dir.path().join("report");
    let summary = loadtest(&file, &out_dir, &["--data", dir.path().join("data").to_str().unwrap(), "--state-url", &url]);
    let r = &summary["runs"][0];
    // Viewers (and nodes and edges) are spread over both origins; those
    // that arrive after the crash and meet origin-2 first fail over.
    assert_eq!((r["viewers"].as_u64(), r["finished"].as_u64(), r["failed"].as_u64()), (Some(36), Some(36), Some(0)), "{r}");
    assert_eq!(r["mismatches"], 0, "every byte checked against the original");
    assert_eq!(r["marks"][0]["what"], "kill origin-2", "{r}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    let run = &report["runs"][0];
    let at = run["marks"][0]["t"].as_f64().unwrap();
    assert!(at >= 2.0 && at < run["seconds"].as_f64().unwrap(), "the crash fell inside the run: {at}");
    // Mid-run: viewers were playing when it came, and more arrived after it.
    let series = run["series"].as_array().unwrap();
    assert!(series.iter().any(|s| s["t"].as_f64().unwrap() >= at && s["active"].as_u64().unwrap() > 0), "no viewer active after the crash");
    let starts = run["startup_samples"].as_array().unwrap();
    assert_eq!(starts.len(), 36);
    assert_eq!(r["startup_ms"]["count"], 36, "every viewer started: {r}");
}
