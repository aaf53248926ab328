//! Submission: which points a submission takes, packed into jobs, rendered into batch scripts
//! and handed to sbatch, each job recorded in the sweep's ledger as soon as it is queued.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    pack, render, walltime, JobContext, JobEntry, JobPlan, JobState, Ledger, PointContext,
    ScriptContext, Slurm, SlurmError, System, Unfit,
};
use crate::launch::should_run;
use crate::launch::sweep::{lock_sweep, point_dir, prepare_point_dir};
use crate::metrics::timestamp;
use crate::plan::{safe_name, sha256_hex, LaunchSettings, Plan, PointSpec};
use crate::records::{write_atomic, Manifest};

pub(super) fn sbatch_safe_path(path: &Path) -> Result<String, SlurmError> {
    let text = path.display().to_string();
    if text.is_empty()
        || !text.chars().all(|c| c.is_ascii_alphanumeric() || "._/+,=@:%-".contains(c))
    {
        return Err(SlurmError::UnsafePath(text));
    }
    Ok(text)
}

pub struct SubmitOptions {
    pub results: PathBuf,
    pub exe: PathBuf,
    pub account: Option<String>,
    pub exclude_nodes: Option<String>,
    /// Render and keep the scripts, submit nothing, touch no point folder.
    pub dry_run: bool,
    pub experiment_text: String,
    /// Per-point time limits (from predicted run times); points without one get the
    /// experiment's `launch.timeout_s`, which also caps them.
    pub point_limits_s: BTreeMap<String, u64>,
    /// Submit points whose outcome would repeat (oom, nan_loss) too; see [`should_run`].
    pub retry: bool,
    /// Submit without the sweep's lock (for file systems without `flock()`).
    pub no_lock: bool,
}

/// Which of a sweep's points a submission takes.
#[derive(Debug, Clone, Copy)]
pub enum Selection {
    /// Every point not finished and not already queued or running.
    Unfinished,
    /// Points never run, and points that ended in a way a retry can change (failed, timeout,
    /// node_fail, cancelled), up to `max_attempts` attempts each; oom and nan_loss only with
    /// `--retry` (see [`should_run`]).
    Resume { max_attempts: u32 },
}

