//! `tranzcast loadtest`: a scenario against a local cluster (started here)
//! or a running one (`--cluster cluster.json`); writes report.json and
//! report.html and prints the summary.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tranzcast_loadtest::{RunOptions, Scenario};

#[derive(clap::Args, Debug)]
pub struct LoadtestArgs {
    /// A built-in scenario (flash-crowd, long-tail, failure, precast, cold-warm, smoke) or a scenario file.
    #[arg(long, default_value = "smoke")]
    scenario: String,
    /// Load a running cluster (the cluster.json of `tranzcast demo --serve`) instead of starting one.
    #[arg(long)]
    cluster: Option<PathBuf>,
    /// Directory for report.json and report.html.
    #[arg(long, default_value = "loadtest-report")]
    out: PathBuf,
    /// Directory for the local clusters' data (a temporary one by default, removed after).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override the scenario's number of viewers.
    #[arg(long)]
    viewers: Option<u32>,
    /// Print the summary as one JSON object (no progress display).
    #[arg(long)]
    json: bool,
    /// The PostgreSQL (`postgres://...`, an empty database) the origins of a
    /// scenario with `cluster.origins` > 1 share.
    #[arg(long)]
    state_url: Option<String>,
}

pub fn run(a: LoadtestArgs) -> Result<()> {
    let mut scenario = Scenario::load(&a.scenario)?;
    if let Some(n) = a.viewers {
        scenario = scenario.with_viewers(n)?;
    }
    let (work_dir, _temp) = crate::data_dir_or_temp(a.data.as_deref(), "tranzcast-loadtest-")?;
    let opts = RunOptions { work_dir, cluster_file: a.cluster.clone(), progress: !a.json, state_url: a.state_url.clone() };
    let rt = tokio::runtime::Runtime::new()?;
    // Ctrl-C stops the run (the temporary data directory is still removed).
    let report = rt.block_on(async {
        tokio::select! {
            r = tranzcast_loadtest::run(&scenario, &opts) => r.map(Some),
            () = crate::wait_for_signal() => Ok(None),
        }
    })?;
    let Some(report) = report else { bail!("interrupted: no report written") };
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let (json, html) = tranzcast_loadtest::write_report(&report, &a.out).context("writing the report")?;
    if a.json {
        let runs: Vec<serde_json::Value> = report
            .runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "viewers": r.viewers, "finished": r.finished, "failed": r.failed,
                    "mismatches": r.mismatches, "startup_ms": r.startup_ms, "open_ms": r.open_ms, "segment_ms": r.segment_ms,
                    "stalls": r.stalls, "rebuffer_ratio": r.rebuffer_ratio, "bytes_delivered": r.bytes_delivered,
                    "origin_offload": r.origin_offload, "sent_per_delivered": r.sent_per_delivered, "hit_ratio": r.hit_ratio,
                    "fetches_saved_by_coalescing": r.fetches_saved_by_coalescing, "precast_hits": r.precast_hits,
                    "marks": r.marks,
                })
            })
            .collect();
        println!("{}", serde_json::json!({"scenario": report.scenario, "report_json": json, "report_html": html, "runs": runs}));
    } else {
        println!("scenario   {}: {}", report.scenario, report.description);
        for r in &report.runs {
            println!("run        {} ({:.0} s)", r.name, r.seconds);
            println!(
                "  viewers  {} finished, {} failed of {}; every byte verified: {}",
                r.finished,
                r.failed,
                r.viewers,
                r.mismatches == 0
            );
            println!(
                "  startup  p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms (ticket validation: p50 {:.0} ms, p99 {:.0} ms)",
                r.startup_ms.p50, r.startup_ms.p95, r.startup_ms.p99, r.open_ms.p50, r.open_ms.p99
            );
            println!("  segments p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms", r.segment_ms.p50, r.segment_ms.p95, r.segment_ms.p99);
            println!("  stalls   {} ({} viewers), rebuffer ratio {:.4}", r.stalls, r.viewers_stalled, r.rebuffer_ratio);
            println!(
                "  offload  {:.4} of {} bytes delivered ({:.0} bytes left the origin)",
                r.origin_offload, r.bytes_delivered, r.origin_bytes
            );
            println!(
                "  sent     {:.2} bytes by edges, nodes and peers per byte delivered ({:.3} per byte of segment blobs fetched: \
                 the rest is the last segments' padding)",
                r.sent_per_delivered, r.sent_per_fetched
            );
            let hits: Vec<String> = r.hit_ratio.iter().map(|(k, v)| format!("{k}s {:.3}", v)).collect();
            println!(
                "  hits     {}; {:.0} fetches saved by coalescing; {} pre-cast hits",
                hits.join(", "),
                r.fetches_saved_by_coalescing,
                r.precast_hits
            );
            for (e, n) in &r.errors {
                println!("  error    {n} x {e}");
            }
        }
        println!("report     {} and {}", html.display(), json.display());
    }
    if report.runs.iter().any(|r| r.mismatches > 0) {
        bail!("some segments did not match the original");
    }
    if report.runs.iter().any(|r| r.viewers > 0 && r.failed == r.viewers) {
        bail!("every viewer failed");
    }
    Ok(())
}
