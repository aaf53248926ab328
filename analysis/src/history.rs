//! `history`: many runs of the same points over time (nightly acceptance runs), lined up per
//! point and metric, with the change points of each series and the environment fields that
//! changed where each one starts.
//!
//! Runs are ordered by when they started (the earliest `started_at` of their manifests) when
//! every run has a readable start time; otherwise they keep the order given, and
//! [`RunOrder::Given`] says why. A point's series is matched by its id and configuration digest
//! (a point whose configuration changed is another series). Its metrics are the median steady
//! step time (`step_s`), the throughput (`images_per_s`) and every phase's median over steady
//! steps (`<phase>_s`), each with its 95% bootstrap interval; change points come from
//! [`changepoint`](crate::changepoint) on the run medians with each run's interval as its noise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::changepoint::{change_points, ChangeOptions, Observation};
use crate::compare::environment;
use crate::export::{bmf, jsonl, otava, MetricRow};
use crate::stats::{bootstrap, median, Interval};
use crate::summary::PointSummary;
use crate::AnalysisError;

/// One run: a name, when it started (RFC 3339, empty when unknown) and its points' summaries.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: String,
    pub started_at: String,
    pub summaries: Vec<PointSummary>,
}

/// How the runs were put in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOrder {
    /// By their start times.
    StartTime,
    /// As given, because this run's start time is missing or unreadable.
    Given { run: String },
}

impl RunOrder {
    pub fn describe(&self) -> String {
        match self {
            RunOrder::StartTime => "by start time (the manifests' earliest started_at)".into(),
            RunOrder::Given { run } => {
                format!("as given ({run} has no readable started_at in its manifests)")
            }
        }
    }
}

/// The earliest start time of a sweep's points, from their manifests (empty when none says).
pub fn started_at(summaries: &[PointSummary]) -> String {
    summaries
        .iter()
        .filter_map(|s| shardsweep_records::Manifest::read(&s.meta.dir).ok().flatten())
        .map(|m| m.started_at)
        .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
        .min_by_key(|t| chrono::DateTime::parse_from_rfc3339(t).expect("filtered"))
        .unwrap_or_default()
}

/// Summarises each sweep folder as a run named `name` (names made unique with `#2`, `#3`).
pub fn load_runs(sweeps: &[(String, PathBuf)]) -> Result<Vec<Run>, AnalysisError> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    sweeps
        .iter()
        .map(|(name, dir)| {
            let (summaries, _, _) = crate::summarize_sweep(dir)?;
            let count = seen.entry(name.clone()).or_insert(0);
            *count += 1;
            let name = if *count == 1 { name.clone() } else { format!("{name}#{count}") };
            Ok(Run { name, started_at: started_at(&summaries), summaries })
        })
        .collect()
}

/// Puts `runs` in start-time order where every run has one (stable: equal times keep their
/// order), else leaves them as given.
pub fn order_runs(runs: &mut [Run]) -> RunOrder {
    let times: Result<Vec<_>, String> = runs
        .iter()
        .map(|r| chrono::DateTime::parse_from_rfc3339(&r.started_at).map_err(|_| r.name.clone()))
        .collect();
    match times {
        Ok(times) => {
            let mut keyed: Vec<(chrono::DateTime<chrono::FixedOffset>, Run)> =
                times.into_iter().zip(runs.iter().cloned()).collect();
            keyed.sort_by_key(|(t, _)| *t);
            for (slot, (_, run)) in runs.iter_mut().zip(keyed) {
                *slot = run;
            }
            RunOrder::StartTime
        }
        Err(run) => RunOrder::Given { run },
    }
}

/// One figure of one point in one run, and whether a change of level starts there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    #[serde(flatten)]
    pub row: MetricRow,
    pub change_point: bool,
    /// At a change point: `new level / old level - 1`.
    pub relative_change: Option<f64>,
    /// At a change point: the environment fields that differ from the run before.
    pub changed_fields: Vec<String>,
    /// The same, as `field: before -> after`.
    pub changed: Vec<String>,
}

/// Everything `history` finds.
#[derive(Debug, Clone)]
pub struct History {
    pub order: RunOrder,
    /// Run names in order.
    pub runs: Vec<String>,
    /// Per run, point and metric, in run order.
    pub rows: Vec<HistoryRow>,
}

impl History {
    /// The change points only.
    pub fn changes(&self) -> impl Iterator<Item = &HistoryRow> {
        self.rows.iter().filter(|r| r.change_point)
    }
}

/// A point's metrics: `step_s`, `images_per_s` and each phase's median (`<phase>_s`).
pub fn metrics(summary: &PointSummary) -> Vec<(String, &'static str, Interval)> {
    let mut out = vec![
        ("step_s".to_string(), "s", summary.step_s_median),
        ("images_per_s".to_string(), "images/s", summary.images_per_s),
    ];
    for (phase, xs) in &summary.phase_s {
        if phase != "step" && !xs.is_empty() {
            out.push((format!("{phase}_s"), "s", bootstrap(xs, median)));
        }
    }
    out
}

/// A run's figure in a series: the run's index, its row and the point's environment.
type SeriesEntry = (usize, HistoryRow, BTreeMap<String, String>);

