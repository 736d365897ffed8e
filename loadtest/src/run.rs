//! Running a scenario: for each variant, a fresh cluster (or the running
//! one), tickets for every viewer, pre-casts and warm-up as asked, then the
//! crowd arrives on its Poisson clock while servers are killed on theirs;
//! counters are sampled every second; the report is built at the end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cluster::{LocalCluster, Shape, order};
use crate::demand::{ViewerPlan, plan};
use crate::probe::{Counters, by_role, scrape};
use crate::report::{Mark, Percentiles, Report, RunReport, Sample};
use crate::scenario::{Failure, Scenario};
use crate::target::ClusterFile;
use crate::titles::Title;
use crate::viewer::{Live, ViewerOutcome, ViewerSetup, bytes_by_role, get, watch};
use crate::{LoadtestError, titles};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where local clusters keep their data (one directory per variant).
    pub work_dir: PathBuf,
    /// A running cluster to load instead of starting one.
    pub cluster_file: Option<PathBuf>,
    /// Show progress on the terminal.
    pub progress: bool,
    /// The PostgreSQL (an empty database) a cluster of several origins
    /// shares (`cluster.origins` > 1).
    pub state_url: Option<String>,
}

fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix:>12} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b.set_prefix(what.to_string());
    b
}

/// Runs every variant of `scenario` and returns the report.
pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<Report, LoadtestError> {
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let external = match &opts.cluster_file {
        Some(p) => {
            if !scenario.events.is_empty() {
                return Err(LoadtestError::Scenario(
                    "this scenario kills servers: that needs the cluster the load test starts (no --cluster)".into(),
                ));
            }
            let bytes = std::fs::read(p).map_err(LoadtestError::io(format!("read {}", p.display())))?;
            Some(ClusterFile::parse(&bytes)?)
        }
        None => None,
    };
    let mut runs = Vec::new();
    for (i, (name, s)) in scenario.runs().into_iter().enumerate() {
        if opts.progress {
            eprintln!("== {} ({} of {})", name, i + 1, scenario.runs().len());
        }
        let r = match &external {
            Some(c) => run_external(&name, &s, c, opts).await?,
            None => run_local(&name, &s, &opts.work_dir.join(format!("run-{i}")), opts).await?,
        };
        runs.push(r);
    }
    let target = match &opts.cluster_file {
        Some(p) => format!("running cluster ({})", p.display()),
        None => "a local cluster started for each run (loopback, real TLS, RocksDB)".into(),
    };
    Ok(Report { scenario: scenario.name.clone(), description: scenario.description.clone(), target, started, runs })
}

async fn run_local(name: &str, s: &Scenario, dir: &std::path::Path, opts: &RunOptions) -> Result<RunReport, LoadtestError> {
    std::fs::create_dir_all(dir).map_err(LoadtestError::io(format!("create {}", dir.display())))?;
    let (s2, d2, show) = (s.clone(), dir.to_path_buf(), opts.progress);
    let titles = tokio::task::spawn_blocking(move || titles::prepare(&s2, &d2.join("origin"), &d2, &bar(show, 0, "ingest")))
        .await
        .map_err(|e| LoadtestError::Ingest(e.to_string()))??;
    let ids: Vec<String> = titles.iter().map(|t| t.id.clone()).collect();
    let plans = plan(s, titles[0].segments);
    let c = &s.cluster;
    let popular = popular_titles(&plans, &titles, 10);
    if c.origins > 1 && opts.state_url.is_none() {
        return Err(LoadtestError::Cluster(format!("{} origins share a PostgreSQL: give one with --state-url", c.origins)));
    }
    let shape = Shape {
        origins: c.origins,
        nodes: c.nodes,
        edges: c.edges,
        peers: c.homes,
        precast: c.precast,
        precast_segments: c.precast_segments,
        precast_titles: popular.len() as u32,
    };
    let cluster = LocalCluster::start_shared(dir, &ids, &shape, opts.state_url.as_deref()).await?;
    let tickets = buy_tickets(&cluster.http, &cluster.origin_url(), &cluster.storefront_token, &plans, &titles, opts.progress).await?;
    if c.precast && c.homes > 0 {
        cluster.wait_precast(&popular, Duration::from_secs(60)).await?;
    }
    if c.warm_edges {
        warm(&cluster, &titles, opts.progress).await?;
    }
    let homes: Vec<Arc<tranzcast_edge::EdgeServer>> = cluster.peers.values().cloned().collect();
    let precast_segments = if c.precast { u64::from(c.precast_segments) } else { 0 };
    drive(name, s, Driver { cluster: Some(cluster), file: None }, &plans, &titles, tickets, homes, precast_segments, opts).await
}

