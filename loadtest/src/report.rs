//! The report: `report.json` (every figure, for machines and for comparing
//! runs) and `report.html` (tables and SVG plots drawn here with plotters,
//! self-contained: readable offline, no script).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;
use serde::Serialize;

use crate::LoadtestError;
use crate::probe::Counters;

/// Percentiles of a sample.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// How many values.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Of `values` (nearest-rank percentiles; empty gives zeros).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            count: v.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            max: v[v.len() - 1],
        }
    }
}

/// One second of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Sample {
    /// Seconds since the run's start.
    pub t: f64,
    /// Viewers that pressed play and have not ended.
    pub active: u64,
    /// Viewers stalled.
    pub stalled: u64,
    /// Segment fetches over half a second that ended since the last sample
    /// (samples are a second apart unless scraping busy servers took longer).
    pub slow_fetches: u64,
    /// Verified plaintext delivered to players since the last sample, Mbit/s.
    pub delivered_mbps: f64,
    /// Bytes leaving the origin since the last sample, Mbit/s.
    pub origin_mbps: f64,
}

/// Something that happened to the cluster during a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    /// Seconds since the run's start.
    pub t: f64,
    /// What.
    pub what: String,
}

/// One run (a variant) of a scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// The variant's name (the scenario's when there are none).
    pub name: String,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Viewers simulated.
    pub viewers: usize,
    /// Viewers who played all they meant to.
    pub finished: usize,
    /// Viewers who failed (the reasons, with counts, in `errors`).
    pub failed: usize,
    /// Error reasons by count.
    pub errors: BTreeMap<String, usize>,
    /// Startup: press play to first picture, ms.
    pub startup_ms: Percentiles,
    /// Of the startup: opening the session (the ticket validated at the origin), ms.
    pub open_ms: Percentiles,
    /// Segment fetch time, ms.
    pub segment_ms: Percentiles,
    /// Wait after a seek, ms.
    pub seek_ms: Percentiles,
    /// Stall events.
    pub stalls: usize,
    /// Viewers who stalled at least once.
    pub viewers_stalled: usize,
    /// Stall time over stall plus play time, all viewers together.
    pub rebuffer_ratio: f64,
    /// Verified plaintext bytes delivered.
    pub bytes_delivered: u64,
    /// Segments whose plaintext differs from the original (0: every byte verified).
    pub mismatches: u64,
    /// Mean delivered throughput while viewers were active, Mbit/s.
    pub mean_mbps: f64,
    /// Peak delivered throughput (one second), Mbit/s.
    pub peak_mbps: f64,
    /// Bytes delivered by the role of the source (edge, node, peer, local).
    pub bytes_by_source: BTreeMap<String, u64>,
    /// What each tier's servers counted during the run.
    pub tiers: BTreeMap<String, Counters>,
    /// Blob requests served from the tier's own store, by tier.
    pub hit_ratio: BTreeMap<String, f64>,
    /// Bytes that left the origin during the run (answers and pushes).
    pub origin_bytes: f64,
    /// 1 - origin bytes / bytes delivered.
    pub origin_offload: f64,
    /// Bytes edges, nodes and peers sent (to viewers and to each other) per
    /// verified byte delivered: raced first segments, transfers abandoned
    /// for a faster source, fills of edges from nodes. 1.0 would be none.
    pub sent_per_delivered: f64,
    /// The same per byte of segment blobs fetched (as the servers send
    /// them): what transfers wasted, without the format's own cost (each
    /// title's last segment is padded to the segment size).
    pub sent_per_fetched: f64,
    /// Requests that joined a fetch already under way at an edge or node
    /// (each one an upstream fetch saved).
    pub fetches_saved_by_coalescing: f64,
    /// Upstream fetches made by edges and nodes.
    pub upstream_fetches: f64,
    /// Segments read from viewers' homes that had been pre-cast there.
    pub precast_hits: u64,
    /// Viewers who read at least one pre-cast segment at home.
    pub precast_starts: usize,
    /// Things done to the cluster (kills).
    pub marks: Vec<Mark>,
    /// One sample per second.
    pub series: Vec<Sample>,
    /// Every startup time, ms, sorted (for the distribution plots).
    pub startup_samples: Vec<f64>,
    /// Segment times, ms, sorted (at most 5000, evenly picked).
    pub segment_samples: Vec<f64>,
    /// Stalls: (seconds since the run's start, length in seconds).
    pub stall_events: Vec<(f64, f64)>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Its description.
    pub description: String,
    /// Where it ran: "local cluster" or the cluster file.
    pub target: String,
    /// Unix seconds at the start.
    pub started: u64,
    /// The runs, in the scenario's order.
    pub runs: Vec<RunReport>,
}

