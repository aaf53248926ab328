//! The `shardsweep` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use shardsweep::launch::slurm::{self, Selection, SubmitOptions, System};
use shardsweep::launch::{run_sweep, SweepOptions};
use shardsweep::plan::{expand, rank_memory_bytes, Experiment, Machine};
use shardsweep::records::Outcome;

#[derive(Parser)]
#[command(
    name = "shardsweep",
    version,
    about = "Sweeps of FSDP-style sharded MAE training: plan, run, measure, analyse"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Expand an experiment file into points and show them, with the points rejected and why.
    Plan {
        experiment: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Check fit against a Slurm system's devices instead of this machine.
        #[arg(long)]
        system: Option<String>,
        /// Folder of system profiles.
        #[arg(long, default_value = "slurm")]
        systems: PathBuf,
    },
    /// Run every point of an experiment locally, then analyse the sweep.
    Run {
        experiment: PathBuf,
        /// Results root (the sweep writes to <results>/<name>/).
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Run points again even if they already finished (old results are kept aside).
        #[arg(long)]
        force: bool,
        /// Skip the analysis at the end.
        #[arg(long)]
        no_analysis: bool,
    },
    /// Analyse the records of a sweep: summary table, plots and a report.
    #[cfg(feature = "analysis")]
    Analyze {
        /// The sweep's results folder, e.g. results/local-smoke.
        sweep_dir: PathBuf,
    },
    /// Compare two result sets (before and after an upgrade): per point and phase, the ratio
    /// of medians with a 95% interval and a verdict only where the change is clear.
    #[cfg(feature = "analysis")]
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
    #[cfg(feature = "analysis")]
    Trace {
        point_dir: PathBuf,
        /// Step to show (default: the last warm-up step + 1).
        #[arg(long)]
        step: Option<usize>,
        /// Output file (default: <point>/trace-step<N>.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time the analysis on a synthetic tidy store of the given shape (generated once into DIR).
    #[cfg(feature = "analysis")]
    BenchAnalysis {
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        points: usize,
        #[arg(long, default_value_t = 512)]
        ranks: usize,
        #[arg(long, default_value_t = 50)]
        steps: usize,
    },
    /// Measure what the harness costs: its collectives against bare MPI calls of the same
    /// size, and training steps with instrumentation against steps without.
    Bench {
        #[command(flatten)]
        options: BenchOptions,
        /// Ranks to run with (mpirun -np).
        #[arg(long, default_value_t = 4)]
        ranks: u32,
        #[arg(long, default_value = "mpirun")]
        mpirun: String,
    },
    /// Render an experiment's points into batch jobs for a Slurm system and submit them.
    Submit {
        experiment: PathBuf,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Submit again the points that never ran or ended in a way a retry can change
    /// (failed, timeout, node_fail, cancelled; never oom or nan_loss); finished points stay.
    Resume {
        experiment: PathBuf,
        #[command(flatten)]
        slurm: SlurmArgs,
        /// Give up on a point after this many attempts.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// Also keep the jobs off the nodes the sweep's records show to be slow (the analysis'
        /// straggler list: nodes whose ranks compute more than 5% slower than the typical rank).
        #[arg(long)]
        exclude_slow_nodes: bool,
    },
    /// Show where each submitted point stands (scheduler state and records).
    Status {
        /// An experiment file or a sweep's results folder.
        sweep: PathBuf,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Record how each point of ended jobs finished, including points a job's end cut short.
    Collect {
        /// An experiment file or a sweep's results folder.
        sweep: PathBuf,
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Wait until none of the sweep's jobs is queued or running first.
        #[arg(long)]
        wait: bool,
    },
    /// Cancel the sweep's queued and running jobs (`collect` then records what they cut short).
    Cancel {
        /// An experiment file or a sweep's results folder.
        sweep: PathBuf,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Run one point's launcher inside a batch job under the point's time limit, then write its
    /// records and manifest (the line each rendered job script runs per point).
    #[command(hide = true)]
    Supervise {
        point_dir: PathBuf,
        #[arg(long)]
        timeout_s: u64,
        /// The rendered script that runs this (its hash goes into the manifest).
        #[arg(long)]
        script: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Train one point as one MPI rank (started by `run` through mpirun).
    #[command(hide = true)]
    Worker { point_dir: PathBuf },
    /// One rank of `bench` (started by `bench` through mpirun).
    #[command(hide = true)]
    BenchWorker {
        #[command(flatten)]
        options: BenchOptions,
    },
}

#[derive(clap::Args, Clone)]
struct SlurmArgs {
    /// System profile: <systems>/<name>.toml and its template, or a built-in one
    /// (frontier, generic, local).
    #[arg(long)]
    system: String,
    /// Folder of system profiles.
    #[arg(long, default_value = "slurm")]
    systems: PathBuf,
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Account to charge (overrides the profile's).
    #[arg(long)]
    account: Option<String>,
    /// Nodes to keep the jobs off (a Slurm node list, e.g. from the analysis' straggler list).
    #[arg(long)]
    exclude: Option<String>,
    /// Write the rendered scripts under <sweep>/slurm/dry-run/ and submit nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Clone)]
struct BenchOptions {
    /// Model whose unit sizes the collectives use and which the training steps train.
    #[arg(long, default_value = "vit-small-cpu")]
    model: String,
    /// Repetitions of each collective.
    #[arg(long, default_value_t = 50)]
    repeats: usize,
    /// Training steps with and without instrumentation, each.
    #[arg(long, default_value_t = 40)]
    steps: usize,
    #[arg(long, default_value_t = 4)]
    micro_batch: u64,
}

impl BenchOptions {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--model".to_string(), self.model.clone()];
        args.extend([
            "--repeats".into(),
            self.repeats.to_string(),
            "--steps".into(),
            self.steps.to_string(),
            "--micro-batch".into(),
            self.micro_batch.to_string(),
        ]);
        args
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan { experiment, json, system, systems } => {
            plan(&experiment, json, system.as_deref(), &systems)
        }
        Command::Run { experiment, results, force, no_analysis } => {
            run(&experiment, &results, force, no_analysis)
        }
        #[cfg(feature = "analysis")]
        Command::Analyze { sweep_dir } => analyze(&sweep_dir),
        Command::Submit { experiment, slurm } => submit(&experiment, &slurm, Selection::Unfinished),
        Command::Resume { experiment, slurm, max_attempts, exclude_slow_nodes } => {
            resume(&experiment, slurm, max_attempts, exclude_slow_nodes)
        }
        Command::Status { sweep, results } => status(&sweep, &results, false, false),
        Command::Collect { sweep, results, wait } => status(&sweep, &results, true, wait),
        Command::Cancel { sweep, results } => cancel(&sweep, &results),
        Command::Supervise { point_dir, timeout_s, script, command } => {
            supervise(&point_dir, timeout_s, &script, &command)
        }
        #[cfg(feature = "analysis")]
        Command::Compare { before, after, declared, allow_undeclared, out } => {
            compare(&before, &after, declared, allow_undeclared, out)
        }
        #[cfg(feature = "analysis")]
        Command::Trace { point_dir, step, out } => trace(&point_dir, step, out),
        #[cfg(feature = "analysis")]
        Command::BenchAnalysis { dir, points, ranks, steps } => {
            bench_analysis(&dir, shardsweep_analysis::bench::Shape { points, ranks, steps })
        }
        Command::Worker { point_dir } => worker(&point_dir),
        Command::Bench { options, ranks, mpirun } => bench(&options, ranks, &mpirun),
        Command::BenchWorker { options } => bench_worker(&options),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn plan(experiment: &Path, json: bool, system: Option<&str>, systems: &Path) -> Result<ExitCode> {
    let machine = match system {
        Some(name) => System::load(name, systems)?.0.machine(),
        None => Machine::local(),
    };
    let plan = expand(&Experiment::load(experiment)?, &machine);
    if json {
        let points: Vec<serde_json::Value> = plan
            .points
            .iter()
            .map(|p| {
                let mut value = serde_json::to_value(p).expect("a point serialises");
                let extra = serde_json::json!({
                    "world_size": p.world_size(),
                    "global_batch": p.global_batch(),
                    "trainable_params": p.model.trainable_params(),
                    "train_flop_per_step": p.train_flop_per_step(),
                    "rank_memory_bytes": rank_memory_bytes(p),
                });
                value
                    .as_object_mut()
                    .expect("a point is an object")
                    .extend(extra.as_object().expect("object").clone());
                value
            })
            .collect();
        let out =
            serde_json::json!({ "sweep": plan.sweep, "points": points, "rejected": plan.rejected });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "point",
        "model",
        "strategy",
        "nodes x ranks",
        "micro batch",
        "global batch",
        "params",
        "TFLOP/step",
        "memory/rank",
    ]);
    for p in &plan.points {
        table.add_row([
            p.id.clone(),
            p.model.name.clone(),
            p.strategy.name().into(),
            format!("{} x {}", p.nodes, p.ranks_per_node),
            p.micro_batch.to_string(),
            p.global_batch().to_string(),
            format!("{:.2}M", p.model.trainable_params() as f64 / 1e6),
            format!("{:.4}", p.train_flop_per_step() / 1e12),
            format!("{:.2} GiB", rank_memory_bytes(p) / (1u64 << 30) as f64),
        ]);
    }
    println!("sweep {}: {} points to run", plan.sweep, plan.points.len());
    println!("{table}");
    if !plan.rejected.is_empty() {
        let mut rejected = Table::new();
        rejected.load_preset(UTF8_FULL_CONDENSED).set_header(["rejected point", "reason"]);
        for r in &plan.rejected {
            rejected.add_row([r.id.clone(), r.reason.clone()]);
        }
        println!("{} points rejected", plan.rejected.len());
        println!("{rejected}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run(experiment: &Path, results: &Path, force: bool, no_analysis: bool) -> Result<ExitCode> {
    let (loaded, experiment_text) = Experiment::read(experiment)?;
    let plan = expand(&loaded, &Machine::local());
    for r in &plan.rejected {
        tracing::warn!(point = %r.id, reason = %r.reason, "rejected at plan time");
    }
    if plan.points.is_empty() {
        bail!(
            "{}: no point to run ({} rejected; see `shardsweep plan`)",
            experiment.display(),
            plan.rejected.len()
        );
    }
    let options = SweepOptions {
        results: results.to_path_buf(),
        force,
        experiment_text,
        exe: std::env::current_exe().context("locating this program for mpirun")?,
    };
    let outcomes = run_sweep(&plan, &loaded.launch, &options)?;
    let not_ok: Vec<_> = outcomes.iter().filter(|r| r.outcome != Outcome::Ok).collect();
    for r in &not_ok {
        eprintln!("{}: {} {}", r.id, r.outcome.name(), r.message.as_deref().unwrap_or(""));
    }
    let sweep_dir = results.join(&plan.sweep);
    #[cfg(feature = "analysis")]
    if !no_analysis {
        analyze(&sweep_dir)?;
    }
    #[cfg(not(feature = "analysis"))]
    let _ = no_analysis;
    let ran = outcomes.iter().filter(|r| !r.skipped).count();
    eprintln!(
        "{}: {} points ({} run, {} already finished), {} not ok; results in {}",
        plan.sweep,
        outcomes.len(),
        ran,
        outcomes.len() - ran,
        not_ok.len(),
        sweep_dir.display()
    );
    Ok(if not_ok.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

#[cfg(feature = "analysis")]
fn analyze(sweep_dir: &Path) -> Result<ExitCode> {
    let report = shardsweep_analysis::analyze_sweep(sweep_dir)?;
    println!("{}", report.table);
    if !report.exclude.is_empty() {
        println!("slow nodes: resume with --exclude {}", report.exclude.join(","));
    }
    eprintln!(
        "tidy store {}: {} points rebuilt, {} unchanged",
        report.store.dir.display(),
        report.store.rebuilt.len(),
        report.store.reused
    );
    for file in &report.files {
        eprintln!("wrote {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn resume(
    experiment: &Path,
    mut slurm: SlurmArgs,
    max_attempts: u32,
    exclude_slow_nodes: bool,
) -> Result<ExitCode> {
    if exclude_slow_nodes {
        slurm.exclude =
            with_slow_nodes(slurm.exclude.take(), &sweep_dir(experiment, &slurm.results)?)?;
    }
    submit(experiment, &slurm, Selection::Resume { max_attempts })
}

/// `exclude` and the nodes the analysis of the sweep's records finds slow, as one node list.
#[cfg(feature = "analysis")]
fn with_slow_nodes(exclude: Option<String>, sweep_dir: &Path) -> Result<Option<String>> {
    use shardsweep_analysis::{
        report::STRAGGLER_THRESHOLD, stragglers::exclude_list, AnalysisError,
    };
    let summary = if sweep_dir.is_dir() {
        shardsweep_analysis::summarize_sweep(sweep_dir)
    } else {
        Err(AnalysisError::Empty(sweep_dir.display().to_string()))
    };
    let slow = match summary {
        Ok((_, nodes, _)) => {
            let slow = exclude_list(&nodes, STRAGGLER_THRESHOLD);
            for node in nodes.iter().filter(|n| slow.contains(&n.hostname)) {
                eprintln!(
                    "excluding {}: its ranks compute {:.1}% slower than the typical rank",
                    node.hostname,
                    (node.score - 1.0) * 100.0
                );
            }
            slow
        }
        Err(AnalysisError::Empty(_)) => {
            eprintln!(
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

#[cfg(not(feature = "analysis"))]
fn with_slow_nodes(_: Option<String>, _: &Path) -> Result<Option<String>> {
    anyhow::bail!("--exclude-slow-nodes needs the analysis, which this build leaves out (build with the default features)")
}

#[cfg(feature = "analysis")]
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
        println!(
            "environment {}: {:?} -> {:?}{}",
            d.field,
            d.before,
            d.after,
            if d.declared { " (declared)" } else { " (NOT declared)" }
        );
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "point",
        "phase",
        "ratio after/before",
        "95% interval",
        "p",
        "verdict",
    ]);
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
    println!("{table}");
    for file in &files {
        eprintln!("wrote {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "analysis")]
fn trace(point_dir: &Path, step: Option<usize>, out: Option<PathBuf>) -> Result<ExitCode> {
    let manifest = shardsweep_analysis::read_manifest(point_dir)?;
    let step = step.unwrap_or(manifest.warmup_steps as usize);
    let trace = shardsweep_analysis::trace::chrome_trace(point_dir, step)?;
    let out = out.unwrap_or_else(|| point_dir.join(format!("trace-step{step}.json")));
    std::fs::write(&out, serde_json::to_vec(&trace)?)?;
    eprintln!("wrote {} (open in ui.perfetto.dev or chrome://tracing)", out.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "analysis")]
fn bench_analysis(dir: &Path, shape: shardsweep_analysis::bench::Shape) -> Result<ExitCode> {
    use shardsweep_analysis::bench;
    let rows = shape.points * shape.ranks * shape.steps * 4;
    if !dir.exists() {
        let start = std::time::Instant::now();
        bench::generate(dir, &shape)?;
        eprintln!(
            "generated {rows} rows in {} in {:.1} s",
            dir.display(),
            start.elapsed().as_secs_f64()
        );
    }
    let timing = bench::analyze(dir, &shape)?;
    println!(
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

fn submit(experiment: &Path, args: &SlurmArgs, selection: Selection) -> Result<ExitCode> {
    let (system, template) = System::load(&args.system, &args.systems)?;
    let (loaded, experiment_text) = Experiment::read(experiment)?;
    let plan = expand(&loaded, &system.machine());
    let options = SubmitOptions {
        results: args.results.clone(),
        exe: std::env::current_exe().context("locating this program for the job scripts")?,
        account: args.account.clone(),
        exclude_nodes: args.exclude.clone(),
        dry_run: args.dry_run,
        experiment_text,
    };
    let submission = slurm::submit(&plan, &loaded.launch, &system, &template, selection, &options)?;
    for r in &plan.rejected {
        println!("rejected {}: {}", r.id, r.reason);
    }
    for u in &submission.unfit {
        println!("does not fit {}: {}", u.id, u.reason);
    }
    for (id, why) in &submission.left {
        println!("left out {id}: {why}");
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "job",
        "job id",
        "nodes",
        "walltime",
        "points",
        "node-hours",
        "script",
    ]);
    for (k, job) in submission.jobs.iter().enumerate() {
        table.add_row([
            (k + 1).to_string(),
            job.job_id.clone().unwrap_or_else(|| "(dry run)".into()),
            job.plan.nodes.to_string(),
            slurm::walltime(job.plan.walltime_s),
            job.plan.points.len().to_string(),
            format!("{:.2}", job.plan.node_hours()),
            job.script.display().to_string(),
        ]);
    }
    println!("{table}");
    let points: usize = submission.jobs.iter().map(|j| j.plan.points.len()).sum();
    println!(
        "budget: {} points in {} jobs on {}, at most {:.2} node-hours{}",
        points,
        submission.jobs.len(),
        system.name,
        submission.node_hours(),
        if args.dry_run { " (dry run: nothing submitted)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

/// A sweep's results folder from an experiment file or the folder itself.
fn sweep_dir(target: &Path, results: &Path) -> Result<PathBuf> {
    if target.is_dir() {
        return Ok(target.to_path_buf());
    }
    Ok(results.join(Experiment::load(target)?.name))
}

fn status(target: &Path, results: &Path, collect: bool, wait: bool) -> Result<ExitCode> {
    let dir = sweep_dir(target, results)?;
    let mut statuses = slurm::survey(&dir, false)?;
    while wait
        && statuses
            .iter()
            .any(|s| ["queued", "running", "waiting in its job"].contains(&s.state.as_str()))
    {
        std::thread::sleep(std::time::Duration::from_secs(2));
        statuses = slurm::survey(&dir, false)?;
    }
    if collect {
        statuses = slurm::survey(&dir, true)?;
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["point", "job id", "state", "steps", "nodes", "message"]);
    for s in &statuses {
        let message: String = s
            .message
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(80)
            .collect();
        table.add_row([
            s.id.clone(),
            s.job_id.clone(),
            s.state.clone(),
            s.steps_completed.map(|n| n.to_string()).unwrap_or_default(),
            s.node_list.clone(),
            message,
        ]);
    }
    println!("{table}");
    let ok = statuses.iter().filter(|s| s.outcome == Some(Outcome::Ok)).count();
    println!("{}: {} points submitted, {} ok", dir.display(), statuses.len(), ok);
    Ok(if !collect || ok == statuses.len() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn cancel(target: &Path, results: &Path) -> Result<ExitCode> {
    let cancelled = slurm::cancel(&sweep_dir(target, results)?)?;
    println!("cancelled {} jobs: {}", cancelled.len(), cancelled.join(" "));
    Ok(ExitCode::SUCCESS)
}

fn supervise(
    point_dir: &Path,
    timeout_s: u64,
    script: &Path,
    command: &[String],
) -> Result<ExitCode> {
    let manifest = slurm::supervise_point(
        point_dir,
        std::time::Duration::from_secs(timeout_s),
        script,
        command,
    )?;
    eprintln!(
        "{}: {} {}",
        manifest.point,
        manifest.outcome.name(),
        manifest.message.as_deref().unwrap_or("")
    );
    Ok(if manifest.outcome == Outcome::Ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn worker(point_dir: &Path) -> Result<ExitCode> {
    use mpi::traits::Communicator;
    let point = shardsweep::records::read_point(point_dir)?;
    let universe = mpi::initialize().context("MPI is already initialised")?;
    let world = universe.world();
    if world.size() as u32 != point.world_size() {
        bail!(
            "started with {} ranks but point {} needs {}",
            world.size(),
            point.id,
            point.world_size()
        );
    }
    let comm = shardsweep::comm::MpiComm::new(universe.world());
    match shardsweep::train::run_rank(&point, point_dir, &comm) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("rank {}: {error}", world.rank());
            // The other ranks may be waiting in a collective: take the whole job down.
            world.abort(3)
        }
    }
}

fn bench(options: &BenchOptions, ranks: u32, mpirun: &str) -> Result<ExitCode> {
    if shardsweep::model::preset(&options.model).is_none() {
        bail!("unknown model {}", options.model);
    }
    let mut program = vec![std::env::current_exe()?.display().to_string(), "bench-worker".into()];
    program.extend(options.args());
    let command = shardsweep::launch::mpirun_command(mpirun, ranks, &[], &program);
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .with_context(|| format!("starting {mpirun}"))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn bench_worker(options: &BenchOptions) -> Result<ExitCode> {
    use mpi::traits::Communicator;
    tch::set_num_threads(1);
    let universe = mpi::initialize().context("MPI is already initialised")?;
    let world = universe.world();
    let comm = shardsweep::comm::MpiComm::new(universe.world());
    let mut results =
        shardsweep::bench::collectives(&world, &comm, &options.model, options.repeats)?;
    results.push(shardsweep::bench::instrumentation(
        &world,
        &comm,
        &options.model,
        options.micro_batch,
        options.steps,
    )?);
    if world.rank() == 0 {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header([
            "what",
            "size",
            "harness (median)",
            "bare (median)",
            "ratio",
        ]);
        for r in &results {
            table.add_row([
                r.what.clone(),
                r.detail.clone(),
                format!("{:.1} us", r.harness_s * 1e6),
                format!("{:.1} us", r.bare_s * 1e6),
                format!("{:.3}", r.ratio()),
            ]);
        }
        println!("harness vs bare MPI (collectives) and instrumented vs uninstrumented (training step); slowest rank per repetition, median");
        println!("{table}");
    }
    Ok(ExitCode::SUCCESS)
}
