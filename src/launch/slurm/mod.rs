//! Slurm: render a sweep's points into batch jobs for a system, submit them, follow them, decide
//! how each point ended, and resubmit what a retry can fix. Each point inside a job runs under
//! `shardsweep supervise`, which enforces the point's own time limit and writes its records and
//! manifest; `collect` accounts for the points a job's end (time limit, scancel, a lost node)
//! cut short before their supervisor could.

mod ledger;
mod pack;
mod render;
mod scheduler;
mod states;
mod submit;
mod system;

pub use ledger::{JobEntry, Ledger};
pub use pack::{pack, walltime, JobPlan, Unfit};
pub use render::{render, JobContext, PointContext, ScriptContext};
pub use scheduler::{job_id_in, Answer, JobState, Sbatch, Slurm};
pub use states::{markdown_table as state_table, Standing, REASONS, STATES};
pub use submit::{submit, Selection, Submission, SubmitOptions, SubmittedJob};
pub use system::{QueueLimit, System};

use std::path::Path;
use std::time::Duration;

use super::folder::prepare_point_dir;
use super::supervise::{stderr_tail, supervise};
use super::{finalize, LaunchError, RunEnd};
pub use crate::plan::safe_name;
use crate::plan::{read_point, sha256_hex};
use crate::records::{
    hdf5_without_file_locking, read_spool, spool_path, Manifest, Outcome, RecordError,
    SchedulerInfo, MANIFEST_FILE, RANKS_DIR, STDERR_FILE, STDOUT_FILE,
};

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("unknown system {name:?}: no {name}.toml in {dir} and no such built-in profile ({built_in})")]
    UnknownSystem { name: String, dir: String, built_in: String },
    #[error("{path}: {}", problems.join("; "))]
    BadSystem { path: String, problems: Vec<String> },
    #[error(
        "{what} name {name:?} may reach a batch script: use letters, digits, '.', '_' and '-' only"
    )]
    UnsafeName { what: &'static str, name: String },
    #[error("path {0:?} cannot appear in an #SBATCH line: use letters, digits and ._/+,=@:- only")]
    UnsafePath(String),
    #[error("system {0} needs an account: pass --account or set account in its profile")]
    NoAccount(String),
    #[error("rendering the batch script: {0}")]
    Template(String),
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("the scheduler did not answer about jobs {jobs}: {why}; nothing was submitted, moved or collected. Try again once `squeue` answers (`shardsweep status` tells)")]
    NoAnswer { jobs: String, why: String },
    #[error("{queued} of {total} jobs were queued, then: {source}. The queued ones are in the ledger; `shardsweep resume` submits the rest (once the queue has room, if a limit stopped this)")]
    Stopped { queued: usize, total: usize, source: Box<SlurmError> },
    #[error("sbatch printed no job id for job {name} ({output:?}), and the scheduler could not be asked whether it queued it: {why}. Nothing more was submitted; `shardsweep status` finds the job by its name once the controller answers, and `resume` then goes on without submitting it twice")]
    Unconfirmed { name: String, output: String, why: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("ledger {0}")]
    Ledger(String),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Runs one point inside a job: the launcher `command` under the point's time limit, then its
/// records and manifest, with the job's id, node list and the script's hash.
///
/// A requeued job runs its batch script again: a point that already finished with the same
/// configuration is left as it is (returned, never run twice); one that had started (spools,
/// logs or a manifest of another outcome) is moved to `.attempts/` first and runs again, and
/// its manifest counts the restart.
pub fn supervise_point(
    dir: &Path,
    timeout: Duration,
    script: &Path,
    command: &[String],
) -> Result<Manifest, SlurmError> {
    hdf5_without_file_locking();
    let point = read_point(dir)?;
    let previous = Manifest::read(dir)?;
    if let Some(m) = previous.filter(|m| m.outcome == Outcome::Ok && m.digest == point.digest()) {
        tracing::info!(point = %point.id, "already finished (a requeued job); not run again");
        return Ok(m);
    }
    let started = [RANKS_DIR, STDERR_FILE, STDOUT_FILE, MANIFEST_FILE]
        .iter()
        .any(|name| dir.join(name).exists());
    if started {
        let sweep_dir = dir.parent().unwrap_or(Path::new("."));
        prepare_point_dir(sweep_dir, dir, &point)?;
    }
    let mut end = supervise(command, dir, timeout, |_| {})?;
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    end.scheduler =
        Some(scheduler_info(&env("SLURM_JOB_ID"), &env("SLURM_JOB_NODELIST"), script, None));
    Ok(finalize(dir, &point, &end)?)
}