async fn run_external(name: &str, s: &Scenario, c: &ClusterFile, opts: &RunOptions) -> Result<RunReport, LoadtestError> {
    let ca = std::fs::read(&c.ca).map_err(LoadtestError::io(format!("read the CA {}", c.ca)))?;
    let http = tranzcast_net::client::https(&ca).map_err(|e| LoadtestError::ClusterFile(e.to_string()))?;
    let mut titles = Vec::new();
    for id in &c.titles {
        let b = http
            .get(format!("{}/v1/titles/{id}/manifest", c.origin))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| LoadtestError::Network(format!("manifest of {id}: {e}")))?
            .bytes()
            .await
            .map_err(|e| LoadtestError::Network(e.to_string()))?;
        let m = tranzcast_proto::manifest::SignedManifest::decode(&b)
            .map_err(|e| LoadtestError::Network(format!("manifest of {id}: {e}")))?
            .manifest;
        titles.push(Title { id: id.clone(), segments: m.segments.len() as u64, plain: Vec::new() });
    }
    let mut s = s.clone();
    s.titles.count = titles.len() as u32;
    let plans = plan(&s, titles.iter().map(|t| t.segments).min().unwrap_or(1));
    let tickets = buy_tickets(&http, &c.origin, &c.storefront_token, &plans, &titles, opts.progress).await?;
    drive(name, &s, Driver { cluster: None, file: Some((c.clone(), http)) }, &plans, &titles, tickets, Vec::new(), 0, opts).await
}

/// The titles with the most orders (ties by id), as the origin ranks them for pre-casts.
fn popular_titles(plans: &[ViewerPlan], titles: &[Title], n: usize) -> Vec<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for p in plans {
        *count.entry(titles[p.title].id.as_str()).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = count.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked.into_iter().take(n).map(|(t, _)| t.to_string()).collect()
}

async fn buy_tickets(
    http: &reqwest::Client,
    origin: &str,
    token: &str,
    plans: &[ViewerPlan],
    titles: &[Title],
    show: bool,
) -> Result<Vec<String>, LoadtestError> {
    let b = bar(show, plans.len() as u64, "tickets");
    let out: Vec<Result<String, LoadtestError>> = futures_util::stream::iter(plans.iter().map(|p| {
        let b = b.clone();
        async move {
            let t = order(http, origin, token, &titles[p.title].id, Some(1)).await;
            b.inc(1);
            t
        }
    }))
    .buffered(16)
    .collect()
    .await;
    b.finish_and_clear();
    out.into_iter().collect()
}

