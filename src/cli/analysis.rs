//! The commands that read record files: `analyze`, `compare`, `trace`, `bench-analysis`
//! (left out of builds without the `analysis` feature, e.g. on compute nodes).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use shardsweep_analysis::{report::STRAGGLER_THRESHOLD, stragglers::exclude_list, AnalysisError};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Analyse the records of a sweep: summary table, plots and a report.
    Analyze {
        /// The sweep's results folder, e.g. results/local-smoke.
        sweep_dir: PathBuf,
    },
    /// Compare two result sets (before and after an upgrade): per point and phase, the ratio
    /// of medians with a 95% interval and a verdict only where the change is clear.
    Compare {
        before: PathBuf,
        after: PathBuf,
        /// Fields allowed to differ between the environments: torch_version, comm_library,
        /// git_commit, binary_version, or an environment variable (NCCL_* for a prefix).
        #[arg(long)]
        declared: Vec<String>,
        /// Compare even if undeclared fields differ (they are flagged in the report).
        #[arg(long)]
        allow_undeclared: bool,
        /// Where the comparison goes (default: <after>/report/compare-<before's name>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write one step of one point as a Chrome trace (chrome://tracing, ui.perfetto.dev).
    Trace {
        point_dir: PathBuf,
        /// Step to show (default: the last warm-up step + 1).
        #[arg(long)]
        step: Option<usize>,
        /// Output file (default: <point>/trace-step<N>.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time the analysis on a synthetic tidy store of the given shape (generated once into DIR),
    /// in alternating pairs of whole processes with DuckDB's same aggregations where the
    /// interpreter imports `duckdb`.
    BenchAnalysis(super::bench_analysis::Args),
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Analyze { sweep_dir } => analyze(&sweep_dir),
        Command::Compare { before, after, declared, allow_undeclared, out } => {
            compare(&before, &after, declared, allow_undeclared, out)
        }
        Command::Trace { point_dir, step, out } => trace(&point_dir, step, out),
        Command::BenchAnalysis(args) => super::bench_analysis::run(args),
    }
}

