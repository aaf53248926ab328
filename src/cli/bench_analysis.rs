//! `shardsweep bench-analysis`: the analysis of a synthetic tidy store against DuckDB's same
//! aggregations (`analysis/bench/duckdb_same_aggregation.py`), both as whole processes (start-up
//! included), in alternating pairs, with medians and ranges of both sides and their ratio.
//!
//! The pairs are run by `shardsweep-lite` (the binary beside `shardsweep`, which does not load
//! libtorch; the other binaries hand the command over to it), and the analysis side runs as
//! `shardsweep-lite bench-analysis DIR --single`. Each side's peak memory is the kernel's
//! account of that child (`wait4`), which starts at the peak of the process that started it
//! (Linux keeps a process's peak across `exec`): so the runner is the small binary, and it
//! generates a missing store in a child too.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use shardsweep_analysis::bench::{self, Shape};

#[derive(clap::Args)]
pub struct Args {
    /// The synthetic store's folder (generated once, if it does not exist).
    dir: PathBuf,
    #[arg(long, default_value_t = 1000)]
    points: usize,
    #[arg(long, default_value_t = 512)]
    ranks: usize,
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Pairs of runs (analysis, DuckDB), the side that goes first alternating.
    #[arg(long, default_value_t = 3)]
    pairs: usize,
    /// The Python that runs DuckDB's side (default: .venv/bin/python, else python3); left
    /// out with a note where it cannot import `duckdb`.
    #[arg(long)]
    python: Option<PathBuf>,
    /// DuckDB's side.
    #[arg(long, default_value = "analysis/bench/duckdb_same_aggregation.py")]
    duckdb_script: PathBuf,
    /// One analysis in this process, timed from inside (what each pair's analysis side runs).
    #[arg(long)]
    single: bool,
    /// Generate the store and stop (the runner's first child where DIR does not exist).
    #[arg(long, hide = true)]
    generate_only: bool,
}