/// What a submission did (or, dry, would do).
#[derive(Debug)]
pub struct Submission {
    pub jobs: Vec<SubmittedJob>,
    pub unfit: Vec<Unfit>,
    /// Points left out, and why (finished, queued, out of attempts, not retryable).
    pub left: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct SubmittedJob {
    pub plan: JobPlan,
    pub script: PathBuf,
    pub job_id: Option<String>,
}

impl Submission {
    pub fn node_hours(&self) -> f64 {
        self.jobs.iter().fold(0.0, |sum, j| sum + j.plan.node_hours())
    }
}

pub fn submit(
    plan: &Plan,
    launch: &LaunchSettings,
    system: &System,
    template: &str,
    selection: Selection,
    options: &SubmitOptions,
) -> Result<Submission, SlurmError> {
    let account = check_names(plan, system, options)?;
    let results = std::path::absolute(&options.results)
        .map_err(|e| SlurmError::Io { path: options.results.display().to_string(), source: e })?;
    let sweep_dir = results.join(&plan.sweep);
    sbatch_safe_path(&sweep_dir)?;
    let _lock = if options.dry_run {
        None
    } else if options.no_lock {
        std::fs::create_dir_all(&sweep_dir)
            .map_err(|e| SlurmError::Io { path: sweep_dir.display().to_string(), source: e })?;
        tracing::warn!(sweep = %plan.sweep, "submitting without the sweep's lock (--no-lock): start no other submission or run of this sweep meanwhile");
        None
    } else {
        Some(lock_sweep(&sweep_dir, &plan.sweep)?)
    };

    // Each point carries the system it is for (and the peak its MFU is measured against).
    let points: Vec<PointSpec> = plan
        .points
        .iter()
        .map(|p| PointSpec { system: Some(system.spec_for(p)), ..p.clone() })
        .collect();
    let mut ledger = Ledger::read(&sweep_dir)?;
    let (chosen, left) = select(&points, &sweep_dir, &ledger, selection, options.retry)?;
    let limit_s = |p: &PointSpec| {
        options.point_limits_s.get(&p.id).map_or(launch.timeout_s, |l| (*l).min(launch.timeout_s))
    };
    let (jobs, unfit) = pack(&chosen, system, &limit_s);
    if jobs.is_empty() {
        return Ok(Submission { jobs: Vec::new(), unfit, left });
    }
    let submission = ledger.next_submission();
    let scripts_dir = sweep_dir.join("slurm").join(if options.dry_run {
        "dry-run".to_string()
    } else {
        format!("submission-{submission:03}")
    });
    std::fs::create_dir_all(&scripts_dir)
        .map_err(|e| SlurmError::Io { path: scripts_dir.display().to_string(), source: e })?;
    if !options.dry_run {
        write_atomic(&sweep_dir.join("experiment.toml"), options.experiment_text.as_bytes())?;
    }
    let by_id: BTreeMap<&str, &PointSpec> = points.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut submitted = Vec::new();
    for (k, job) in jobs.into_iter().enumerate() {
        let script = scripts_dir.join(format!("job-{:03}.sh", k + 1));
        let context = ScriptContext {
            sweep: &plan.sweep,
            system,
            account: account.as_deref(),
            exclude_nodes: options.exclude_nodes.as_deref(),
            exe: options.exe.display().to_string(),
            script: script.display().to_string(),
            rerun: format!(
                "sbatch {}",
                shlex::try_quote(&script.display().to_string()).unwrap_or_default()
            ),
            template: system.template_file(),
            job: job_context(&job, k, submission, &scripts_dir, &results, plan, &by_id, &limit_s)?,
        };
        let text = render(template, &context)?;
        write_atomic(&script, text.as_bytes())?;
        let job_id = if options.dry_run {
            None
        } else {
            for id in &job.points {
                let dir = point_dir(&results, &plan.sweep, id);
                prepare_point_dir(&sweep_dir, &dir, by_id[id.as_str()])?;
            }
            Some(submit_job(&mut ledger, &sweep_dir, system, submission, &script, &text, &job)?)
        };
        submitted.push(SubmittedJob { plan: job, script, job_id });
    }
    Ok(Submission { jobs: submitted, unfit, left })
}

/// Refuses names that would reach a batch script unsafely; returns the account to charge
/// (the option's, else the system's), which a system may require.
fn check_names(
    plan: &Plan,
    system: &System,
    options: &SubmitOptions,
) -> Result<Option<String>, SlurmError> {
    if !safe_name(&plan.sweep) {
        return Err(SlurmError::UnsafeName { what: "sweep", name: plan.sweep.clone() });
    }
    if let Some(bad) = plan.points.iter().find(|p| !safe_name(&p.id)) {
        return Err(SlurmError::UnsafeName { what: "point", name: bad.id.clone() });
    }
    if let Some(nodes) = options
        .exclude_nodes
        .as_deref()
        .filter(|n| !n.chars().all(|c| c.is_ascii_alphanumeric() || "[],-_.".contains(c)))
    {
        return Err(SlurmError::UnsafeName { what: "node list", name: nodes.into() });
    }
    let account = options.account.clone().or_else(|| system.account.clone());
    if let Some(a) = account.as_deref().filter(|a| !safe_name(a)) {
        return Err(SlurmError::UnsafeName { what: "account", name: a.into() });
    }
    if system.account_required && account.is_none() {
        return Err(SlurmError::NoAccount(system.name.clone()));
    }
    Ok(account)
}

/// The points `selection` takes, and the others with the reason each is left out. Asks the
/// scheduler about the ledger's jobs (a point in a queued or running job is not taken again).
#[allow(clippy::type_complexity)]
fn select<'p>(
    points: &'p [PointSpec],
    sweep_dir: &Path,
    ledger: &Ledger,
    selection: Selection,
    retry: bool,
) -> Result<(Vec<&'p PointSpec>, Vec<(String, String)>), SlurmError> {
    let states = if ledger.jobs.is_empty() {
        BTreeMap::new()
    } else {
        Slurm.states(&ledger.submissions())?
    };
    let (mut chosen, mut left) = (Vec::new(), Vec::new());
    for point in points {
        match choose(point, sweep_dir, ledger, &states, selection, retry) {
            Ok(()) => chosen.push(point),
            Err(reason) => left.push((point.id.clone(), reason)),
        }
    }
    Ok((chosen, left))
}

