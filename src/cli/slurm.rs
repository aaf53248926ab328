//! The batch-job commands: `submit`, `resume`, `status`, `collect`, `cancel`, and `supervise`
//! (the line each job script runs per point).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use shardsweep::launch::slurm::{self, Selection, SubmitOptions, System};
use shardsweep::plan::{expand, Experiment};
use shardsweep::records::Outcome;

use super::sweep_dir;

#[derive(clap::Args, Clone)]
pub struct SlurmArgs {
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
    /// A calibration (`shardsweep calibrate`) for this system: each point's time limit becomes
    /// its predicted run time x the margin, plus 60 s, at most `launch.timeout_s`.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Predicted run time x this is a point's limit when --calibration is given.
    #[arg(long, default_value_t = 3.0)]
    walltime_margin: f64,
    /// Submit only the candidates: per (model, nodes), the point predicted fastest and those
    /// whose 90% interval reaches its prediction (the others are left out with theirs).
    #[arg(long, requires = "calibration")]
    candidates: bool,
    /// Also run points that ended oom or nan_loss (left out by default: the same
    /// configuration would end the same way).
    #[arg(long)]
    retry: bool,
    /// Submit without the sweep's lock, for file systems without flock() (some NFS and Lustre
    /// mounts); start no other submission or run of the sweep meanwhile.
    #[arg(long)]
    no_lock: bool,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

/// How long to keep asking a scheduler that does not answer.
#[derive(clap::Args, Clone)]
pub struct SchedulerArgs {
    /// Give up asking squeue, sacct and scancel after this many seconds in all (each command
    /// is retried with back-off until then); nothing is decided on a job they did not answer
    /// for.
    #[arg(long, default_value_t = 60)]
    scheduler_deadline_s: u64,
}

impl SchedulerArgs {
    fn client(&self) -> slurm::Slurm {
        slurm::Slurm {
            deadline: std::time::Duration::from_secs(self.scheduler_deadline_s),
            ..slurm::Slurm::default()
        }
    }
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    experiment: PathBuf,
    #[command(flatten)]
    slurm: SlurmArgs,
}

#[derive(clap::Args)]
pub struct ResumeArgs {
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
}

/// A sweep named by its experiment file or its results folder.
#[derive(clap::Args)]
pub struct SweepArgs {
    /// An experiment file or a sweep's results folder.
    sweep: PathBuf,
    #[arg(long, default_value = "results")]
    results: PathBuf,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

#[derive(clap::Args)]
pub struct CollectArgs {
    #[command(flatten)]
    sweep: SweepArgs,
    /// Wait until none of the sweep's jobs is queued or running first.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (then collect what has ended).
    #[arg(long, default_value_t = 86_400)]
    wait_limit_s: u64,
}

#[derive(clap::Args)]
pub struct SuperviseArgs {
    point_dir: PathBuf,
    #[arg(long)]
    timeout_s: u64,
    /// The rendered script that runs this (its hash goes into the manifest).
    #[arg(long)]
    script: PathBuf,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn submit(args: SubmitArgs) -> Result<ExitCode> {
    submit_selected(&args.experiment, &args.slurm, Selection::Unfinished)
}

pub fn resume(args: ResumeArgs) -> Result<ExitCode> {
    let mut slurm = args.slurm;
    if args.exclude_slow_nodes {
        slurm.exclude =
            with_slow_nodes(slurm.exclude.take(), &sweep_dir(&args.experiment, &slurm.results)?)?;
    }
    submit_selected(&args.experiment, &slurm, Selection::Resume { max_attempts: args.max_attempts })
}

#[cfg(feature = "analysis")]
use super::analysis::with_slow_nodes;

#[cfg(not(feature = "analysis"))]
fn with_slow_nodes(_: Option<String>, _: &Path) -> Result<Option<String>> {
    anyhow::bail!("--exclude-slow-nodes needs the analysis, which this build leaves out (build with the default features)")
}

fn submit_selected(experiment: &Path, args: &SlurmArgs, selection: Selection) -> Result<ExitCode> {
    let (system, template) = System::load(&args.system, &args.systems)?;
    let (loaded, experiment_text) = Experiment::read(experiment)?;
    let mut plan = expand(&loaded, &system.machine());
    let mut point_limits_s = std::collections::BTreeMap::new();
    if let Some(path) = &args.calibration {
        if !(args.walltime_margin.is_finite() && args.walltime_margin >= 1.0) {
            anyhow::bail!("--walltime-margin {}: must be at least 1", args.walltime_margin);
        }
        let (model, _) = super::predict::perf_model(&args.system, &args.systems, Some(path))?;
        if args.candidates {
            shardsweep::predict::decision::keep_candidates(&mut plan, &model);
        }
        for p in &plan.points {
            let run_s = model.predict(p).times.step_s * f64::from(p.settings.steps);
            point_limits_s.insert(p.id.clone(), (args.walltime_margin * run_s).ceil() as u64 + 60);
        }
        println!(
            "time limits: predicted run time x {} + 60 s per point, at most {} s",
            args.walltime_margin, loaded.launch.timeout_s
        );
    }
    let options = SubmitOptions {
        point_limits_s,
        results: args.results.clone(),
        exe: std::env::current_exe().context("locating this program for the job scripts")?,
        account: args.account.clone(),
        exclude_nodes: args.exclude.clone(),
        dry_run: args.dry_run,
        experiment_text,
        retry: args.retry,
        no_lock: args.no_lock,
        slurm: args.scheduler.client(),
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
    let mut table =
        super::table(["job", "job id", "nodes", "walltime", "points", "node-hours", "script"]);
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

pub fn status(args: SweepArgs) -> Result<ExitCode> {
    report(&args, false, None)
}

pub fn collect(args: CollectArgs) -> Result<ExitCode> {
    let wait = args.wait.then(|| std::time::Duration::from_secs(args.wait_limit_s));
    report(&args.sweep, true, wait)
}

/// Points still queued or running, as `point (state, job id)`.
fn live(statuses: &[slurm::PointStatus]) -> Vec<String> {
    statuses
        .iter()
        .filter(|s| s.state.is_live())
        .map(|s| format!("{} ({}, job {})", s.id, s.state, s.job_id))
        .collect()
}

/// Exit status of `status` and `collect` when the scheduler did not answer for some job.
const NOT_KNOWN_NOW: u8 = 3;

fn report(args: &SweepArgs, collect: bool, wait: Option<std::time::Duration>) -> Result<ExitCode> {
    let dir = sweep_dir(&args.sweep, &args.results)?;
    let client = args.scheduler.client();
    let mut survey = slurm::Survey::ask(&dir, &client)?;
    let mut statuses = slurm::survey(&survey, &dir, false)?;
    if let Some(limit) = wait {
        let start = std::time::Instant::now();
        let mut said = Vec::new();
        loop {
            let waiting = live(&statuses);
            if waiting.is_empty() {
                break;
            }
            if start.elapsed() >= limit {
                eprintln!(
                    "gave up waiting after {} s (--wait-limit-s); still queued or running: {}",
                    limit.as_secs(),
                    waiting.join(", ")
                );
                break;
            }
            if waiting != said {
                eprintln!("waiting for {} points: {}", waiting.len(), waiting.join(", "));
                said = waiting;
            }
            std::thread::sleep(std::time::Duration::from_secs(2).min(limit));
            survey = slurm::Survey::ask(&dir, &client)?;
            statuses = slurm::survey(&survey, &dir, false)?;
        }
    }
    if collect {
        statuses = slurm::survey(&survey, &dir, true)?;
    }
    let mut table = super::table(["point", "job id", "state", "steps", "nodes", "message"]);
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
            s.state.to_string(),
            s.steps_completed.map(|n| n.to_string()).unwrap_or_default(),
            s.node_list.clone(),
            message,
        ]);
    }
    println!("{table}");
    let ok = statuses.iter().filter(|s| s.state.outcome() == Some(Outcome::Ok)).count();
    println!("{}: {} points submitted, {} ok", dir.display(), statuses.len(), ok);
    let mut needs: Vec<String> = survey
        .answers
        .iter()
        .filter_map(|a| a.known().and_then(|s| s.needs().map(|n| format!("job {}: {n}", s.job_id))))
        .collect();
    needs.dedup();
    if !needs.is_empty() {
        eprintln!("{} jobs wait on you and will not start by themselves:", needs.len());
        needs.iter().for_each(|n| eprintln!("  {n}"));
    }
    let unknown = survey.not_known_now();
    if let Some((_, why)) = unknown.first() {
        eprintln!(
            "the scheduler did not answer about {} jobs ({why}); their points are shown as not known now and nothing was {}",
            unknown.len(),
            if collect { "collected for them" } else { "decided" }
        );
        return Ok(ExitCode::from(NOT_KNOWN_NOW));
    }
    Ok(if !collect || ok == statuses.len() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

pub fn cancel(args: SweepArgs) -> Result<ExitCode> {
    let dir = sweep_dir(&args.sweep, &args.results)?;
    let client = args.scheduler.client();
    let survey = slurm::Survey::ask(&dir, &client)?;
    let done = slurm::cancel(&survey, &client)?;
    println!("cancelled {} jobs: {}", done.live.len(), done.live.join(" "));
    if let Some((_, why)) = done.not_known.first() {
        let ids: Vec<&str> = done.not_known.iter().map(|(id, _)| id.as_str()).collect();
        println!(
            "also cancelled {} jobs whose state the scheduler did not give ({why}): {}",
            ids.len(),
            ids.join(" ")
        );
    }
    if !done.unresolved.is_empty() {
        eprintln!(
            "could not cancel {} jobs that sbatch queued without giving an id, since the scheduler could not be asked for them by name: {}; run cancel again once it answers",
            done.unresolved.len(),
            done.unresolved.join(" ")
        );
        return Ok(ExitCode::from(NOT_KNOWN_NOW));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn supervise(args: SuperviseArgs) -> Result<ExitCode> {
    let manifest = slurm::supervise_point(
        &args.point_dir,
        std::time::Duration::from_secs(args.timeout_s),
        &args.script,
        &args.command,
    )?;
    eprintln!(
        "{}: {} {}",
        manifest.point,
        manifest.outcome.name(),
        manifest.message.as_deref().unwrap_or("")
    );
    Ok(if manifest.outcome == Outcome::Ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