fn scheduler_info(
    job_id: &str,
    node_list: &str,
    script: &Path,
    job_state: Option<String>,
) -> SchedulerInfo {
    SchedulerInfo {
        scheduler: "slurm".into(),
        job_id: job_id.into(),
        node_list: node_list.into(),
        script: script.display().to_string(),
        script_sha256: std::fs::read(script).map(|b| sha256_hex(&b)).unwrap_or_default(),
        job_state,
    }
}

/// Where one submitted point stands, from its records and its job's scheduler state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointState {
    /// Its manifest records how it ended.
    Ended(Outcome),
    /// Its job is pending and will start by itself.
    Queued,
    /// Its job waits on a person: what is wrong and what to do.
    NeedsUser(String),
    /// Its job runs and the point has started.
    Running,
    /// Its job runs an earlier point of the job.
    WaitingInJob,
    /// Its job ended (Slurm's state given) after the point started; `collect` records it.
    NotCollected(String),
    /// Its job ended (Slurm's state given) before reaching the point.
    NotStarted(String),
    /// The scheduler could not be asked now (why); nothing is decided about the point.
    NotKnownNow(String),
    /// Its job was never queued (sbatch's answer, confirmed by the scheduler).
    NotQueued(String),
    /// The scheduler answered and knows nothing of its job.
    Unknown,
}

impl PointState {
    /// Whether the point may still change without anyone acting: queued or running.
    pub fn is_live(&self) -> bool {
        matches!(self, PointState::Queued | PointState::Running | PointState::WaitingInJob)
    }

    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            PointState::Ended(outcome) => Some(*outcome),
            _ => None,
        }
    }
}

impl std::fmt::Display for PointState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointState::Ended(outcome) => write!(f, "{outcome}"),
            PointState::Queued => f.write_str("queued"),
            PointState::NeedsUser(why) => write!(f, "needs you: {why}"),
            PointState::Running => f.write_str("running"),
            PointState::WaitingInJob => f.write_str("waiting in its job"),
            PointState::NotCollected(job) => {
                write!(f, "ended {}, not collected", job.to_lowercase())
            }
            PointState::NotStarted(job) => {
                write!(f, "not started (job ended {})", job.to_lowercase())
            }
            PointState::NotKnownNow(_) => {
                f.write_str("not known now (the scheduler did not answer)")
            }
            PointState::NotQueued(_) => f.write_str("not queued (sbatch refused its job)"),
            PointState::Unknown => f.write_str("unknown to the scheduler"),
        }
    }
}

/// Where one submitted point stands.
#[derive(Debug, Clone)]
pub struct PointStatus {
    pub id: String,
    /// Its job's id, or `(name ...)` while only its name is known.
    pub job_id: String,
    pub state: PointState,
    pub node_list: String,
    pub steps_completed: Option<u32>,
    pub message: Option<String>,
}

/// A sweep's ledger with the scheduler's answer for each of its jobs.
pub struct Survey {
    pub ledger: Ledger,
    /// In the ledger's order.
    pub answers: Vec<Answer>,
}

impl Survey {
    /// Reads the ledger and asks the scheduler about every job in it.
    pub fn ask(sweep_dir: &Path, slurm: &Slurm) -> Result<Self, SlurmError> {
        let ledger = Ledger::read(sweep_dir)?;
        let answers = slurm.ask(&ledger.jobs);
        Ok(Self { ledger, answers })
    }

    /// The jobs the scheduler could not be asked about now, with why.
    pub fn not_known_now(&self) -> Vec<(&JobEntry, &str)> {
        self.ledger
            .jobs
            .iter()
            .zip(&self.answers)
            .filter_map(|(j, a)| match a {
                Answer::NotKnownNow(why) => Some((j, why.as_str())),
                _ => None,
            })
            .collect()
    }
}

