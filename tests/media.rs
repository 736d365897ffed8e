//! Real media: running time from ffprobe sets the segment size; --encode transcodes with ffmpeg.
//! Needs ffmpeg and ffprobe (scripts/setup.sh installs them).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

fn clip(path: &std::path::Path, seconds: u32) {
    let st = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", &format!("testsrc=duration={seconds}:size=320x240:rate=25")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={seconds}"), "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(path)
        .status()
        .expect("ffmpeg is required for this test: run scripts/setup.sh");
    assert!(st.success());
}

fn duration_s(path: &std::path::Path) -> f64 {
    let o = Command::new("ffprobe").args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

#[test]
fn segment_size_follows_running_time_and_encode_transcodes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    clip(&input, 6);
    let len = std::fs::metadata(&input).unwrap().len();
    let data = dir.path().join("store");
    let d = data.to_str().unwrap();

    let r = json(&ok(&["ingest", input.to_str().unwrap(), "--data", d, "--title", "plain", "--segment-seconds", "2", "--json"]));
    let rt = r["running_time_s"].as_f64().expect("running time known from ffprobe");
    assert!((rt - 6.0).abs() < 0.2, "running time {rt}");
    assert_eq!(r["media_type"], "video/mp4");
    let want = tranzcast_ingest::segment_size_for(len, (rt * 1000.0).round() as u64, 2.0);
    assert_eq!(r["segment_size"], want);
    let out = dir.path().join("plain.mp4");
    ok(&["export", "--data", d, "--title", "plain", "--out", out.to_str().unwrap()]);
    assert!(files_equal(&input, &out));

    // With the segment size given, ffprobe runs beside the sealing: what it
    // finds still reaches the manifest.
    let r = json(&ok(&["ingest", input.to_str().unwrap(), "--data", d, "--title", "sized", "--segment-size", "65536", "--json"]));
    assert_eq!((r["segment_size"].as_u64(), r["media_type"].as_str()), (Some(65536), Some("video/mp4")));
    let rt_sized = r["running_time_s"].as_f64().expect("running time known from ffprobe, probed alongside");
    assert!((rt_sized - rt).abs() < 1e-9, "{rt_sized} against {rt}");

    let r = json(&ok(&["ingest", input.to_str().unwrap(), "--data", d, "--title", "encoded", "--encode", "--json"]));
    assert_eq!(r["encoded"], true);
    assert_eq!(r["media_type"], "video/mp4");
    let out = dir.path().join("encoded.mp4");
    ok(&["export", "--data", d, "--title", "encoded", "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), r["bytes"].as_u64().unwrap());
    let d_out = duration_s(&out);
    assert!((d_out - 6.0).abs() < 0.5, "encoded duration {d_out}");
    let codec = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name", "-of", "csv=p=0"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&codec.stdout).trim(), "h264");
}

#[test]
fn encode_of_a_file_ffmpeg_cannot_read_is_a_clear_error() {
    let (dir, input) = dir_with_input("junk.mp4", 100_000, "junk");
    let data = dir.path().join("store");
    let err = fails(&["ingest", input.to_str().unwrap(), "--data", data.to_str().unwrap(), "--title", "junk", "--encode"]);
    assert!(err.contains("ffmpeg failed"), "{err}");
    let titles = ok(&["titles", "--data", data.to_str().unwrap()]);
    assert!(titles.trim().is_empty(), "a failed encode published a title: {titles}");
}