/// The history of `runs` (in the order given: see [`order_runs`]).
pub fn history(runs: &[Run], order: RunOrder, options: &ChangeOptions) -> History {
    // Which digests each point id has across the runs: a second one makes a second series.
    let mut digests: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for run in runs {
        for s in &run.summaries {
            digests.entry(&s.meta.point).or_default().insert(&s.meta.digest);
        }
    }
    let label = |s: &PointSummary| match digests.get(s.meta.point.as_str()) {
        Some(d) if d.len() > 1 => format!("{} [{}]", s.meta.point, s.meta.digest),
        _ => s.meta.point.clone(),
    };
    // (point label, metric) -> the rows of the series in run order.
    let mut series: BTreeMap<(String, String), Vec<SeriesEntry>> = BTreeMap::new();
    for (r, run) in runs.iter().enumerate() {
        for s in run.summaries.iter().filter(|s| s.no_figures_reason().is_none()) {
            let env = environment(&s.meta);
            for (metric, unit, interval) in metrics(s) {
                if !interval.estimate.is_finite() {
                    continue;
                }
                let row = MetricRow {
                    run: run.name.clone(),
                    time: run.started_at.clone(),
                    point: label(s),
                    metric: metric.clone(),
                    unit: unit.into(),
                    value: interval.estimate,
                    low: interval.low,
                    high: interval.high,
                    attributes: env.clone(),
                };
                let row = HistoryRow {
                    row,
                    change_point: false,
                    relative_change: None,
                    changed_fields: Vec::new(),
                    changed: Vec::new(),
                };
                series.entry((label(s), metric)).or_default().push((r, row, env.clone()));
            }
        }
    }
    let mut rows: Vec<(usize, HistoryRow)> = Vec::new();
    for (_, mut points) in series {
        let observations: Vec<Observation> = points
            .iter()
            .map(|(_, h, _)| Observation { value: h.row.value, low: h.row.low, high: h.row.high })
            .collect();
        for change in change_points(&observations, options) {
            let before = points[change.index - 1].2.clone();
            let (_, row, after) = &mut points[change.index];
            row.change_point = true;
            row.relative_change = Some(change.relative);
            let fields: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for field in fields {
                let (b, a) = (before.get(field), after.get(field));
                if b != a {
                    let shown = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
                    row.changed_fields.push(field.clone());
                    row.changed.push(format!("{field}: {} -> {}", shown(b), shown(a)));
                }
            }
        }
        rows.extend(points.into_iter().map(|(r, row, _)| (r, row)));
    }
    // Run order first, then point and metric (the series were visited in that order).
    rows.sort_by_key(|(r, _)| *r);
    History {
        order,
        runs: runs.iter().map(|r| r.name.clone()).collect(),
        rows: rows.into_iter().map(|(_, row)| row).collect(),
    }
}

/// A CSV field, quoted where it must be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// `history.csv`: the rows of `history.jsonl` without the attributes.
pub fn history_csv(history: &History) -> String {
    let mut out = String::from(
        "run,time,point,metric,unit,value,low,high,change_point,relative_change,changed_fields\n",
    );
    let number = |v: f64| if v.is_finite() { v.to_string() } else { String::new() };
    for h in &history.rows {
        let r = &h.row;
        let cells = [
            field(&r.run),
            field(&r.time),
            field(&r.point),
            field(&r.metric),
            field(&r.unit),
            number(r.value),
            number(r.low),
            number(r.high),
            h.change_point.to_string(),
            h.relative_change.map(number).unwrap_or_default(),
            field(&h.changed_fields.join(";")),
        ];
        out += &cells.join(",");
        out.push('\n');
    }
    out
}

/// Writes the history under `out`: `history.jsonl`, `history.csv`, Bencher's BMF JSON per run
/// (`bmf/<run>.json`), Otava's CSV and test definition (`otava/`) and a plot per point
/// (`history-<point>.png/.svg`). Returns the files written.
pub fn write_history(history: &History, out: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    let mkdir = |dir: &Path| {
        std::fs::create_dir_all(dir)
            .map_err(|source| AnalysisError::Io { path: dir.to_path_buf(), source })
    };
    let export = |e: crate::export::ExportError| AnalysisError::Export(e);
    mkdir(out)?;
    let mut files = Vec::new();
    let path = out.join("history.jsonl");
    jsonl::write_jsonl(&path, &history.rows).map_err(export)?;
    files.push(path);
    let path = out.join("history.csv");
    crate::tidy::write_file(&path, history_csv(history).as_bytes())?;
    files.push(path);
    let rows: Vec<MetricRow> = history.rows.iter().map(|h| h.row.clone()).collect();
    let bmf_dir = out.join("bmf");
    mkdir(&bmf_dir)?;
    for run in &history.runs {
        let of_run: Vec<MetricRow> = rows.iter().filter(|r| &r.run == run).cloned().collect();
        let path = bmf_dir.join(format!("{}.json", file_stem(run)));
        bmf::write_bmf(&path, &of_run).map_err(export)?;
        files.push(path);
    }
    let otava_dir = out.join("otava");
    mkdir(&otava_dir)?;
    files.extend(otava::write_otava(&otava_dir, "shardsweep.history", &rows).map_err(export)?);
    files.extend(crate::history_plot::plots(out, history)?);
    Ok(files)
}

/// A name safe as a file name: anything but letters, digits, `-`, `_` and `.` becomes `_`.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect()
}
