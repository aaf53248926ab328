//! Submission: which points a submission takes, packed into jobs, rendered into batch scripts
//! and handed to sbatch. Each job is recorded in the sweep's ledger under its unique name
//! before sbatch runs and with its id after, so no interruption or unreadable answer leads
//! to a second submission of the same points.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    pack, render, walltime, Answer, JobContext, JobEntry, JobPlan, Ledger, PointContext, Sbatch,
    ScriptContext, Slurm, SlurmError, Standing, Survey, System, Unfit,
};
use crate::launch::folder::{lock_sweep, point_dir, prepare_point_dir, write_experiment};
use crate::launch::should_run;
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
    /// The scheduler client (its deadline and batch size).
    pub slurm: Slurm,
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
    let mut survey = Survey::ask(&sweep_dir, &options.slurm)?;
    refuse_unknown(&survey)?;
    if !options.dry_run {
        resolve_names(&mut survey, &sweep_dir)?;
    }
    let (chosen, left) = select(&points, &sweep_dir, &survey, selection, options.retry);
    let limit_s = |p: &PointSpec| {
        options.point_limits_s.get(&p.id).map_or(launch.timeout_s, |l| (*l).min(launch.timeout_s))
    };
    let (jobs, unfit) = pack(&chosen, system, &limit_s);
    if jobs.is_empty() {
        return Ok(Submission { jobs: Vec::new(), unfit, left });
    }
    let mut ledger = survey.ledger;
    let submission = ledger.next_submission();
    let scripts_dir = crate::records::sweep_dir::slurm_dir(&sweep_dir).join(if options.dry_run {
        "dry-run".to_string()
    } else {
        format!("submission-{submission:03}")
    });
    std::fs::create_dir_all(&scripts_dir)
        .map_err(|e| SlurmError::Io { path: scripts_dir.display().to_string(), source: e })?;
    if !options.dry_run {
        write_experiment(&sweep_dir, &options.experiment_text)?;
    }
    let by_id: BTreeMap<&str, &PointSpec> = points.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut submitted = Vec::new();
    let total = jobs.len();
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
            job: job_context(
                &job,
                k,
                submission,
                &scripts_dir,
                (&results, &sweep_dir),
                plan,
                &by_id,
                &limit_s,
            )?,
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
            let name = context.job.name.clone();
            let entry = JobEntry {
                job_id: None,
                name,
                system: system.name.clone(),
                submission,
                script: script.display().to_string(),
                script_sha256: sha256_hex(text.as_bytes()),
                nodes: job.nodes,
                walltime_s: job.walltime_s,
                points: job.points.clone(),
                submitted_at: timestamp(),
                sbatch_output: None,
                refused: None,
            };
            match submit_job(&mut ledger, &sweep_dir, &options.slurm, entry, &script) {
                Ok(id) => Some(id),
                // A queue limit (QOSMaxSubmitJobPerUserLimit and its like) or an outage
                // midway: what was queued stays in the ledger; resume takes the rest.
                Err(e) if k > 0 => {
                    return Err(SlurmError::Stopped { queued: k, total, source: Box::new(e) })
                }
                Err(e) => return Err(e),
            }
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

/// Refuses to go on while the scheduler cannot say whether a job of the sweep is alive:
/// submitting or moving its points could run them twice.
fn refuse_unknown(survey: &Survey) -> Result<(), SlurmError> {
    let unknown = survey.not_known_now();
    let Some((_, why)) = unknown.first() else { return Ok(()) };
    Err(SlurmError::NoAnswer {
        jobs: unknown.iter().map(|(j, _)| j.label()).collect::<Vec<_>>().join(", "),
        why: why.to_string(),
    })
}

/// Writes down what the scheduler said of jobs recorded without an id: the id it has under
/// the job's name, or that it has none (never queued).
fn resolve_names(survey: &mut Survey, sweep_dir: &Path) -> Result<(), SlurmError> {
    for k in 0..survey.ledger.jobs.len() {
        let job = &survey.ledger.jobs[k];
        if job.job_id.is_some() || job.refused.is_some() || job.name.is_empty() {
            continue;
        }
        let name = job.name.clone();
        match &survey.answers[k] {
            Answer::Known(state) => {
                tracing::info!(job = %state.job_id, name, "found a job that sbatch's answer left without an id");
                let id = state.job_id.clone();
                survey.ledger.record_queued(sweep_dir, &name, &id, None)?;
            }
            Answer::NeverSeen => {
                let why = format!(
                    "the scheduler has no job named {name}; sbatch printed: {}",
                    job.sbatch_output.as_deref().unwrap_or("nothing (interrupted)")
                );
                survey.ledger.record_refused(sweep_dir, &name, &why)?;
            }
            Answer::NotKnownNow(_) => unreachable!("refused before"),
        }
    }
    Ok(())
}

