//! The commands that read record files: `analyze`, `compare`, `trace`, `bench-analysis`
//! (left out of builds without the `analysis` feature, e.g. on compute nodes).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Analyse the records of a sweep: summary table, plots and a report.
    Analyze {
        /// The sweep's results folder, e.g. results/local-smoke.
        sweep_dir: PathBuf,
    },
    /// Compare two result sets (before and after an upgrade): what changed in the
    /// environment, a verdict per point and metric (regressed, improved, indistinguishable,
    /// insufficient evidence) with the false-discovery rate controlled, where each step's
    /// change went, the collectives' bus bandwidth, and changes of the best configuration.
    /// Exit status: 0 when every point was compared and none regressed, 2 when some points
    /// could not be compared, 3 when a metric regressed.
    Compare(CompareArgs),
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

#[derive(clap::Args)]
pub struct CompareArgs {
    before: PathBuf,
    after: PathBuf,
    /// Fields allowed to differ between the environments (the change under study):
    /// torch_version, comm_library, git_commit, binary_version, "library <name>" (e.g.
    /// "library librccl.so"), "driver <name>", modules, or an environment variable; a
    /// trailing * matches a prefix (NCCL_*, "library libnccl*"). Comma-separated or repeated.
    #[arg(long, value_delimiter = ',')]
    declared: Vec<String>,
    /// Compare even if undeclared fields differ (they are flagged in the report).
    #[arg(long)]
    allow_undeclared: bool,
    /// Smallest relative change of a metric that counts as a regression or improvement.
    #[arg(long, default_value_t = 0.05)]
    min_effect: f64,
    /// Smallest change of a phase, as a share of its point's step, that counts.
    #[arg(long, default_value_t = 0.01)]
    min_step_share: f64,
    /// The false-discovery rate over all the comparison's tests (Benjamini-Hochberg).
    #[arg(long, default_value_t = 0.05)]
    fdr: f64,
    /// Fewest steady steps a side needs for a verdict.
    #[arg(long, default_value_t = 8)]
    min_steps: usize,
    /// Also write the verdicts as JUnit XML here (always written to the output folder too).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Where the comparison goes (default: <after>/report/compare-<before's name>).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Analyze { sweep_dir } => analyze(&sweep_dir),
        Command::Compare(args) => compare(args),
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

/// Predicted against measured images/s per point (the slowest rank's median steady step):
/// `report/predicted_vs_measured.csv`, a residual plot, points more than 20% off flagged, and
/// the validation figures ([`shardsweep::predict::hindcast`]).
fn predicted_vs_measured(sweep_dir: &Path, calibration: &Path) -> Result<()> {
    use shardsweep::launch::slurm::System;
    use shardsweep::predict::{hindcast, validate::table_rows, Calibration};
    let cal = Calibration::read(calibration)?;
    let (system, _) = System::load(&cal.system, Path::new("slurm"))?;
    let peaks = system.peak_flop_per_s.clone();
    let check = hindcast::of_sweep(sweep_dir, cal, system.hardware(), peaks)?;
    let mut table =
        super::table(["point", "measured images/s", "predicted", "error", "stands on", ""]);
    // A figure that cannot be computed is "n/a", never NaN.
    let shown = |v: f64, text: String| if v.is_finite() { text } else { "n/a".into() };
    let flag = format!("more than {:.0}% off: worth a look", 100.0 * hindcast::FLAG_SHARE);
    for r in &check.rows {
        table.add_row([
            r.point.clone(),
            shown(r.measured, format!("{:.2}", r.measured)),
            shown(r.predicted, format!("{:.2}", r.predicted)),
            shown(r.error, format!("{:+.1}%", 100.0 * r.error)),
            r.basis.clone(),
            if r.flagged { flag.clone() } else { String::new() },
        ]);
    }
    let dir = sweep_dir.join("report");
    std::fs::create_dir_all(&dir)?;
    shardsweep::records::write_atomic(
        &dir.join("predicted_vs_measured.csv"),
        check.csv().as_bytes(),
    )?;
    outln!("predicted against measured ({}):", calibration.display());
    outln!("{table}");
    let mut figures =
        super::table(["figure", "prediction", "linear from the nearest measured nodes"]);
    for row in table_rows(&check.figures) {
        figures.add_row(row);
    }
    outln!("{figures}");
    for file in shardsweep_analysis::predicted::residual_plot(&check.ratios(), &dir)? {
        errln!("wrote {}", file.display());
    }
    Ok(())
}

/// `exclude` and the nodes the analysis of the sweep's records finds slow, as one node list.
// `submit` and `resume` use it; `shardsweep-lite`, which builds this module too, has neither.
#[allow(dead_code)]
pub fn with_slow_nodes(exclude: Option<String>, sweep_dir: &Path) -> Result<Option<String>> {
    let Some(slow) = shardsweep_analysis::report::slow_nodes(sweep_dir)? else {
        errln!("no finished records in {} yet: no node is known to be slow", sweep_dir.display());
        return Ok(exclude);
    };
    for node in &slow {
        let slower = (node.score - 1.0) * 100.0;
        errln!(
            "excluding {}: its ranks compute {slower:.1}% slower than the typical rank",
            node.hostname
        );
    }
    let all: Vec<String> =
        exclude.into_iter().chain(slow.into_iter().map(|n| n.hostname)).collect();
    Ok((!all.is_empty()).then(|| all.join(",")))
}

fn compare(args: CompareArgs) -> Result<ExitCode> {
    if !(args.fdr > 0.0 && args.fdr < 1.0) {
        anyhow::bail!("--fdr {}: must be between 0 and 1 (exclusive)", args.fdr);
    }
    for (name, value) in
        [("--min-effect", args.min_effect), ("--min-step-share", args.min_step_share)]
    {
        if !(value.is_finite() && value >= 0.0) {
            anyhow::bail!("{name} {value}: must be a share of 0 or more (0.05 = 5%)");
        }
    }
    let options = shardsweep_analysis::CompareOptions {
        declared: args.declared,
        allow_undeclared: args.allow_undeclared,
        min_effect: args.min_effect,
        fdr: args.fdr,
        min_steps: args.min_steps,
        min_step_share: args.min_step_share,
    };
    // Folders as they are, bundles checked and unpacked (kept until the comparison is written).
    let (b, a) = (
        shardsweep_analysis::bundle::open_sweep(&args.before)?,
        shardsweep_analysis::bundle::open_sweep(&args.after)?,
    );
    let name = b.name();
    let out = args.out.unwrap_or_else(|| a.home().join("report").join(format!("compare-{name}")));
    let (before, after) = (b.dir(), a.dir());
    let (comparison, mut files) =
        shardsweep_analysis::report::compare_sweeps(before, after, &out, &options)?;
    if comparison.environment.is_empty() {
        outln!("what changed: nothing in the environments differs");
    } else {
        outln!("what changed:");
    }
    for d in &comparison.environment {
        outln!("  {}: {:?} -> {:?} ({})", d.field, d.before, d.after, d.change.name());
    }
    let counts: Vec<String> =
        comparison.counts().iter().map(|(v, n)| format!("{n} {}", v.name())).collect();
    outln!("verdicts: {}", counts.join(", "));
    for line in &comparison.findings {
        outln!("  {line}");
    }
    for b in &comparison.best {
        let nodes = if b.nodes == 1 { "1 node".to_string() } else { format!("{} nodes", b.nodes) };
        outln!("best at {} {nodes}: {} -> {}", b.model, b.before, b.after);
    }
    for o in &comparison.outcomes {
        outln!("outcome of {}: {} -> {}", o.point, o.before.name(), o.after.name());
    }
    let mut table =
        super::table(["point", "metric", "after/before", "95% interval", "q", "verdict"]);
    for c in comparison.changes.iter().filter(|c| c.phase == "step" || c.verdict.is_change()) {
        table.add_row([
            c.point.clone(),
            c.phase.clone(),
            format!("{:.3}", c.ratio.estimate),
            format!("{:.3}-{:.3}", c.ratio.low, c.ratio.high),
            format!("{:.1e}", c.q_value),
            c.verdict.name().into(),
        ]);
    }
    outln!("{table}");
    if let Some(path) = &args.junit {
        files.push(shardsweep_analysis::report::write_junit(&comparison, path)?);
    }
    for file in &files {
        errln!("wrote {}", file.display());
    }
    // Some points compared, some not: the table stands, and the status says it is partial.
    for (point, why) in &comparison.unmatched {
        errln!("not compared: {point}: {why}");
    }
    Ok(if comparison.regressed() {
        ExitCode::from(3)
    } else if comparison.unmatched.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
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
