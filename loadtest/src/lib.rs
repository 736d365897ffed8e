//! Load tests: thousands of simulated viewers with realistic demand against
//! a Tranzcast cluster, each one a real smart client (ticket, pulses,
//! multi-source fetch, blake3 verification, decryption); scenarios as files;
//! a report with plots.
//!
//! Pure parts: [`scenario`] (files, bounds), [`demand`] (Poisson arrivals,
//! Zipf popularity, watch times, seeks), [`playout`] (the player's buffer,
//! stalls and seeks), [`probe::sum`] (Prometheus text), [`target`]
//! (`cluster.json`), [`report`] (figures, HTML and SVG). I/O: [`cluster`]
//! (a whole cluster on loopback, in this process), [`titles`] (ingest),
//! [`viewer`] (one viewer), [`run`] (a scenario from start to report).
//! Guide: `docs/loadtest.md`.

#[cfg(feature = "run")]
pub mod cache;
#[cfg(feature = "run")]
pub mod cluster;
pub mod demand;
mod error;
#[cfg(feature = "run")]
pub mod floor;
pub mod playout;
pub mod probe;
#[cfg(feature = "run")]
pub mod report;
#[cfg(feature = "run")]
pub mod run;
pub mod scenario;
pub mod target;
#[cfg(feature = "run")]
pub mod titles;
#[cfg(feature = "run")]
pub mod viewer;

pub use error::LoadtestError;
#[cfg(feature = "run")]
pub use report::Report;
#[cfg(feature = "run")]
pub use run::{RunOptions, run};
pub use scenario::Scenario;

/// Writes `report.json` and `report.html` into `dir`; returns their paths.
#[cfg(feature = "run")]
pub fn write_report(report: &Report, dir: &std::path::Path) -> Result<(std::path::PathBuf, std::path::PathBuf), LoadtestError> {
    std::fs::create_dir_all(dir).map_err(LoadtestError::io(format!("create {}", dir.display())))?;
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    let j = serde_json::to_vec_pretty(report).map_err(|e| LoadtestError::Report(e.to_string()))?;
    std::fs::write(&json, j).map_err(LoadtestError::io(format!("write {}", json.display())))?;
    std::fs::write(&html, report.html()?).map_err(LoadtestError::io(format!("write {}", html.display())))?;
    Ok((json, html))
}