/// Every edge fetches every segment of every title once (from its nodes).
async fn warm(cluster: &LocalCluster, titles: &[Title], show: bool) -> Result<(), LoadtestError> {
    let manifests: Vec<Vec<tranzcast_proto::BlobAddress>> = {
        let mut v = Vec::new();
        for t in titles {
            let b = cluster
                .http
                .get(format!("{}/v1/titles/{}/manifest", cluster.origin_url(), t.id))
                .send()
                .await
                .map_err(|e| LoadtestError::Network(e.to_string()))?
                .bytes()
                .await
                .map_err(|e| LoadtestError::Network(e.to_string()))?;
            v.push(
                tranzcast_proto::manifest::SignedManifest::decode(&b).map_err(|e| LoadtestError::Network(e.to_string()))?.manifest.segments,
            );
        }
        v
    };
    let urls: Vec<String> = cluster
        .edges
        .values()
        .flat_map(|e| {
            let base = format!("https://localhost:{}", e.https_addr().port());
            manifests.iter().flatten().map(move |a| format!("{base}/v1/blobs/{a}"))
        })
        .collect();
    let b = bar(show, urls.len() as u64, "warm edges");
    let results: Vec<Result<(), String>> = futures_util::stream::iter(urls.into_iter().map(|u| {
        let (http, token, b) = (cluster.http.clone(), cluster.cluster_token.clone(), b.clone());
        async move {
            let r =
                http.get(&u).bearer_auth(token).send().await.and_then(reqwest::Response::error_for_status).map_err(|e| e.to_string())?;
            r.bytes().await.map_err(|e| e.to_string())?;
            b.inc(1);
            Ok(())
        }
    }))
    .buffer_unordered(8)
    .collect()
    .await;
    b.finish_and_clear();
    results.into_iter().collect::<Result<Vec<()>, String>>().map_err(|e| LoadtestError::Cluster(format!("warming the edges: {e}")))?;
    Ok(())
}

struct Driver {
    cluster: Option<LocalCluster>,
    file: Option<(ClusterFile, reqwest::Client)>,
}

