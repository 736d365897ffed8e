//! Scenario files (`loadtest/scenarios/*.toml`), parsed and bounded (pure).
//!
//! A scenario says what cluster to start (when the load test starts its
//! own), which titles, how many viewers arrive when, what they watch, what
//! breaks during the run, and which variants to compare side by side. Every
//! number is bounded so that a scenario always stops by itself on this kind
//! of machine: hostile or mistyped files get an error naming the field.

use std::time::Duration;

use serde::Deserialize;

use crate::LoadtestError;

/// Longest a scenario may run (per variant).
pub const MAX_RUN_SECONDS: f64 = 1800.0;
/// Most viewers in one run.
pub const MAX_VIEWERS: u32 = 20_000;
/// Most bytes of titles a scenario may ask to ingest.
pub const MAX_TITLE_BYTES: u64 = 4 << 30;
/// Most variants compared in one scenario.
pub const MAX_VARIANTS: usize = 4;

/// A parsed, checked scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (used in file names).
    pub name: String,
    /// One line for the report.
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice (arrivals, titles, watch times, seeks).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Hard bound on a run's wall time; viewers still playing then are stopped
    /// and counted as unfinished.
    pub max_seconds: f64,
    /// The cluster the load test starts (ignored against a running cluster).
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// The titles it ingests.
    #[serde(default)]
    pub titles: TitleSpec,
    /// Who watches what, when.
    pub viewers: ViewerSpec,
    /// What breaks, when.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Runs compared side by side (each on a fresh cluster); none: one run.
    #[serde(default)]
    pub variants: Vec<Variant>,
}

fn default_seed() -> u64 {
    1
}

/// The local cluster.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Origin processes (more than one share a PostgreSQL: `--state-url`).
    pub origins: u32,
    /// Neuro nodes (hold complete sets).
    pub nodes: u32,
    /// Edges (mirror on demand).
    pub edges: u32,
    /// Viewers' homes: peer services that pre-casts reach and viewers read
    /// first (each shared by the viewers living there). 0: viewers have none.
    pub homes: u32,
    /// Whether the origin pre-casts first segments to the homes before the run.
    pub precast: bool,
    /// Segments pre-cast per title.
    pub precast_segments: u32,
    /// Whether every edge holds every title before the first viewer (warm) or nothing (cold).
    pub warm_edges: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self { origins: 1, nodes: 2, edges: 3, homes: 0, precast: false, precast_segments: 2, warm_edges: false }
    }
}

/// The titles.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TitleSpec {
    /// How many.
    pub count: u32,
    /// Running time of each, seconds.
    pub seconds: f64,
    /// Media bit rate, kbit/s: with the running time, gives the size.
    pub bitrate_kbps: u32,
    /// Seconds of media per segment (the segment size follows the running time).
    pub segment_seconds: f64,
}

impl Default for TitleSpec {
    fn default() -> Self {
        Self { count: 1, seconds: 24.0, bitrate_kbps: 1000, segment_seconds: 2.0 }
    }
}

impl TitleSpec {
    /// Bytes of one title.
    pub fn bytes(&self) -> u64 {
        (self.seconds * f64::from(self.bitrate_kbps) * 1000.0 / 8.0) as u64
    }
}

/// The viewers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewerSpec {
    /// How many arrive.
    pub count: u32,
    /// Arrivals are a Poisson process over this many seconds (0: all at once).
    pub arrival_seconds: f64,
    /// Title popularity: Zipf with this exponent over the titles (0: uniform).
    #[serde(default = "default_zipf")]
    pub zipf_s: f64,
    /// Share of viewers who watch to the end; the others watch an
    /// exponentially distributed share of the title with mean `watch_mean`.
    #[serde(default = "default_full")]
    pub watch_full: f64,
    /// Mean share of the title the others watch.
    #[serde(default = "default_mean")]
    pub watch_mean: f64,
    /// Chance a viewer seeks once, forward or back, part way through.
    #[serde(default)]
    pub seek_probability: f64,
    /// Media seconds per wall second (1: real time).
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// Segments a player keeps ahead of the playhead.
    #[serde(default = "default_buffer")]
    pub buffer_segments: u32,
    /// Segments fetched at once per viewer.
    #[serde(default = "default_parallel")]
    pub parallel: u32,
    /// Viewers sharing one HTTP client (its connections), as in one home or
    /// one NAT; each viewer still has its own session, ticket and sources.
    #[serde(default = "default_per_connection")]
    pub per_connection: u32,
    /// The viewer's access link (last mile), Mbit/s; 0: not modelled. The
    /// cluster's own network is real (loopback); this link is simulated:
    /// bytes from the network reach the player only as fast as it carries
    /// them, one at a time. Reads from the viewer's home do not cross it.
    #[serde(default)]
    pub access_mbps: f64,
    /// The access link's round trip, added once per segment from the network.
    #[serde(default)]
    pub access_rtt_ms: f64,
}