/// The points `selection` takes, and the others with the reason each is left out (a point
/// in a job the scheduler still holds, held ones included, is not taken again).
#[allow(clippy::type_complexity)]
fn select<'p>(
    points: &'p [PointSpec],
    sweep_dir: &Path,
    survey: &Survey,
    selection: Selection,
    retry: bool,
) -> (Vec<&'p PointSpec>, Vec<(String, String)>) {
    let latest = survey.ledger.latest_jobs();
    let (mut chosen, mut left) = (Vec::new(), Vec::new());
    for point in points {
        let answer = latest.get(point.id.as_str()).map(|&k| &survey.answers[k]);
        match choose(point, sweep_dir, answer, selection, retry) {
            Ok(()) => chosen.push(point),
            Err(reason) => left.push((point.id.clone(), reason)),
        }
    }
    (chosen, left)
}

/// What the template sees of job `k` of submission `submission`.
#[allow(clippy::too_many_arguments)]
fn job_context(
    job: &JobPlan,
    k: usize,
    submission: u32,
    scripts_dir: &Path,
    (results, sweep_dir): (&Path, &Path),
    plan: &Plan,
    by_id: &BTreeMap<&str, &PointSpec>,
    limit_s: &dyn Fn(&PointSpec) -> u64,
) -> Result<JobContext, SlurmError> {
    Ok(JobContext {
        name: job_name(&plan.sweep, sweep_dir, submission, k),
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

/// The job's name, unique to this job of this sweep folder: the sweep's name (cut to 40
/// characters), a hash of the sweep folder's path, the submission and the job. Slurm keeps
/// names of up to 1024 characters; squeue shows the start.
pub(super) fn job_name(sweep: &str, sweep_dir: &Path, submission: u32, k: usize) -> String {
    let short: String = sweep.chars().take(40).collect();
    let folder = &sha256_hex(sweep_dir.display().to_string().as_bytes())[..6];
    format!("{short}-{folder}-s{submission}-j{}", k + 1)
}

/// Submits `script` as the ledger's job `entry`: the intent is recorded first, then sbatch
/// runs once, then its id. An answer with no readable id (a failure, a time-out, output of
/// an unknown form) is checked against the scheduler by the job's name: found, its id is
/// recorded; absent, the job is recorded as refused and the submission stops; the scheduler
/// silent, the intent stays for `status` and `resume` to resolve, and the submission stops.
fn submit_job(
    ledger: &mut Ledger,
    sweep_dir: &Path,
    slurm: &Slurm,
    entry: JobEntry,
    script: &Path,
) -> Result<String, SlurmError> {
    let name = entry.name.clone();
    let (points, nodes) = (entry.points.len(), entry.nodes);
    ledger.record_intent(sweep_dir, entry)?;
    let output = match slurm.submit(script) {
        Sbatch::Queued { job_id, output } => {
            let extra = (output.trim() != job_id).then_some(output);
            ledger.record_queued(sweep_dir, &name, &job_id, extra)?;
            tracing::info!(job = %job_id, points, nodes, "submitted");
            return Ok(job_id);
        }
        Sbatch::Unclear { output } => output,
    };
    tracing::warn!(name, output = %output, "sbatch's answer holds no job id; asking the scheduler for the job by name");
    let k = ledger.jobs.len() - 1;
    ledger.jobs[k].sbatch_output = Some(output.clone());
    match slurm.ask(&ledger.jobs[k..]).remove(0) {
        Answer::Known(state) => {
            ledger.record_queued(sweep_dir, &name, &state.job_id, Some(output))?;
            tracing::info!(job = %state.job_id, points, nodes, "submitted (found by name)");
            Ok(state.job_id)
        }
        Answer::NeverSeen => {
            ledger.record_refused(sweep_dir, &name, &output)?;
            Err(SlurmError::Command { command: "sbatch".into(), message: output })
        }
        Answer::NotKnownNow(why) => {
            // Keep what sbatch printed beside the intent for `status` to show.
            ledger.record_sbatch_output(sweep_dir, &name, &output)?;
            Err(SlurmError::Unconfirmed { name, output, why })
        }
    }
}

/// Whether `selection` takes `point` (whose latest job got `answer`), or why not.
fn choose(
    point: &PointSpec,
    sweep_dir: &Path,
    answer: Option<&Answer>,
    selection: Selection,
    retry: bool,
) -> Result<(), String> {
    if let Some(state) = answer.and_then(Answer::known).filter(|s| s.is_live()) {
        return Err(match state.standing {
            Standing::NeedsUser | Standing::Unrecognised => format!(
                "in job {}, which needs you ({}); not submitted again",
                state.job_id,
                state.needs().unwrap_or_default()
            ),
            _ => format!("in job {} ({})", state.job_id, state.state.to_lowercase()),
        });
    }
    let dir = sweep_dir.join(&point.id);
    let manifest = Manifest::read(&dir).ok().flatten();
    should_run(manifest.as_ref(), &point.digest(), false, retry).map_err(|skip| skip.reason())?;
    let Selection::Resume { max_attempts } = selection else { return Ok(()) };
    let Some(manifest) = manifest else { return Ok(()) };
    let attempts = crate::records::sweep_dir::attempts_set_aside(sweep_dir, &point.id) + 1;
    if attempts >= max_attempts {
        return Err(format!(
            "ended {} after {attempts} attempts (--max-attempts {max_attempts})",
            manifest.outcome.name()
        ));
    }
    Ok(())
}