/// One finished run of one side: wall time (spawn to exit) and the child's peak RSS.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall_s: f64,
    peak_rss_bytes: u64,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let shape = Shape { points: args.points, ranks: args.ranks, steps: args.steps };
    let rows = shape.points * shape.ranks * shape.steps * 4;
    if args.single || args.generate_only {
        if !args.dir.exists() {
            let start = Instant::now();
            bench::generate(&args.dir, &shape)?;
            errln!(
                "generated {rows} rows in {} in {:.1} s",
                args.dir.display(),
                start.elapsed().as_secs_f64()
            );
        }
        return if args.single { single(&args.dir, &shape, rows) } else { Ok(ExitCode::SUCCESS) };
    }
    if args.pairs == 0 {
        bail!("--pairs 0: nothing to measure");
    }
    let me = std::env::current_exe().context("cannot find the running binary")?;
    let lite = me.with_file_name("shardsweep-lite");
    if me != lite && lite.is_file() {
        // Replaces this process by the small one (whose peak the children start from; under
        // `shardsweep-torch`, libtorch's 0.5 GiB).
        let error = std::os::unix::process::CommandExt::exec(
            Command::new(&lite).args(std::env::args_os().skip(1)),
        );
        errln!("cannot hand over to {}: {error}; running the pairs here", lite.display());
    }
    let ours = if lite.is_file() { lite } else { me };
    let with_shape = |command: &mut Command| {
        for (flag, value) in
            [("--points", shape.points), ("--ranks", shape.ranks), ("--steps", shape.steps)]
        {
            command.arg(flag).arg(value.to_string());
        }
    };
    if !args.dir.exists() {
        let mut generate = Command::new(&ours);
        generate.arg("bench-analysis").arg(&args.dir).arg("--generate-only");
        with_shape(&mut generate);
        run_child(&mut generate)?;
    }
    let mut analysis = Command::new(&ours);
    analysis.arg("bench-analysis").arg(&args.dir).arg("--single");
    with_shape(&mut analysis);
    let python = args.python.clone().unwrap_or_else(default_python);
    let mut duckdb = Command::new(&python);
    duckdb.arg(&args.duckdb_script).arg(&args.dir);
    let missing = duckdb_missing(&python, &args.duckdb_script);
    if let Some(why) = &missing {
        errln!("DuckDB's side left out: {why}");
    }
    let (mut our_runs, mut their_runs) = (Vec::new(), Vec::new());
    for pair in 0..args.pairs {
        // Alternate which side goes first, so neither always meets a warm or a cold cache.
        let ours_first = pair % 2 == 0;
        for side in [ours_first, !ours_first] {
            if side {
                our_runs.push(run_child(&mut analysis)?);
            } else if missing.is_none() {
                their_runs.push(run_child(&mut duckdb)?);
            }
        }
    }
    outln!("{} pairs on {rows} rows, whole processes (analysis: {}):", args.pairs, ours.display());
    let analysis_side = summary("analysis", &our_runs);
    if missing.is_none() {
        let duckdb_side = summary("DuckDB", &their_runs);
        outln!(
            "analysis / DuckDB (medians): wall {:.2}x, peak RSS {:.2}x",
            analysis_side.0 / duckdb_side.0,
            analysis_side.1 / duckdb_side.1
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One analysis of the store in this process, printed as one line.
fn single(dir: &Path, shape: &Shape, rows: usize) -> Result<ExitCode> {
    let timing = bench::analyze(dir, shape)?;
    outln!(
        "analysis of {rows} rows ({} points x {} ranks x {} steps x 4 phases): {:.2} s for {} point summaries and {} node scores, peak RSS {:.2} GiB",
        shape.points,
        shape.ranks,
        shape.steps,
        timing.total_s,
        timing.points,
        timing.nodes,
        shardsweep::metrics::peak_rss_bytes() as f64 / (1u64 << 30) as f64
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints a side's median and range of wall time and peak RSS; returns the medians (s, bytes).
fn summary(name: &str, runs: &[Run]) -> (f64, f64) {
    let wall = spread(&runs.iter().map(|r| r.wall_s).collect::<Vec<_>>());
    let rss = spread(&runs.iter().map(|r| r.peak_rss_bytes as f64).collect::<Vec<_>>());
    let gib = |b: f64| b / (1u64 << 30) as f64;
    outln!(
        "  {name:8} wall median {:.2} s ({:.2}-{:.2} s), peak RSS median {:.2} GiB ({:.2}-{:.2} GiB), {} runs",
        wall.0,
        wall.1,
        wall.2,
        gib(rss.0),
        gib(rss.1),
        gib(rss.2),
        runs.len()
    );
    (wall.0, rss.0)
}

/// Runs `command` to its end and measures it. Its peak RSS is the kernel's account of that
/// child alone (`wait4`), so sides measured one after the other do not mix.
fn run_child(command: &mut Command) -> Result<Run> {
    let shown = format!("{command:?}");
    let start = Instant::now();
    let child = command.spawn().with_context(|| format!("cannot start {shown}"))?;
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: the pid is our own child, not yet waited for; wait4 fills both out-parameters.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr()) };
    let wall_s = start.elapsed().as_secs_f64();
    if pid < 0 {
        bail!("waiting for {shown}: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{shown} failed (wait status {status})");
    }
    // SAFETY: filled by the successful wait4 above; ru_maxrss is in KiB on Linux.
    let usage = unsafe { usage.assume_init() };
    Ok(Run { wall_s, peak_rss_bytes: usage.ru_maxrss.max(0) as u64 * 1024 })
}

/// Median, smallest and largest of `values` (not empty).
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    (median, sorted[0], sorted[n - 1])
}

/// Why DuckDB's side cannot run with `python`, or `None` when it can: the script must exist
/// and the interpreter must import `duckdb`.
fn duckdb_missing(python: &Path, script: &Path) -> Option<String> {
    if !script.is_file() {
        return Some(format!("{} not found", script.display()));
    }
    match Command::new(python).args(["-c", "import duckdb"]).output() {
        Ok(out) if out.status.success() => None,
        Ok(_) => Some(format!("{} cannot import duckdb", python.display())),
        Err(e) => Some(format!("cannot start {}: {e}", python.display())),
    }
}

/// The project's `.venv/bin/python` where there is one, else `python3`.
fn default_python() -> PathBuf {
    let venv = PathBuf::from(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}