/// What the template sees of job `k` of submission `submission`.
#[allow(clippy::too_many_arguments)]
fn job_context(
    job: &JobPlan,
    k: usize,
    submission: u32,
    scripts_dir: &Path,
    results: &Path,
    plan: &Plan,
    by_id: &BTreeMap<&str, &PointSpec>,
    limit_s: &dyn Fn(&PointSpec) -> u64,
) -> Result<JobContext, SlurmError> {
    Ok(JobContext {
        name: format!("{}-s{submission}-j{}", plan.sweep, k + 1).chars().take(60).collect(),
        nodes: job.nodes,
        max_ranks: job.max_ranks,
        walltime: walltime(job.walltime_s),
        output: sbatch_safe_path(&scripts_dir.join(format!("job-{:03}-%j.out", k + 1)))?,
        points: job
            .points
            .iter()
            .map(|id| {
                let p = by_id[id.as_str()];
                PointContext {
                    id: id.clone(),
                    dir: point_dir(results, &plan.sweep, id).display().to_string(),
                    nodes: p.nodes,
                    ranks_per_node: p.ranks_per_node,
                    ranks: p.world_size(),
                    timeout_s: limit_s(p),
                    backend: p.backend().name(),
                }
            })
            .collect(),
    })
}

/// Submits `script` (rendered as `text`) and records the job in the ledger at once, so an
/// interrupted submission still knows what it submitted. Returns the job id.
fn submit_job(
    ledger: &mut Ledger,
    sweep_dir: &Path,
    system: &System,
    submission: u32,
    script: &Path,
    text: &str,
    job: &JobPlan,
) -> Result<String, SlurmError> {
    let id = Slurm.submit(script)?;
    ledger.jobs.push(JobEntry {
        job_id: id.clone(),
        system: system.name.clone(),
        submission,
        script: script.display().to_string(),
        script_sha256: sha256_hex(text.as_bytes()),
        nodes: job.nodes,
        walltime_s: job.walltime_s,
        points: job.points.clone(),
        submitted_at: timestamp(),
    });
    ledger.write(sweep_dir)?;
    tracing::info!(job = %id, points = job.points.len(), nodes = job.nodes, "submitted");
    Ok(id)
}

/// Whether `selection` takes `point`, or why not.
fn choose(
    point: &PointSpec,
    sweep_dir: &Path,
    ledger: &Ledger,
    states: &BTreeMap<String, JobState>,
    selection: Selection,
    retry: bool,
) -> Result<(), String> {
    if let Some(job) = ledger.latest_job_of(&point.id) {
        if let Some(state) = states.get(&job.job_id).filter(|s| s.is_live()) {
            return Err(format!("in job {} ({})", job.job_id, state.state.to_lowercase()));
        }
    }
    let dir = sweep_dir.join(&point.id);
    let manifest = Manifest::read(&dir).ok().flatten();
    should_run(manifest.as_ref(), &point.digest(), false, retry).map_err(|skip| skip.reason())?;
    let Selection::Resume { max_attempts } = selection else { return Ok(()) };
    let Some(manifest) = manifest else { return Ok(()) };
    let attempts = std::fs::read_dir(sweep_dir.join(".attempts").join(&point.id))
        .map(|d| d.count() as u32)
        .unwrap_or(0)
        + 1;
    if attempts >= max_attempts {
        return Err(format!(
            "ended {} after {attempts} attempts (--max-attempts {max_attempts})",
            manifest.outcome.name()
        ));
    }
    Ok(())
}