fn report_err(e: impl std::fmt::Display) -> LoadtestError {
    LoadtestError::Report(e.to_string())
}

const W: u32 = 760;
const H: u32 = 340;

/// A line chart as SVG: every series, a legend, vertical marks.
fn lines(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    marks: &[Mark],
    log_x: bool,
) -> Result<String, LoadtestError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(report_err)?;
        let pts = series.iter().flat_map(|(_, p)| p.iter());
        let xmax = pts.clone().map(|p| p.0).fold(0.0f64, f64::max).max(marks.iter().map(|m| m.t).fold(0.0, f64::max)) * 1.02 + 1e-9;
        let ymax = pts.clone().map(|p| p.1).fold(0.0f64, f64::max) * 1.1 + 1e-9;
        let mut b = ChartBuilder::on(&root);
        b.caption(title, ("sans-serif", 18)).margin(12).x_label_area_size(40).y_label_area_size(60);
        if log_x {
            let xmin = pts.map(|p| p.0).filter(|x| *x > 0.0).fold(f64::INFINITY, f64::min).min(xmax / 10.0).max(1e-3);
            let mut chart = b.build_cartesian_2d((xmin..xmax.max(xmin * 10.0)).log_scale(), 0f64..ymax).map_err(report_err)?;
            // Only the points a log scale can show; no marks.
            draw_lines(&mut chart, (x_desc, y_desc), series, |q| q.0 > 0.0, &[], ymax, SeriesLabelPosition::LowerRight)?;
        } else {
            let mut chart = b.build_cartesian_2d(0f64..xmax, 0f64..ymax).map_err(report_err)?;
            draw_lines(&mut chart, (x_desc, y_desc), series, |_| true, marks, ymax, SeriesLabelPosition::UpperRight)?;
        }
        root.present().map_err(report_err)?;
    }
    Ok(svg)
}

/// Draws [`lines`]' chart on either x scale: the mesh, every series (the
/// points `keep` keeps), each mark as a red line up to `ymax`, the legend.
fn draw_lines<'a, DB, X>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    (x_desc, y_desc): (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
    keep: impl Fn(&(f64, f64)) -> bool,
    marks: &[Mark],
    ymax: f64,
    legend: SeriesLabelPosition,
) -> Result<(), LoadtestError>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(report_err)?;
    for (i, (name, p)) in series.iter().enumerate() {
        let c = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(p.iter().copied().filter(&keep), c.stroke_width(2)))
            .map_err(report_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    for m in marks {
        chart.draw_series(LineSeries::new(vec![(m.t, 0.0), (m.t, ymax)], RED.stroke_width(2))).map_err(report_err)?;
        chart
            .draw_series(std::iter::once(Text::new(m.what.clone(), (m.t, ymax * 0.95), ("sans-serif", 13).into_font().color(&RED))))
            .map_err(report_err)?;
    }
    chart.configure_series_labels().position(legend).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(report_err)?;
    Ok(())
}

