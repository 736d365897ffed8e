//! What ffprobe says about a media file (running time, container, chapters).
//! Without ffprobe, or for a file it cannot read, everything is unknown and
//! ingest falls back to documented defaults.

use std::path::Path;
use std::process::{Command, Stdio};

use serde::Deserialize;

/// What is known of a media file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaInfo {
    /// Running time in milliseconds, 0 when unknown.
    pub running_time_ms: u64,
    /// MIME type.
    pub media_type: String,
    /// Chapters: start in milliseconds and name.
    pub chapters: Vec<(u64, String)>,
}

#[derive(Deserialize)]
struct Probe {
    format: Option<ProbeFormat>,
    #[serde(default)]
    chapters: Vec<ProbeChapter>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    format_name: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
struct ProbeChapter {
    start_time: Option<String>,
    #[serde(default)]
    tags: std::collections::HashMap<String, String>,
}

/// MIME type from ffprobe's format name, else from the file extension.
pub fn media_type_for(format_name: Option<&str>, path: &Path) -> String {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let by_ext = match ext.as_str() {
        "mp4" | "m4v" => Some("video/mp4"),
        "webm" => Some("video/webm"),
        "mkv" => Some("video/x-matroska"),
        "ts" => Some("video/mp2t"),
        "mov" => Some("video/quicktime"),
        "mp3" => Some("audio/mpeg"),
        "m4a" => Some("audio/mp4"),
        "ogg" | "opus" => Some("audio/ogg"),
        _ => None,
    };
    let by_format = format_name.and_then(|f| {
        let f = f.split(',').collect::<Vec<_>>();
        if f.contains(&"mp4") || f.contains(&"mov") {
            Some(if ext == "mov" { "video/quicktime" } else { "video/mp4" })
        } else if f.contains(&"webm") || f.contains(&"matroska") {
            Some(if ext == "mkv" { "video/x-matroska" } else { "video/webm" })
        } else if f.contains(&"mpegts") {
            Some("video/mp2t")
        } else {
            None
        }
    });
    by_format.or(by_ext).unwrap_or("application/octet-stream").to_string()
}

fn seconds_to_ms(s: &str) -> Option<u64> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && (0.0..1e9).contains(&v)).then(|| (v * 1000.0).round() as u64)
}

/// Parses ffprobe's JSON (`-show_format -show_chapters`): pure, for tests and hostile output.
pub fn parse_probe(json: &[u8], path: &Path) -> MediaInfo {
    let Ok(p) = serde_json::from_slice::<Probe>(json) else {
        return MediaInfo { media_type: media_type_for(None, path), ..Default::default() };
    };
    let (name, duration) = match &p.format {
        Some(f) => (f.format_name.as_deref(), f.duration.as_deref().and_then(seconds_to_ms)),
        None => (None, None),
    };
    let mut chapters: Vec<(u64, String)> = p
        .chapters
        .iter()
        .filter_map(|c| {
            let start = c.start_time.as_deref().and_then(seconds_to_ms)?;
            let name = c.tags.get("title").cloned().unwrap_or_else(|| format!("Chapter at {}s", start / 1000));
            Some((start, name.chars().take(200).collect()))
        })
        .collect();
    chapters.sort_by_key(|c| c.0);
    MediaInfo { running_time_ms: duration.unwrap_or(0), media_type: media_type_for(name, path), chapters }
}

/// Runs ffprobe on `path`; unknown fields when it is missing or fails.
pub fn probe(path: &Path) -> MediaInfo {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_chapters"])
        .arg(path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => parse_probe(&o.stdout, path),
        _ => MediaInfo { media_type: media_type_for(None, path), ..Default::default() },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_ffprobe_output() {
        let j = br#"{"chapters":[{"start_time":"30.5","tags":{"title":"Two"}},{"start_time":"0.000000"}],
                    "format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"60.040000"}}"#;
        let m = parse_probe(j, Path::new("x.bin"));
        assert_eq!(m.running_time_ms, 60_040);
        assert_eq!(m.media_type, "video/mp4");
        assert_eq!(m.chapters, vec![(0, "Chapter at 0s".to_string()), (30_500, "Two".to_string())]);
    }

    #[test]
    fn hostile_or_missing_output_is_unknown() {
        for j in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"format":{"duration":"-5"}}"#,
            br#"{"format":{"duration":"NaN"}}"#,
            br#"{"format":{"duration":"1e300"}}"#,
        ] {
            let m = parse_probe(j, Path::new("clip.webm"));
            assert_eq!(m.running_time_ms, 0, "{}", String::from_utf8_lossy(j));
            assert_eq!(m.media_type, "video/webm");
        }
        assert_eq!(media_type_for(None, Path::new("noext")), "application/octet-stream");
    }
}
