//! Standard players and clients we did not write, on a playback URL from the
//! demo cluster (`cluster.json`'s `playback_url`): curl over HTTP/1.1 and
//! HTTP/2 and aioquic over HTTP/3 get byte-exact ranges; ffprobe reads the
//! title over HTTPS; ffmpeg seeks into the middle and decodes the same frame
//! as from the original file; the edge's log shows the Range requests, with
//! the token redacted; no edge holds plaintext at rest afterwards.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};

use common::bin;

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// One decoded video frame (RGB) at `seconds` into `input` (a path or URL).
fn frame_at(input: &str, seconds: &str, ca: &str) -> Vec<u8> {
    let mut c = Command::new("ffmpeg");
    c.args(["-nostdin", "-hide_banner", "-loglevel", "error"]);
    if input.starts_with("https://") {
        c.args(["-tls_verify", "1", "-ca_file", ca]);
    }
    run(c.args(["-ss", seconds, "-i", input, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]))
}

#[test]
fn curl_aioquic_ffprobe_and_ffmpeg_play_a_playback_url() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut child = Command::new(bin())
        .args(["demo", "--serve", "--json", "--data"])
        .arg(&data)
        .env("RUST_LOG", "warn,tranzcast_edge::service=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log is read on a thread so the pipe never fills.
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let c = common::cluster_json(&data);
    let described = data.join("cluster.json");
    let (url, ca, input_path) = (c["playback_url"].as_str().unwrap(), c["ca"].as_str().unwrap(), c["input"].as_str().unwrap());
    assert!(url.ends_with("/demo.mp4"), "{url}");
    let input = std::fs::read(input_path).unwrap();
    let len = input.len();

    // curl, HTTP/1.1 and HTTP/2: ranges byte-exact, the version as asked.
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        for (range, lo, hi) in [("1000-1999", 1000, 2000), ("-4096", len - 4096, len), (&format!("{}-", len / 2) as &str, len / 2, len)] {
            let out = dir.path().join("curl.out");
            let meta = run(Command::new("curl")
                .args(["-sS", "--fail", flag, "--cacert", ca, "-r", range, "-w", "%{http_code} %{http_version}", "-o"])
                .arg(&out)
                .arg(url));
            assert_eq!(String::from_utf8_lossy(&meta), format!("206 {version}"), "curl {flag} {range}");
            assert!(std::fs::read(&out).unwrap() == input[lo..hi], "curl {flag} {range}");
        }
    }

    // aioquic, HTTP/3, several ranges over one QUIC connection.
    // Relative to the package root, where cargo runs tests (not `env!`: see config/tests/examples.rs).
    let script = std::path::Path::new("tests/h3_range.py");
    let ranges = ["bytes=0-99".to_string(), format!("bytes={}-{}", len / 3, len / 3 + 70_000), "bytes=-1000".to_string()];
    let out = Command::new("python3").arg(script).arg(ca).arg(url).args(&ranges).output().unwrap();
    assert!(out.status.success(), "aioquic client failed (pip install aioquic): {}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let expect = [(0, 100), (len / 3, len / 3 + 70_001), (len - 1000, len)];
    assert_eq!(answers.len(), 3);
    for (a, (lo, hi)) in answers.iter().zip(expect) {
        use base64::Engine;
        assert_eq!(a["status"], 206, "{a}");
        assert_eq!(a["content_range"].as_str().unwrap(), format!("bytes {lo}-{}/{len}", hi - 1));
        let body = base64::engine::general_purpose::STANDARD.decode(a["body"].as_str().unwrap()).unwrap();
        assert!(body == input[lo..hi], "aioquic {}", a["range"]);
    }

    // ffprobe over HTTPS (certificate verified): the whole running time.
    let probe = run(Command::new("ffprobe").args(["-v", "error", "-tls_verify", "1", "-ca_file", ca]).args([
        "-show_entries",
        "format=duration,format_name",
        "-of",
        "json",
        url,
    ]));
    let p: serde_json::Value = serde_json::from_slice(&probe).unwrap();
    let duration: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((duration - 60.0).abs() < 0.5, "{p}");
    assert!(p["format"]["format_name"].as_str().unwrap().contains("mp4"), "{p}");
    // ffmpeg seeks into the middle: the frame decoded there is the original's.
    for at in ["30", "47.5"] {
        let over_http = frame_at(url, at, ca);
        assert_eq!(over_http.len(), 640 * 360 * 3, "one 640x360 RGB frame at {at} s");
        assert!(over_http == frame_at(input_path, at, ca), "the frame at {at} s differs from the original's");
    }

    // The load test against this running cluster: 20 viewers, every byte verified.
    let scenario = dir.path().join("crowd.toml");
    std::fs::write(
        &scenario,
        "name = \"crowd\"\nmax_seconds = 60\n[viewers]\ncount = 20\narrival_seconds = 1\nspeed = 20.0\nper_connection = 5\n",
    )
    .unwrap();
    let lt = common::loadtest(&scenario, &dir.path().join("lt"), &["--cluster", described.to_str().unwrap()]);
    let r = &lt["runs"][0];
    assert_eq!((r["finished"].as_u64(), r["failed"].as_u64(), r["mismatches"].as_u64()), (Some(20), Some(0), Some(0)), "{lt}");
    assert!(r["bytes_delivered"].as_u64().unwrap() >= 20 * 600_000, "{lt}");
    assert!(r["origin_offload"].as_f64().unwrap() > 0.9, "{lt}");
    assert!(dir.path().join("lt/report.html").exists());

    common::signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verified"], true, "{r}");
    let log = log.join().unwrap();
    // The edge logged the players' Range requests, seeks included, without the token.
    let token = url.split('/').rev().nth(1).unwrap();
    assert!(!log.contains(token), "a playback token in the log");
    let play_lines: Vec<&str> = log.lines().filter(|l| l.contains("/v1/play/") && l.contains("range=\"bytes=")).collect();
    assert!(
        play_lines.iter().any(|l| l.contains(&format!("range=\"bytes={}-\"", len / 2))),
        "no logged seek in {} lines; log sample: {}",
        play_lines.len(),
        log.lines().filter(|l| l.contains("v1/")).take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(play_lines.iter().any(|l| l.contains("protocol=\"h3\"")) && play_lines.iter().any(|l| l.contains("protocol=\"h2\"")));
    // No plaintext at rest in any edge's data directory.
    let probes: Vec<&[u8]> = (1..16).map(|k| &input[k * len / 16..][..32]).collect();
    for d in ["edge-1", "edge-2", "edge-3"] {
        for f in common::walk(&data.join(d)) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(probes.iter().all(|p| !bytes.windows(32).any(|w| w == *p)), "plaintext in {}", f.display());
        }
    }
}