fn default_zipf() -> f64 {
    0.8
}
fn default_full() -> f64 {
    0.7
}
fn default_mean() -> f64 {
    0.4
}
fn default_speed() -> f64 {
    1.0
}
fn default_buffer() -> u32 {
    4
}
fn default_parallel() -> u32 {
    2
}
fn default_per_connection() -> u32 {
    20
}

/// Something that breaks during a run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Seconds after the first arrival.
    pub at_seconds: f64,
    /// The server that fails (`edge-N`, `node-N`, or `origin-N` for N >= 2).
    pub kill: String,
    /// How it fails.
    #[serde(default)]
    pub failure: Failure,
}

/// How a server fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// The process dies: connections are reset at once, clients fail over at once.
    #[default]
    Crash,
    /// The machine hangs or falls off the network: connections stay open and
    /// silent, clients find out only by their timeouts.
    Hang,
}

impl Failure {
    /// Its word in reports.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Crash => "kill",
            Self::Hang => "hang",
        }
    }
}

/// One of the runs compared.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Its label in the report.
    pub name: String,
    /// Overrides `cluster.precast`.
    pub precast: Option<bool>,
    /// Overrides `cluster.warm_edges`.
    pub warm_edges: Option<bool>,
}

/// The scenarios shipped in `loadtest/scenarios/`, built in (name, text).
pub const BUILTIN: [(&str, &str); 6] = [
    ("flash-crowd", include_str!("../scenarios/flash-crowd.toml")),
    ("long-tail", include_str!("../scenarios/long-tail.toml")),
    ("failure", include_str!("../scenarios/failure.toml")),
    ("precast", include_str!("../scenarios/precast.toml")),
    ("cold-warm", include_str!("../scenarios/cold-warm.toml")),
    ("smoke", include_str!("../scenarios/smoke.toml")),
];