pub fn analyze(sweep_dir: &Path) -> Result<ExitCode> {
    shardsweep::records::hdf5_without_file_locking();
    let report = shardsweep_analysis::analyze_sweep(sweep_dir)?;
    for skip in &report.store.skipped {
        tracing::warn!(file = %skip.path.display(), reason = %skip.reason, "point not analysed: its file cannot be read");
    }
    outln!("{}", report.table);
    if !report.exclude.is_empty() {
        let nodes = shardsweep::launch::shell::quote(report.exclude.join(",").as_ref());
        outln!("slow nodes: resume with --exclude {nodes}");
    }
    errln!(
        "tidy store {}: {} points rebuilt, {} unchanged",
        report.store.dir.display(),
        report.store.rebuilt.len(),
        report.store.reused
    );
    for file in &report.files {
        errln!("wrote {}", file.display());
    }
    let calibration = sweep_dir.join(CALIBRATION_FILE);
    if calibration.is_file() {
        predicted_vs_measured(sweep_dir, &calibration)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A calibration in a sweep's folder makes `analyze` compare each point with its prediction.
pub use shardsweep::records::sweep_dir::CALIBRATION_FILE;

/// Points whose prediction is off by more than this fraction are flagged.
const PREDICTION_FLAG: f64 = 0.20;

/// Predicted against measured images/s per point (the slowest rank's median steady step):
/// `report/predicted_vs_measured.csv`, a residual plot, points more than 20% off flagged, and
/// the validation figures (`predict::validate`). Each point is predicted as a user would have
/// predicted it before running it: standing on the calibration's and the sweep's other
/// measurements of its configuration (never on its own), else by the model alone.
fn predicted_vs_measured(sweep_dir: &Path, calibration: &Path) -> Result<()> {
    use shardsweep::launch::slurm::System;
    use shardsweep::predict::validate::{score, table_rows, Scored};
    use shardsweep::predict::{measurements::read_records, Calibration, PerfModel};
    let cal = Calibration::read(calibration)?;
    let (system, _) = System::load(&cal.system, Path::new("slurm"))?;
    let measured = read_records(sweep_dir, &|_| true)?.points;
    let mut anchors = cal.anchors.clone();
    anchors.extend(measured.iter().map(|m| m.anchor()));
    let model = PerfModel {
        hardware: system.hardware(),
        calibration: Some(cal),
        peak_flop_per_s: system.peak_flop_per_s.clone(),
        anchors: Vec::new(),
    };
    let mut csv = String::from(
        "point,measured_images_per_s,predicted_images_per_s,relative_error,flagged,basis\n",
    );
    let mut table =
        super::table(["point", "measured images/s", "predicted", "error", "stands on", ""]);
    let mut ratios = Vec::new();
    let mut scored = Vec::new();
    for m in &measured {
        let own = |a: &shardsweep::predict::AnchorPoint| {
            a.configures(&m.point) && a.doublings(&m.point) == 0.0
        };
        let others: Vec<_> = anchors.iter().filter(|a| !own(a)).cloned().collect();
        let reference = others
            .iter()
            .filter(|a| {
                a.configures(&m.point)
                    && a.micro_batch == m.point.micro_batch
                    && a.nodes < m.point.nodes
            })
            .max_by_key(|a| a.nodes)
            .map(|a| (a.nodes, a.images_per_s));
        let prediction = PerfModel { anchors: others, ..model.clone() }.predict(&m.point);
        let predicted = prediction.images_per_s;
        scored.push(Scored {
            point: &m.point,
            measured: m.images_per_s,
            predicted,
            low: prediction.images_per_s_low,
            high: prediction.images_per_s_high,
            reference,
        });
        let error = (predicted - m.images_per_s) / m.images_per_s;
        let flagged = error.abs() > PREDICTION_FLAG;
        // A figure that cannot be computed is an empty cell and "n/a", never NaN.
        let cell = |v: f64| if v.is_finite() { v.to_string() } else { String::new() };
        let shown = |v: f64, text: String| if v.is_finite() { text } else { "n/a".into() };
        csv += &format!(
            "{},{},{},{},{},{}\n",
            m.point.id,
            cell(m.images_per_s),
            cell(predicted),
            cell(error),
            flagged,
            prediction.basis.label()
        );
        table.add_row([
            m.point.id.clone(),
            shown(m.images_per_s, format!("{:.2}", m.images_per_s)),
            shown(predicted, format!("{predicted:.2}")),
            shown(error, format!("{:+.1}%", 100.0 * error)),
            prediction.basis.label(),
            if flagged { "more than 20% off: worth a look".into() } else { String::new() },
        ]);
        ratios.push((m.point.id.clone(), predicted / m.images_per_s));
    }
    let dir = sweep_dir.join("report");
    std::fs::create_dir_all(&dir)?;
    shardsweep::records::write_atomic(&dir.join("predicted_vs_measured.csv"), csv.as_bytes())?;
    outln!("predicted against measured ({}):", calibration.display());
    outln!("{table}");
    let mut figures =
        super::table(["figure", "prediction", "linear from the nearest measured nodes"]);
    for row in table_rows(&score(&scored)) {
        figures.add_row(row);
    }
    outln!("{figures}");
    for file in shardsweep_analysis::predicted::residual_plot(&ratios, &dir)? {
        errln!("wrote {}", file.display());
    }
    Ok(())
}

/// `exclude` and the nodes the analysis of the sweep's records finds slow, as one node list.
// `submit` and `resume` use it; `shardsweep-lite`, which builds this module too, has neither.
#[allow(dead_code)]
pub fn with_slow_nodes(exclude: Option<String>, sweep_dir: &Path) -> Result<Option<String>> {
    let summary = if sweep_dir.is_dir() {
        shardsweep_analysis::summarize_sweep(sweep_dir)
    } else {
        Err(AnalysisError::Empty(sweep_dir.display().to_string()))
    };
    let slow = match summary {
        Ok((_, nodes, _)) => {
            let slow = exclude_list(&nodes, STRAGGLER_THRESHOLD);
            for node in nodes.iter().filter(|n| slow.contains(&n.hostname)) {
                errln!(
                    "excluding {}: its ranks compute {:.1}% slower than the typical rank",
                    node.hostname,
                    (node.score - 1.0) * 100.0
                );
            }
            slow
        }
        Err(AnalysisError::Empty(_)) => {
            errln!(
                "no finished records in {} yet: no node is known to be slow",
                sweep_dir.display()
            );
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let all: Vec<String> = exclude.into_iter().chain(slow).collect();
    Ok((!all.is_empty()).then(|| all.join(",")))
}

fn compare(
    before: &Path,
    after: &Path,
    declared: Vec<String>,
    allow_undeclared: bool,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let options =
        shardsweep_analysis::CompareOptions { declared, allow_undeclared, ..Default::default() };
    let name = before.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let out = out.unwrap_or_else(|| after.join("report").join(format!("compare-{name}")));
    let (comparison, files) =
        shardsweep_analysis::report::compare_sweeps(before, after, &out, &options)?;
    for d in &comparison.environment {
        outln!(
            "environment {}: {:?} -> {:?}{}",
            d.field,
            d.before,
            d.after,
            if d.declared { " (declared)" } else { " (NOT declared)" }
        );
    }
    let mut table =
        super::table(["point", "phase", "ratio after/before", "95% interval", "p", "verdict"]);
    for c in comparison.changes.iter().filter(|c| {
        c.phase == "step" || c.verdict != shardsweep_analysis::Verdict::NoSignificantChange
    }) {
        table.add_row([
            c.point.clone(),
            c.phase.clone(),
            format!("{:.3}", c.ratio.estimate),
            format!("{:.3}-{:.3}", c.ratio.low, c.ratio.high),
            format!("{:.1e}", c.p_value),
            c.verdict.name().into(),
        ]);
    }
    outln!("{table}");
    for file in &files {
        errln!("wrote {}", file.display());
    }
    // Some points compared, some not: the table stands, and the status says it is partial.
    for (point, why) in &comparison.unmatched {
        errln!("not compared: {point}: {why}");
    }
    Ok(if comparison.unmatched.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn trace(point_dir: &Path, step: Option<usize>, out: Option<PathBuf>) -> Result<ExitCode> {
    let manifest = shardsweep_analysis::read_manifest(point_dir)?;
    let step = step.unwrap_or(manifest.warmup_steps as usize);
    let trace = shardsweep_analysis::trace::chrome_trace(point_dir, step)?;
    let out = out.unwrap_or_else(|| point_dir.join(format!("trace-step{step}.json")));
    std::fs::write(&out, serde_json::to_vec(&trace)?)?;
    errln!("wrote {} (open in ui.perfetto.dev or chrome://tracing)", out.display());
    Ok(ExitCode::SUCCESS)
}
