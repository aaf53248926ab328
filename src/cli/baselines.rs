//! Results kept across system upgrades: `bundle` packs a sweep into one file that `compare`
//! and `history` read as its folder; `history` lines up many runs of the same points and finds
//! where each series changes (left out of builds without the `analysis` feature).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use shardsweep_analysis::bundle::{open_sweep, write_bundle, BundleOptions, Harness, SweepSource};
use shardsweep_analysis::changepoint::ChangeOptions;
use shardsweep_analysis::history::{history, load_runs, order_runs, write_history, HistoryRow};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Pack what a comparison needs of a sweep (manifests, records, resolved points, job
    /// scripts, the experiment, calibration and Slurm files) into one .tar.zst file, with a
    /// bundle.json listing every file's SHA-256; `compare` and `history` read it as the folder.
    Bundle {
        /// The sweep's results folder, e.g. results/nightly.
        sweep_dir: PathBuf,
        /// The bundle to write (default: <sweep_dir>.tar.zst).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Replace an existing bundle.
        #[arg(long)]
        force: bool,
    },
    /// Line up many runs of the same points (folders or bundles), ordered by their start times
    /// (as given where a run has none), and find the change points of each point's step time,
    /// throughput and phase times, naming the environment fields that changed at each.
    History {
        /// The runs: sweep folders or bundles.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where the history goes (default: <last run>/report/history).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Smallest relative change of level called a change point (0.05 = 5%).
        #[arg(long, default_value_t = 0.05)]
        min_effect: f64,
    },
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Bundle { sweep_dir, out, force } => bundle(&sweep_dir, out, force),
        Command::History { runs, out, min_effect } => history_of(&runs, out, min_effect),
    }
}

fn bundle(sweep_dir: &Path, out: Option<PathBuf>, force: bool) -> Result<ExitCode> {
    let out = out.unwrap_or_else(|| {
        let name = sweep_dir.file_name().unwrap_or_default().to_string_lossy();
        sweep_dir.with_file_name(format!("{name}.tar.zst"))
    });
    let harness = Harness {
        version: env!("CARGO_PKG_VERSION").into(),
        commit: env!("SHARDSWEEP_GIT_COMMIT").into(),
    };
    let account = write_bundle(sweep_dir, &out, &BundleOptions { force, harness })?;
    let bytes: u64 = account.files.iter().map(|f| f.size_bytes).sum();
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    errln!(
        "wrote {}: {} files of sweep {} ({bytes} bytes, {size} packed)",
        out.display(),
        account.files.len(),
        account.sweep
    );
    for left in &account.left_out {
        tracing::debug!(path = %left.path, reason = %left.reason, "left out of the bundle");
    }
    errln!("left out: {} entries (listed in bundle.json's left_out)", account.left_out.len());
    Ok(ExitCode::SUCCESS)
}

/// A run's name: its folder's, or its bundle's file name without `.tar.zst`.
fn run_name(source: &SweepSource) -> String {
    if source.account().is_none() {
        return source.name();
    }
    let file = source.origin().file_name().unwrap_or_default().to_string_lossy().into_owned();
    file.strip_suffix(".tar.zst").or_else(|| file.strip_suffix(".tzst")).unwrap_or(&file).into()
}

fn history_of(paths: &[PathBuf], out: Option<PathBuf>, min_effect: f64) -> Result<ExitCode> {
    shardsweep::records::hdf5_without_file_locking();
    let sources: Vec<SweepSource> = paths
        .iter()
        .map(|p| open_sweep(p).with_context(|| format!("opening {}", p.display())))
        .collect::<Result<_>>()?;
    let named: Vec<(String, PathBuf)> =
        sources.iter().map(|s| (run_name(s), s.dir().to_path_buf())).collect();
    let mut runs = load_runs(&named)?;
    let given: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    let order = order_runs(&mut runs);
    let options = ChangeOptions { min_effect, ..Default::default() };
    let found = history(&runs, order, &options);
    let last = runs.last().map(|r| r.name.clone()).unwrap_or_default();
    let home = given.iter().position(|n| *n == last).map(|i| sources[i].home());
    let out = out.unwrap_or_else(|| {
        home.unwrap_or_else(|| PathBuf::from(".")).join("report").join("history")
    });
    let files = write_history(&found, &out)?;
    outln!("{} runs, ordered {}", found.runs.len(), found.order.describe());
    outln!("{}", table(&found.rows));
    let changes = found.changes().count();
    if changes == 0 {
        outln!(
            "no change point (a change must exceed {:.0}% and its runs' noise)",
            min_effect * 100.0
        );
    }
    for file in &files {
        errln!("wrote {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Per point, its step time and every metric with a change point: runs, first and latest
/// value, and each change (the run it starts at, by how much, the fields that changed).
fn table(rows: &[HistoryRow]) -> String {
    let mut series: std::collections::BTreeMap<(&str, &str), Vec<&HistoryRow>> = Default::default();
    for row in rows {
        series.entry((&row.row.point, &row.row.metric)).or_default().push(row);
    }
    let mut table = super::table(["point", "metric", "runs", "first", "latest", "change points"]);
    for ((point, metric), rows) in series {
        let changes: Vec<String> = rows
            .iter()
            .filter(|r| r.change_point)
            .map(|r| {
                let fields = if r.changed.is_empty() {
                    "no environment field changed".to_string()
                } else {
                    r.changed.join("; ")
                };
                format!(
                    "{}: {:+.1}% ({fields})",
                    r.row.run,
                    100.0 * r.relative_change.unwrap_or(0.0)
                )
            })
            .collect();
        if metric != "step_s" && changes.is_empty() {
            continue;
        }
        let unit = &rows[0].row.unit;
        let shown = |v: f64| format!("{v:.4} {unit}");
        table.add_row([
            point.to_string(),
            metric.to_string(),
            rows.len().to_string(),
            shown(rows[0].row.value),
            shown(rows[rows.len() - 1].row.value),
            if changes.is_empty() { "none".into() } else { changes.join("\n") },
        ]);
    }
    table.to_string()
}