impl Driver {
    fn servers(&self) -> BTreeMap<String, (String, String)> {
        match (&self.cluster, &self.file) {
            (Some(c), _) => c.servers(),
            (None, Some((f, _))) => f.servers.clone(),
            _ => BTreeMap::new(),
        }
    }
    fn http(&self) -> reqwest::Client {
        match (&self.cluster, &self.file) {
            (Some(c), _) => c.http.clone(),
            (None, Some((_, h))) => h.clone(),
            _ => reqwest::Client::new(),
        }
    }
    fn origin(&self) -> String {
        match (&self.cluster, &self.file) {
            (Some(c), _) => c.origin_list(),
            (None, Some((f, _))) => f.origin.clone(),
            _ => String::new(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    name: &str,
    s: &Scenario,
    mut driver: Driver,
    plans: &[ViewerPlan],
    titles: &[Title],
    tickets: Vec<String>,
    homes: Vec<Arc<tranzcast_edge::EdgeServer>>,
    precast_segments: u64,
    opts: &RunOptions,
) -> Result<RunReport, LoadtestError> {
    let http = driver.http();
    let servers = driver.servers();
    let mut baseline = BTreeMap::new();
    scrape(&http, &servers, &mut baseline).await;
    let live = Arc::new(Live::default());
    let run_start = Instant::now();
    let deadline = run_start + Duration::from_secs_f64(s.max_seconds);
    // Viewers share HTTP clients (connection pools) in groups, as homes and NATs do.
    let per = s.viewers.per_connection as usize;
    let groups = plans.len().div_ceil(per);
    let ca = match (&driver.cluster, &driver.file) {
        (Some(c), _) => c.ca_pem.clone().into_bytes(),
        (None, Some((f, _))) => std::fs::read(&f.ca).map_err(LoadtestError::io("read the CA"))?,
        _ => Vec::new(),
    };
    let clients: Vec<reqwest::Client> = (0..groups)
        .map(|_| tranzcast_net::client::https(&ca))
        .collect::<Result<_, _>>()
        .map_err(|e| LoadtestError::Network(e.to_string()))?;
    // The sampler: one sample per second, scraping every server.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let sampler = {
        let (live, http, servers) = (live.clone(), http.clone(), servers.clone());
        let mut last = baseline.clone();
        tokio::spawn(async move {
            let mut series = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            // A scrape that took long (busy servers) delays the next sample
            // rather than firing a burst of them; rates use the real interval.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut bytes, mut origin, mut slow, mut at) = (0u64, origin_out(&last), 0u64, 0.0f64);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.changed() => break,
                }
                scrape(&http, &servers, &mut last).await;
                let (b, o, sl, t) = (get(&live.bytes), origin_out(&last), get(&live.slow), run_start.elapsed().as_secs_f64());
                let dt = (t - at).max(1e-3);
                series.push(Sample {
                    t,
                    active: get(&live.started) - get(&live.ended),
                    stalled: get(&live.stalled),
                    delivered_mbps: (b - bytes) as f64 * 8.0 / 1e6 / dt,
                    origin_mbps: (o - origin).max(0.0) * 8.0 / 1e6 / dt,
                    slow_fetches: sl - slow,
                });
                (bytes, origin, slow, at) = (b, o, sl, t);
            }
            (series, last)
        })
    };
    let progress = bar(opts.progress, plans.len() as u64, "viewers");
    let mut viewers = tokio::task::JoinSet::new();
    for (p, ticket) in plans.iter().cloned().zip(tickets) {
        let setup = ViewerSetup {
            // Viewers start at different origins (a DNS or load balancer's
            // spread): a killed one is met by some and failed over from.
            origin: crate::cluster::rotated(&driver.origin(), p.id),
            ticket,
            http: clients[p.id / per].clone(),
            home: (!homes.is_empty()).then(|| homes[p.id % homes.len()].clone()),
            precast_segments,
            segment_wall: s.segment_wall(),
            buffer: u64::from(s.viewers.buffer_segments),
            parallel: s.viewers.parallel as usize,
            access: (s.viewers.access_mbps, Duration::from_secs_f64(s.viewers.access_rtt_ms / 1000.0)),
        };
        let (title, live) = (titles[p.title].clone(), live.clone());
        viewers.spawn(async move {
            tokio::time::sleep_until((run_start + p.arrival).into()).await;
            watch(p, &title, setup, run_start, deadline, &live).await
        });
    }
    let mut events: Vec<_> = s.events.clone();
    events.sort_by(|a, b| a.at_seconds.total_cmp(&b.at_seconds));
    let mut events = events.into_iter().peekable();
    let mut marks = Vec::new();
    let mut outcomes: Vec<ViewerOutcome> = Vec::with_capacity(plans.len());
    let mut ui = tokio::time::interval(Duration::from_millis(250));
    loop {
        let next_event = events.peek().map(|e| run_start + Duration::from_secs_f64(e.at_seconds));
        tokio::select! {
            r = viewers.join_next() => match r {
                Some(Ok(o)) => { outcomes.push(o); progress.inc(1); }
                Some(Err(e)) => return Err(LoadtestError::Cluster(format!("a viewer task failed: {e}"))),
                None => break,
            },
            () = async { match next_event { Some(t) => tokio::time::sleep_until(t.into()).await, None => std::future::pending().await } } => {
                if let Some(e) = events.next() {
                    // Marked when it happens (a crash's cleanup can take a moment after).
                    let t = run_start.elapsed().as_secs_f64();
                    if let Some(c) = driver.cluster.as_mut() {
                        match e.failure {
                            Failure::Crash => c.kill(&e.kill).await?,
                            Failure::Hang => c.hang(&e.kill)?,
                        }
                    }
                    tracing::info!(server = %e.kill, failure = e.failure.verb(), "server failed");
                    marks.push(Mark { t, what: format!("{} {}", e.failure.verb(), e.kill) });
                }
            },
            _ = ui.tick() => progress.set_message(format!(
                "active {} playing {} stalled {} failed {} | {:.0} MB verified",
                get(&live.started) - get(&live.ended), get(&live.playing) , get(&live.stalled), get(&live.failed), get(&live.bytes) as f64 / 1e6
            )),
        }
    }
    progress.finish_and_clear();
    let seconds = run_start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let (series, mut last) = sampler.await.map_err(|e| LoadtestError::Cluster(e.to_string()))?;
    scrape(&http, &servers, &mut last).await;
    let tiers = by_role(&baseline, &last);
    // The homes are shared with the viewers' sessions: the last handles go
    // here, so that shutdown stops them too.
    drop(homes);
    if let Some(c) = driver.cluster.take() {
        c.shutdown().await;
    }
    Ok(summarize(name, seconds, outcomes, tiers, marks, series))
}

fn origin_out(m: &BTreeMap<String, Counters>) -> f64 {
    m.get("origin").map_or(0.0, |c| c.bytes_out + c.pushed)
}