/// A bar chart as SVG, values printed on the bars.
fn bars(title: &str, y_desc: &str, bars: &[(String, f64)], unit: &str, ymax: Option<f64>) -> Result<String, LoadtestError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(report_err)?;
        let top = ymax.unwrap_or_else(|| bars.iter().map(|b| b.1).fold(0.0, f64::max) * 1.15 + 1e-9);
        let n = bars.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(10)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..top)
            .map_err(report_err)?;
        chart.configure_mesh().disable_x_mesh().x_labels(0).y_desc(y_desc).draw().map_err(report_err)?;
        for (i, (name, v)) in bars.iter().enumerate() {
            let x = i as f64;
            let c = Palette99::pick(i).to_rgba();
            chart.draw_series(std::iter::once(Rectangle::new([(x - 0.35, 0.0), (x + 0.35, *v)], c.filled()))).map_err(report_err)?;
            let label = format!("{name}: {}{unit}", fmt_num(*v));
            chart
                .draw_series(std::iter::once(Text::new(label, (x - 0.33, (*v).min(top * 0.9) + top * 0.04), ("sans-serif", 13))))
                .map_err(report_err)?;
        }
        root.present().map_err(report_err)?;
    }
    Ok(svg)
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Points of an empirical CDF (x = value, y = share at or below), thinned to at most 400.
fn cdf(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let step = (n / 400).max(1);
    let mut p: Vec<(f64, f64)> = sorted.iter().enumerate().step_by(step).map(|(i, v)| (*v, (i + 1) as f64 / n as f64)).collect();
    if let Some(last) = sorted.last() {
        p.push((*last, 1.0));
    }
    p
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Report {
    /// `report.html`: summary tables and every plot.
    pub fn html(&self) -> Result<String, LoadtestError> {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tranzcast load test: {0}</title><style>\
             body{{font-family:sans-serif;max-width:1600px;margin:1em auto;padding:0 1em;color:#222}}\
             table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}\
             th:first-child,td:first-child{{text-align:left}}.plots{{display:flex;flex-wrap:wrap;gap:8px}}\
             .plots div{{border:1px solid #ddd}}</style></head><body><h1>Load test: {0}</h1><p>{1}</p><p>Target: {2}; started {3} (Unix s).</p>",
            esc(&self.scenario),
            esc(&self.description),
            esc(&self.target),
            self.started
        );
        h.push_str("<h2>Summary</h2><table><tr><th>figure</th>");
        for r in &self.runs {
            let _ = write!(h, "<th>{}</th>", esc(&r.name));
        }
        h.push_str("</tr>");
        type Row = (&'static str, fn(&RunReport) -> String);
        let rows: [Row; 25] = [
            ("viewers", |r| r.viewers.to_string()),
            ("finished", |r| r.finished.to_string()),
            ("failed", |r| r.failed.to_string()),
            ("every byte verified (mismatching segments)", |r| format!("{} ({})", r.mismatches == 0, r.mismatches)),
            ("startup p50 / p95 / p99, ms", |r| format!("{:.0} / {:.0} / {:.0}", r.startup_ms.p50, r.startup_ms.p95, r.startup_ms.p99)),
            ("of which ticket validation p50 / p95 / p99, ms", |r| {
                format!("{:.0} / {:.0} / {:.0}", r.open_ms.p50, r.open_ms.p95, r.open_ms.p99)
            }),
            ("segment fetch p50 / p95 / p99, ms", |r| {
                format!("{:.0} / {:.0} / {:.0}", r.segment_ms.p50, r.segment_ms.p95, r.segment_ms.p99)
            }),
            ("seek wait p50 / p95 (seeks), ms", |r| format!("{:.0} / {:.0} ({})", r.seek_ms.p50, r.seek_ms.p95, r.seek_ms.count)),
            ("stalls (viewers who stalled)", |r| format!("{} ({})", r.stalls, r.viewers_stalled)),
            ("rebuffer ratio", |r| format!("{:.4}", r.rebuffer_ratio)),
            ("bytes delivered", |r| r.bytes_delivered.to_string()),
            ("throughput mean / peak, Mbit/s", |r| format!("{:.0} / {:.0}", r.mean_mbps, r.peak_mbps)),
            ("origin bytes during the run", |r| format!("{:.0}", r.origin_bytes)),
            ("origin offload", |r| format!("{:.4}", r.origin_offload)),
            ("bytes sent by edges, nodes, peers per byte delivered", |r| format!("{:.2}", r.sent_per_delivered)),
            ("the same per byte of segment blobs fetched (padding aside)", |r| format!("{:.3}", r.sent_per_fetched)),
            ("edge hit ratio", |r| format!("{:.3}", r.hit_ratio.get("edge").copied().unwrap_or(0.0))),
            ("node hit ratio", |r| format!("{:.3}", r.hit_ratio.get("node").copied().unwrap_or(0.0))),
            ("upstream fetches (edges, nodes)", |r| format!("{:.0}", r.upstream_fetches)),
            ("fetches saved by coalescing", |r| format!("{:.0}", r.fetches_saved_by_coalescing)),
            ("pre-cast hits (segments)", |r| r.precast_hits.to_string()),
            ("viewers who read a pre-cast segment at home", |r| r.precast_starts.to_string()),
            ("bytes by source", |r| r.bytes_by_source.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")),
            ("events", |r| r.marks.iter().map(|m| format!("{:.1} s {}", m.t, m.what)).collect::<Vec<_>>().join("; ")),
            ("run time, s", |r| format!("{:.1}", r.seconds)),
        ];
        for (name, f) in rows {
            let _ = write!(h, "<tr><td>{name}</td>");
            for r in &self.runs {
                let _ = write!(h, "<td>{}</td>", esc(&f(r)));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        let errors: BTreeMap<&str, usize> = self.runs.iter().flat_map(|r| r.errors.iter().map(|(k, v)| (k.as_str(), *v))).collect();
        if !errors.is_empty() {
            h.push_str("<h3>Errors</h3><ul>");
            for (e, n) in errors {
                let _ = write!(h, "<li>{n} x {}</li>", esc(e));
            }
            h.push_str("</ul>");
        }
        h.push_str("<h2>Distributions</h2><div class=\"plots\">");
        let startup: Vec<(String, Vec<(f64, f64)>)> = self.runs.iter().map(|r| (r.name.clone(), cdf(&r.startup_samples))).collect();
        let _ = write!(
            h,
            "<div>{}</div>",
            lines("Startup time (CDF)", "ms from pressing play to the first picture (log)", "share of viewers", &startup, &[], true)?
        );
        let seg: Vec<(String, Vec<(f64, f64)>)> = self.runs.iter().map(|r| (r.name.clone(), cdf(&r.segment_samples))).collect();
        let _ = write!(
            h,
            "<div>{}</div>",
            lines("Segment fetch time (CDF)", "ms from asking to verified plaintext (log)", "share of segments", &seg, &[], true)?
        );
        h.push_str("</div>");
        for r in &self.runs {
            let _ = write!(h, "<h2>Run: {}</h2><div class=\"plots\">", esc(&r.name));
            let t = |f: fn(&Sample) -> f64| r.series.iter().map(|s| (s.t, f(s))).collect::<Vec<_>>();
            let through =
                [("delivered to players".to_string(), t(|s| s.delivered_mbps)), ("leaving the origin".to_string(), t(|s| s.origin_mbps))];
            let _ = write!(h, "<div>{}</div>", lines("Throughput over time", "seconds", "Mbit/s", &through, &r.marks, false)?);
            let viewers = [
                ("active".to_string(), t(|s| s.active as f64)),
                ("stalled".to_string(), t(|s| s.stalled as f64)),
                ("fetches over 0.5 s (per s)".to_string(), t(|s| s.slow_fetches as f64)),
            ];
            let _ = write!(h, "<div>{}</div>", lines("Viewers over time", "seconds", "viewers", &viewers, &r.marks, false)?);
            let mut hits: Vec<(String, f64)> = r.hit_ratio.iter().map(|(k, v)| (format!("{k}s"), *v)).collect();
            hits.push(("origin offload".into(), r.origin_offload));
            let _ = write!(h, "<div>{}</div>", bars("Hit ratio per tier, and origin offload", "share", &hits, "", Some(1.05))?);
            let total = r.bytes_delivered.max(1) as f64;
            let src: Vec<(String, f64)> = r.bytes_by_source.iter().map(|(k, v)| (k.clone(), *v as f64 / total * 100.0)).collect();
            let _ = write!(h, "<div>{}</div>", bars("Where viewers' bytes came from", "% of bytes delivered", &src, "%", Some(105.0))?);
            let mb = |v: f64| v / 1e6;
            let mut out: Vec<(String, f64)> = vec![("delivered".into(), mb(r.bytes_delivered as f64))];
            for (role, c) in &r.tiers {
                out.push((format!("{role}s sent"), mb(c.bytes_out + c.pushed)));
            }
            let _ = write!(h, "<div>{}</div>", bars("Offload: bytes sent by each tier during the run", "MB", &out, " MB", None)?);
            let stalls: Vec<(f64, f64)> = r.stall_events.iter().map(|(t, len)| (*t, len * 1000.0)).collect();
            let _ = write!(
                h,
                "<div>{}</div>",
                scatter("Stalls: when they began and how long they lasted", "seconds", "stall, ms", &stalls, &r.marks)?
            );
            h.push_str("</div>");
        }
        h.push_str("</body></html>\n");
        Ok(h)
    }
}

/// A scatter plot as SVG with vertical marks.
fn scatter(title: &str, x_desc: &str, y_desc: &str, pts: &[(f64, f64)], marks: &[Mark]) -> Result<String, LoadtestError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(report_err)?;
        let xmax = pts.iter().map(|p| p.0).chain(marks.iter().map(|m| m.t)).fold(1.0f64, f64::max) * 1.05;
        let ymax = pts.iter().map(|p| p.1).fold(10.0f64, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(report_err)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(report_err)?;
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, BLUE.mix(0.5).filled()))).map_err(report_err)?;
        for m in marks {
            chart.draw_series(LineSeries::new(vec![(m.t, 0.0), (m.t, ymax)], RED.stroke_width(2))).map_err(report_err)?;
            chart
                .draw_series(std::iter::once(Text::new(m.what.clone(), (m.t, ymax * 0.95), ("sans-serif", 13).into_font().color(&RED))))
                .map_err(report_err)?;
        }
        if pts.is_empty() {
            chart.draw_series(std::iter::once(Text::new("no stalls", (xmax * 0.4, ymax * 0.5), ("sans-serif", 16)))).map_err(report_err)?;
        }
        root.present().map_err(report_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.count, p.p50, p.p95, p.p99, p.max), (100, 50.0, 95.0, 99.0, 100.0));
        assert!((p.mean - 50.5).abs() < 1e-9);
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
        assert_eq!(Percentiles::of(&[f64::NAN, 3.0]).p99, 3.0);
    }

    #[test]
    fn html_has_every_plot_and_escapes_names() {
        let run = RunReport {
            name: "<on>".into(),
            viewers: 2,
            startup_samples: vec![10.0, 20.0],
            segment_samples: vec![1.0, 5.0, 9.0],
            series: vec![
                Sample { t: 0.0, active: 2, ..Sample::default() },
                Sample { t: 1.0, active: 1, delivered_mbps: 80.0, ..Sample::default() },
            ],
            marks: vec![Mark { t: 0.5, what: "kill edge-1".into() }],
            stall_events: vec![(0.6, 0.2)],
            hit_ratio: BTreeMap::from([("edge".into(), 0.9)]),
            bytes_by_source: BTreeMap::from([("edge".into(), 10)]),
            bytes_delivered: 10,
            ..RunReport::default()
        };
        let r = Report {
            scenario: "s".into(),
            description: "d".into(),
            target: "local".into(),
            started: 0,
            runs: vec![run.clone(), RunReport { name: "off".into(), ..run }],
        };
        let h = r.html().unwrap();
        assert_eq!(h.matches("<svg").count(), 2 + 2 * 6, "two distributions, six plots per run");
        assert!(h.contains("&lt;on&gt;") && !h.contains("<on>"));
        assert!(h.contains("kill edge-1"));
        assert!(!h.contains("<script"), "readable offline, no script");
    }
}