/// Every point the sweep submitted, as the scheduler and the records see it. With `collect`,
/// points that a job's end cut short get their records and manifest now; a point whose job
/// the scheduler could not be asked about is never collected.
pub fn survey(
    survey: &Survey,
    sweep_dir: &Path,
    collect: bool,
) -> Result<Vec<PointStatus>, SlurmError> {
    if collect {
        hdf5_without_file_locking();
    }
    let latest = survey.ledger.latest_jobs();
    let mut statuses = Vec::with_capacity(latest.len());
    for (id, &k) in &latest {
        let (job, answer) = (&survey.ledger.jobs[k], &survey.answers[k]);
        let state = answer.known();
        let dir = sweep_dir.join(id);
        let mut status = PointStatus {
            id: id.to_string(),
            job_id: state.map_or_else(|| job.label(), |s| s.job_id.clone()),
            state: PointState::Unknown,
            node_list: state.map(|s| s.node_list.clone()).unwrap_or_default(),
            steps_completed: None,
            message: None,
        };
        let started = dir.join(RANKS_DIR).exists() || dir.join(STDERR_FILE).exists();
        let mut manifest = Manifest::read(&dir)?;
        if manifest.is_none() && collect && started {
            if let Some(s) = state.filter(|s| !s.is_live()) {
                manifest = Some(collect_point(&dir, job, s)?);
            }
        }
        if let Some(m) = manifest {
            status.state = PointState::Ended(m.outcome);
            status.steps_completed = m.steps_completed.iter().min().copied();
            status.message = m.message.clone();
            if let Some(s) = &m.scheduler {
                status.node_list = s.node_list.clone();
            }
        } else {
            status.state = match (answer, state) {
                (Answer::NotKnownNow(why), _) => {
                    status.message = Some(why.clone());
                    PointState::NotKnownNow(why.clone())
                }
                (_, None) if job.refused.is_some() || job.job_id.is_none() => {
                    let why = job.refused.clone().unwrap_or_else(|| "no job with its name".into());
                    status.message = Some(why.clone());
                    PointState::NotQueued(why)
                }
                (_, None) => PointState::Unknown,
                (_, Some(s)) => match s.standing {
                    Standing::NeedsUser | Standing::Unrecognised => {
                        PointState::NeedsUser(s.needs().unwrap_or_else(|| s.state.clone()))
                    }
                    Standing::Queued => PointState::Queued,
                    Standing::Running if started => PointState::Running,
                    Standing::Running => PointState::WaitingInJob,
                    Standing::Ended if started => PointState::NotCollected(s.state.clone()),
                    Standing::Ended => PointState::NotStarted(s.state.clone()),
                },
            };
        }
        statuses.push(status);
    }
    statuses.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(statuses)
}

/// Records a point whose job ended while it ran (its supervisor was stopped with the job).
fn collect_point(dir: &Path, job: &JobEntry, state: &JobState) -> Result<Manifest, SlurmError> {
    let point = read_point(dir)?;
    let stopped_by = state
        .stopped_outcome()
        .map(|o| (o, format!("job {} ended {} while the point ran", state.job_id, state.state)));
    // The run's span: from rank 0's start to the last thing any rank wrote.
    let started_at =
        read_spool(&spool_path(dir, 0))?.info.map(|i| i.started_at).unwrap_or_default();
    let last_write = std::fs::read_dir(dir.join(RANKS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .max();
    let ended_at = last_write.map(chrono::DateTime::<chrono::Utc>::from);
    let duration_s = match (chrono::DateTime::parse_from_rfc3339(&started_at), ended_at) {
        (Ok(start), Some(end)) => {
            (end - start.with_timezone(&chrono::Utc)).as_seconds_f64().max(0.0)
        }
        _ => 0.0,
    };
    let end = RunEnd {
        exit_code: None,
        stopped_by,
        started_at,
        ended_at: ended_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default(),
        duration_s,
        stderr_tail: stderr_tail(&dir.join(STDERR_FILE)),
        command: Vec::new(),
        oom_kills: 0,
        scheduler: Some(scheduler_info(
            &state.job_id,
            &state.node_list,
            Path::new(&job.script),
            Some(state.state.clone()),
        )),
    };
    tracing::info!(point = %point.id, job = %state.job_id, state = %state.state, "collected a point its job's end cut short");
    Ok(finalize(dir, &point, &end)?)
}

/// What `cancel` did.
#[derive(Debug)]
pub struct Cancelled {
    /// Jobs the scheduler called alive (queued, held, running), now cancelled.
    pub live: Vec<String>,
    /// Jobs whose state the scheduler did not give, cancelled all the same (cancelling an
    /// ended job does nothing), with why they were not known.
    pub not_known: Vec<(String, String)>,
    /// Jobs with no id whose name the scheduler could not look up: not cancellable by id.
    pub unresolved: Vec<String>,
}

/// Cancels the sweep's live jobs, and those whose state the scheduler could not give.
pub fn cancel(survey: &Survey, slurm: &Slurm) -> Result<Cancelled, SlurmError> {
    let mut done = Cancelled { live: Vec::new(), not_known: Vec::new(), unresolved: Vec::new() };
    for (job, answer) in survey.ledger.jobs.iter().zip(&survey.answers) {
        match (answer, &job.job_id) {
            (Answer::Known(s), _) if s.is_live() => done.live.push(s.job_id.clone()),
            (Answer::NotKnownNow(why), Some(id)) => done.not_known.push((id.clone(), why.clone())),
            (Answer::NotKnownNow(_), None) => done.unresolved.push(job.name.clone()),
            _ => {}
        }
    }
    let ids: Vec<String> =
        done.live.iter().cloned().chain(done.not_known.iter().map(|(id, _)| id.clone())).collect();
    slurm.cancel(&ids)?;
    Ok(done)
}