fn summarize(
    name: &str,
    seconds: f64,
    mut outcomes: Vec<ViewerOutcome>,
    tiers: BTreeMap<String, Counters>,
    marks: Vec<Mark>,
    series: Vec<Sample>,
) -> RunReport {
    outcomes.sort_by_key(|o| o.id);
    let startup: Vec<f64> = outcomes.iter().filter_map(|o| o.startup_ms).collect();
    let mut segment: Vec<f64> = outcomes.iter().flat_map(|o| o.segment_ms.iter().copied()).collect();
    segment.sort_by(f64::total_cmp);
    let seeks: Vec<f64> = outcomes.iter().flat_map(|o| o.seek_ms.iter().copied()).collect();
    let mut errors = BTreeMap::new();
    for o in &outcomes {
        if let Some(e) = &o.error {
            // Group by kind: the text before the first digit-bearing detail.
            let kind: String = e.split(": ").take(2).collect::<Vec<_>>().join(": ");
            *errors.entry(kind).or_default() += 1;
        }
    }
    // Folded from +0.0 (a float sum starts at -0.0, which prints as "-0").
    let stall_s = outcomes.iter().flat_map(|o| o.stalls.iter().map(|s| s.1)).fold(0.0, |a, b| a + b);
    let play_s = outcomes.iter().map(|o| o.play_s).fold(0.0, |a, b| a + b);
    let bytes: u64 = outcomes.iter().map(|o| o.bytes).sum();
    let wire: u64 = outcomes.iter().map(|o| o.wire_bytes).sum();
    let sent: f64 = tiers.iter().filter(|(r, _)| r.as_str() != "origin").map(|(_, c)| c.bytes_out).sum();
    let origin_bytes = tiers.get("origin").map_or(0.0, |c| c.bytes_out + c.pushed);
    let active: Vec<&Sample> = series.iter().filter(|s| s.active > 0).collect();
    let hit_ratio = tiers
        .iter()
        .filter(|(r, c)| matches!(r.as_str(), "edge" | "node") && c.hits + c.misses > 0.0)
        .map(|(r, c)| (r.clone(), c.hits / (c.hits + c.misses)))
        .collect();
    let thin = |v: &[f64]| -> Vec<f64> {
        let step = (v.len() / 5000).max(1);
        v.iter().step_by(step).copied().collect()
    };
    let mut startup_sorted = startup.clone();
    startup_sorted.sort_by(f64::total_cmp);
    RunReport {
        name: name.to_string(),
        seconds,
        viewers: outcomes.len(),
        finished: outcomes.iter().filter(|o| o.finished).count(),
        failed: outcomes.iter().filter(|o| o.error.is_some()).count(),
        errors,
        startup_ms: Percentiles::of(&startup),
        open_ms: Percentiles::of(&outcomes.iter().filter_map(|o| o.open_ms).collect::<Vec<_>>()),
        segment_ms: Percentiles::of(&segment),
        seek_ms: Percentiles::of(&seeks),
        stalls: outcomes.iter().map(|o| o.stalls.len()).sum(),
        viewers_stalled: outcomes.iter().filter(|o| !o.stalls.is_empty()).count(),
        rebuffer_ratio: if stall_s + play_s > 0.0 { stall_s / (stall_s + play_s) } else { 0.0 },
        bytes_delivered: bytes,
        mismatches: outcomes.iter().map(|o| o.mismatches).sum(),
        mean_mbps: if active.is_empty() { 0.0 } else { active.iter().map(|s| s.delivered_mbps).sum::<f64>() / active.len() as f64 },
        peak_mbps: series.iter().map(|s| s.delivered_mbps).fold(0.0, f64::max),
        bytes_by_source: bytes_by_role(&outcomes),
        origin_offload: if bytes > 0 { 1.0 - origin_bytes / bytes as f64 } else { 0.0 },
        origin_bytes,
        sent_per_delivered: if bytes > 0 { sent / bytes as f64 } else { 0.0 },
        sent_per_fetched: if wire > 0 { sent / wire as f64 } else { 0.0 },
        fetches_saved_by_coalescing: tiers.values().map(|c| c.coalesced).sum(),
        upstream_fetches: tiers.values().map(|c| c.upstream_fetches).sum(),
        hit_ratio,
        tiers,
        precast_hits: outcomes.iter().map(|o| o.precast_hits).sum(),
        precast_starts: outcomes.iter().filter(|o| o.precast_hits > 0).count(),
        marks,
        series,
        startup_samples: thin(&startup_sorted),
        segment_samples: thin(&segment),
        stall_events: outcomes.iter().flat_map(|o| o.stalls.iter().copied()).collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn outcome(id: usize, bytes: u64, startup: Option<f64>, stalls: Vec<(f64, f64)>, play_s: f64) -> ViewerOutcome {
        ViewerOutcome {
            id,
            title: "lt-000".into(),
            arrival_s: 0.0,
            startup_ms: startup,
            open_ms: startup.map(|s| s / 2.0),
            stalls,
            seek_ms: Vec::new(),
            play_s,
            rebuffer_ratio: 0.0,
            segments_played: 1,
            segments_fetched: 1,
            bytes,
            wire_bytes: bytes + bytes / 4,
            by_role: BTreeMap::from([("edge".to_string(), bytes)]),
            segment_ms: vec![10.0],
            precast_hits: u64::from(id == 0),
            mismatches: 0,
            error: startup.is_none().then(|| "open: network: refused".to_string()),
            finished: startup.is_some(),
        }
    }

    #[test]
    fn the_summary_computes_offload_hits_and_rebuffering_from_its_inputs() {
        let outcomes = vec![
            outcome(1, 600, Some(20.0), vec![(5.0, 1.0)], 9.0),
            outcome(0, 400, Some(10.0), vec![], 10.0),
            outcome(2, 0, None, vec![], 0.0),
        ];
        let c = |role: &str, bytes_out: f64, hits: f64, misses: f64| Counters {
            role: role.into(),
            bytes_out,
            hits,
            misses,
            ..Counters::default()
        };
        let tiers = BTreeMap::from([
            ("edge".to_string(), c("edge", 900.0, 9.0, 1.0)),
            ("node".to_string(), c("node", 300.0, 4.0, 0.0)),
            ("origin".to_string(), Counters { pushed: 5.0, ..c("origin", 5.0, 0.0, 0.0) }),
        ]);
        let r = summarize("x", 30.0, outcomes, tiers, Vec::new(), Vec::new());
        assert_eq!((r.viewers, r.finished, r.failed), (3, 2, 1));
        assert_eq!(r.errors.get("open: network"), Some(&1), "{:?}", r.errors);
        assert_eq!(r.bytes_delivered, 1000);
        assert!((r.origin_offload - 0.99).abs() < 1e-12, "1 - (5 + 5) / 1000");
        assert!((r.sent_per_delivered - 1.2).abs() < 1e-12, "(900 + 300) / 1000");
        assert!((r.sent_per_fetched - 0.96).abs() < 1e-12, "(900 + 300) / 1250: padding is not waste");
        assert_eq!((r.hit_ratio["edge"], r.hit_ratio["node"]), (0.9, 1.0));
        assert!((r.rebuffer_ratio - 1.0 / 20.0).abs() < 1e-12, "1 s stalled of 1 + 19");
        assert_eq!((r.stalls, r.viewers_stalled, r.precast_hits, r.precast_starts), (1, 1, 1, 1));
        assert_eq!(r.startup_samples, vec![10.0, 20.0], "sorted, failed viewers left out");
    }

    #[test]
    fn popular_titles_rank_like_the_origin() {
        let titles: Vec<Title> = (0..3).map(|i| Title { id: format!("lt-00{i}"), segments: 1, plain: Vec::new() }).collect();
        let p = |title| ViewerPlan { id: 0, arrival: Duration::ZERO, title, watch: 1, seek: None };
        let plans = vec![p(2), p(1), p(2), p(1), p(0)];
        assert_eq!(popular_titles(&plans, &titles, 2), vec!["lt-001", "lt-002"], "ties by id");
        assert_eq!(popular_titles(&plans, &titles, 10).len(), 3);
    }
}