impl Scenario {
    /// A shipped scenario by name, or a scenario file by path.
    pub fn load(name_or_path: &str) -> Result<Self, LoadtestError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text);
        }
        let p = std::path::Path::new(name_or_path);
        let meta = std::fs::metadata(p).map_err(|e| {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            LoadtestError::Scenario(format!("{name_or_path}: not a built-in scenario ({}) nor a readable file: {e}", names.join(", ")))
        })?;
        if meta.len() > 1 << 20 {
            return Err(LoadtestError::Scenario(format!("{name_or_path}: over 1 MiB")));
        }
        let text = std::fs::read_to_string(p).map_err(|e| LoadtestError::Scenario(format!("{name_or_path}: {e}")))?;
        Self::parse(&text)
    }

    /// The same scenario with `n` viewers (checked like a file).
    pub fn with_viewers(mut self, n: u32) -> Result<Self, LoadtestError> {
        self.viewers.count = n;
        self.check()?;
        Ok(self)
    }

    /// Parses and checks a scenario file's text.
    pub fn parse(text: &str) -> Result<Self, LoadtestError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| LoadtestError::Scenario(e.message().to_string()))?;
        let s: Scenario = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| LoadtestError::Scenario(format!("{}: {}", e.path(), e.inner())))?;
        s.check()?;
        Ok(s)
    }

    /// The runs to make: the variants, each applied to the base, or the base alone.
    pub fn runs(&self) -> Vec<(String, Scenario)> {
        if self.variants.is_empty() {
            return vec![(self.name.clone(), self.clone())];
        }
        self.variants
            .iter()
            .map(|v| {
                let mut s = self.clone();
                s.variants.clear();
                if let Some(p) = v.precast {
                    s.cluster.precast = p;
                }
                if let Some(w) = v.warm_edges {
                    s.cluster.warm_edges = w;
                }
                (v.name.clone(), s)
            })
            .collect()
    }

    /// Wall time of one segment's playback: its media time (its size at
    /// the bit rate: sizes are rounded up, so a little over
    /// `segment_seconds`) over the speed.
    pub fn segment_wall(&self) -> Duration {
        let media = f64::from(self.segment_size()) * 8.0 / (f64::from(self.titles.bitrate_kbps) * 1000.0);
        Duration::from_secs_f64(media / self.viewers.speed)
    }

    /// Bytes per segment (the running-time rule of ingest).
    pub fn segment_size(&self) -> u32 {
        let len = self.titles.bytes();
        tranzcast_proto::sizing::segment_size_for(len, (self.titles.seconds * 1000.0) as u64, self.titles.segment_seconds)
    }

    fn check(&self) -> Result<(), LoadtestError> {
        let bad = |field: &str, why: String| Err(LoadtestError::Scenario(format!("{field}: {why}")));
        let name_ok = |n: &str| !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok(&self.name) {
            return bad("name", "1 to 64 letters, digits, '-' or '_'".into());
        }
        if self.description.len() > 1000 {
            return bad("description", "at most 1000 characters".into());
        }
        let within = |v: f64, lo: f64, hi: f64| v.is_finite() && v >= lo && v <= hi;
        if !within(self.max_seconds, 1.0, MAX_RUN_SECONDS) {
            return bad("max_seconds", format!("between 1 and {MAX_RUN_SECONDS}"));
        }
        let c = &self.cluster;
        if !(1..=4).contains(&c.origins) {
            return bad("cluster.origins", "1 to 4".into());
        }
        // Each run of several origins needs a database of its own (its
        // titles' keys); the run is given one (`--state-url`).
        if c.origins > 1 && self.variants.len() > 1 {
            return bad("cluster.origins", "several origins: one run per scenario (no variants)".into());
        }
        if c.nodes > 8 {
            return bad("cluster.nodes", "at most 8".into());
        }
        if !(1..=16).contains(&c.edges) {
            return bad("cluster.edges", "1 to 16".into());
        }
        if c.homes > 64 {
            return bad("cluster.homes", "at most 64".into());
        }
        if c.precast && c.homes == 0 && self.variants.iter().all(|v| v.precast != Some(false)) {
            return bad("cluster.precast", "pre-casting needs homes to reach (cluster.homes > 0)".into());
        }
        if !(1..=64).contains(&c.precast_segments) {
            return bad("cluster.precast_segments", "1 to 64".into());
        }
        let t = &self.titles;
        if !(1..=1000).contains(&t.count) {
            return bad("titles.count", "1 to 1000".into());
        }
        if !within(t.seconds, 1.0, 7200.0) {
            return bad("titles.seconds", "1 to 7200".into());
        }
        if !(64..=100_000).contains(&t.bitrate_kbps) {
            return bad("titles.bitrate_kbps", "64 to 100000".into());
        }
        if !within(t.segment_seconds, 0.5, 60.0) || t.segment_seconds > t.seconds {
            return bad("titles.segment_seconds", "0.5 to 60, and no longer than the title".into());
        }
        if t.bytes().saturating_mul(u64::from(t.count)) > MAX_TITLE_BYTES {
            return bad("titles", format!("count x seconds x bitrate is over {} GiB", MAX_TITLE_BYTES >> 30));
        }
        let v = &self.viewers;
        if !(1..=MAX_VIEWERS).contains(&v.count) {
            return bad("viewers.count", format!("1 to {MAX_VIEWERS}"));
        }
        if !within(v.arrival_seconds, 0.0, MAX_RUN_SECONDS) || v.arrival_seconds >= self.max_seconds {
            return bad("viewers.arrival_seconds", "0 or more, less than max_seconds".into());
        }
        if !within(v.zipf_s, 0.0, 5.0) {
            return bad("viewers.zipf_s", "0 to 5".into());
        }
        if !within(v.watch_full, 0.0, 1.0) {
            return bad("viewers.watch_full", "a share, 0 to 1".into());
        }
        if !within(v.watch_mean, 0.01, 1.0) {
            return bad("viewers.watch_mean", "a share, 0.01 to 1".into());
        }
        if !within(v.seek_probability, 0.0, 1.0) {
            return bad("viewers.seek_probability", "0 to 1".into());
        }
        if !within(v.speed, 0.1, 100.0) {
            return bad("viewers.speed", "0.1 to 100".into());
        }
        if !(1..=64).contains(&v.buffer_segments) {
            return bad("viewers.buffer_segments", "1 to 64".into());
        }
        if !(1..=16).contains(&v.parallel) {
            return bad("viewers.parallel", "1 to 16".into());
        }
        if !(1..=1000).contains(&v.per_connection) {
            return bad("viewers.per_connection", "1 to 1000".into());
        }
        if !within(v.access_mbps, 0.0, 100_000.0) || (v.access_mbps > 0.0 && v.access_mbps < 0.1) {
            return bad("viewers.access_mbps", "0 (not modelled) or 0.1 to 100000".into());
        }
        if !within(v.access_rtt_ms, 0.0, 2000.0) {
            return bad("viewers.access_rtt_ms", "0 to 2000".into());
        }
        if self.events.len() > 16 {
            return bad("events", "at most 16".into());
        }
        for (i, e) in self.events.iter().enumerate() {
            if !within(e.at_seconds, 0.0, self.max_seconds) {
                return bad(&format!("events[{i}].at_seconds"), "0 to max_seconds".into());
            }
            let server = |prefix: &str, n: u32| {
                e.kill.strip_prefix(prefix).and_then(|k| k.parse::<u32>().ok()).is_some_and(|k| (1..=n).contains(&k))
            };
            // origin-1 ingested the titles and stays: the others are the
            // ones that may fail (a cluster's first origin is not special on
            // a shared state, but here it holds the only copy of the blobs).
            let origin = e.kill.strip_prefix("origin-").and_then(|k| k.parse::<u32>().ok()).is_some_and(|k| (2..=c.origins).contains(&k));
            if !(server("edge-", c.edges) || server("node-", c.nodes) || origin) {
                return bad(
                    &format!("events[{i}].kill"),
                    format!(
                        "'{}' is not a server of this cluster (edge-1..{}, node-1..{}, origin-2..{})",
                        e.kill, c.edges, c.nodes, c.origins
                    ),
                );
            }
            if e.kill.starts_with("edge-") && c.edges < 2 {
                return bad(&format!("events[{i}].kill"), "killing the only edge leaves nothing to fail over to".into());
            }
        }
        if self.variants.len() > MAX_VARIANTS {
            return bad("variants", format!("at most {MAX_VARIANTS}"));
        }
        for (i, var) in self.variants.iter().enumerate() {
            if var.name.is_empty() || var.name.len() > 64 || var.name.chars().any(char::is_control) {
                return bad(&format!("variants[{i}].name"), "1 to 64 printable characters".into());
            }
            if var.precast == Some(true) && c.homes == 0 {
                return bad(&format!("variants[{i}].precast"), "pre-casting needs homes (cluster.homes > 0)".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\nmax_seconds = 30\n[viewers]\ncount = 10\narrival_seconds = 2\n";

    #[test]
    fn minimal_file_gets_defaults() {
        let s = Scenario::parse(MINIMAL).unwrap();
        assert_eq!((s.cluster.nodes, s.cluster.edges, s.titles.count, s.viewers.parallel), (2, 3, 1, 2));
        assert_eq!(s.runs().len(), 1);
        // 24 s at 1 Mbit/s, 2 s segments: 250 kB rounded up to 64 KiB.
        assert_eq!(s.segment_size(), 256 << 10);
        assert_eq!(s.segment_wall(), Duration::from_secs_f64(262_144.0 * 8.0 / 1e6), "256 KiB at 1 Mbit/s");
    }

    #[test]
    fn every_shipped_scenario_parses() {
        // Relative to the package root, where cargo runs tests (not `env!`: see config/tests/examples.rs).
        let dir = std::path::Path::new("scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let s = Scenario::parse(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(p.file_stem().unwrap().to_str().unwrap(), s.name, "file name = scenario name");
            n += 1;
        }
        assert_eq!(n, BUILTIN.len(), "every file is built in");
        for (name, _) in BUILTIN {
            assert_eq!(Scenario::load(name).unwrap().name, name);
        }
        assert!(Scenario::load("no-such-scenario").unwrap_err().to_string().contains("flash-crowd"));
    }

    #[test]
    fn variants_apply_their_overrides_to_fresh_copies() {
        let text = format!(
            "{MINIMAL}[cluster]\nhomes = 2\n[[variants]]\nname = \"on\"\nprecast = true\n[[variants]]\nname = \"off\"\nprecast = false\nwarm_edges = true\n"
        );
        // Keys after [cluster] belong to it; put variants after the tables they follow.
        let runs = Scenario::parse(&text).unwrap().runs();
        assert_eq!(runs.len(), 2);
        assert!(runs[0].1.cluster.precast && !runs[0].1.cluster.warm_edges);
        assert!(!runs[1].1.cluster.precast && runs[1].1.cluster.warm_edges);
        assert!(runs.iter().all(|(_, s)| s.variants.is_empty()));
    }

    #[test]
    fn hostile_or_mistyped_files_are_refused_with_the_field() {
        let cases = [
            ("", "missing field"),
            ("name = \"t\"\nmax_seconds = 30\n[viewers]\ncount = 10\narrival_seconds = 2\nbogus = 1\n", "bogus"),
            (&MINIMAL.replace("count = 10", "count = 0"), "viewers.count"),
            (&MINIMAL.replace("count = 10", "count = 4000000000"), "viewers.count"),
            (&MINIMAL.replace("count = 10", "count = -1"), "viewers.count"),
            (&MINIMAL.replace("max_seconds = 30", "max_seconds = 1e9"), "max_seconds"),
            (&MINIMAL.replace("max_seconds = 30", "max_seconds = nan"), "max_seconds"),
            (&MINIMAL.replace("arrival_seconds = 2", "arrival_seconds = 30"), "arrival_seconds"),
            (&MINIMAL.replace("name = \"t\"", "name = \"../etc\""), "name"),
            (&format!("{MINIMAL}[[events]]\nat_seconds = 5\nkill = \"origin\"\n"), "events[0].kill"),
            (&format!("{MINIMAL}[[events]]\nat_seconds = 5\nkill = \"edge-9\"\n"), "events[0].kill"),
            (&format!("{MINIMAL}[[events]]\nat_seconds = 5\nkill = \"edge-1\"\nfailure = \"melt\"\n"), "events[0].failure"),
            (&format!("{MINIMAL}[[events]]\nat_seconds = 50\nkill = \"edge-1\"\n"), "events[0].at_seconds"),
            (&format!("{MINIMAL}[titles]\ncount = 1000\nseconds = 7200\nbitrate_kbps = 100000\n"), "titles"),
            (&format!("{MINIMAL}[titles]\nsegment_seconds = 0.01\n"), "segment_seconds"),
            (&MINIMAL.replace("arrival_seconds = 2", "arrival_seconds = 2\naccess_mbps = -3"), "access_mbps"),
            (&MINIMAL.replace("arrival_seconds = 2", "arrival_seconds = 2\naccess_rtt_ms = inf"), "access_rtt_ms"),
            (&format!("{MINIMAL}[cluster]\nprecast = true\n"), "cluster.precast"),
            (&format!("{MINIMAL}[cluster]\nedges = 1\n[[events]]\nat_seconds = 1\nkill = \"edge-1\"\n"), "only edge"),
            ("name = \"t\"\nmax_seconds = 30\n[viewers]\ncount = \"many\"\narrival_seconds = 2\n", "viewers.count"),
            ("\u{0}\u{ff}[[[", ""),
        ];
        for (text, needle) in cases {
            let e = Scenario::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
