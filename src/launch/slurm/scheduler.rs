//! The Slurm commands the harness uses: sbatch to submit, squeue for live jobs, sacct for
//! ended ones (scontrol where the cluster keeps no accounting database), scancel.
//!
//! Which answer counts: the controller's (squeue) for every job it still knows, ended ones
//! included, since accounting (sacct) can lag it by minutes and still call an ended job
//! running. Accounting answers only for jobs the controller has forgotten, and only with a
//! record of a job submitted no earlier than the ledger's own submission of it (job ids are
//! reused once Slurm's counter wraps or a cluster is rebuilt).

use std::collections::BTreeMap;
use std::process::Command;

use super::SlurmError;
use crate::records::Outcome;

/// A job as the scheduler reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    /// Slurm's state name, e.g. `RUNNING`, `COMPLETED`, `TIMEOUT`, `CANCELLED`.
    pub state: String,
    /// `exit:signal` of the batch script, when ended.
    pub exit_code: Option<String>,
    pub node_list: String,
}

impl JobState {
    /// Still queued or running (or about to be requeued).
    pub fn is_live(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "SUSPENDED"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SIGNALING"
                | "STAGE_OUT"
        )
    }

    /// How a point still running when the job ended was stopped, if the job's state says so.
    pub fn stopped_outcome(&self) -> Option<Outcome> {
        match self.state.as_str() {
            "TIMEOUT" | "DEADLINE" => Some(Outcome::Timeout),
            "CANCELLED" | "PREEMPTED" => Some(Outcome::Cancelled),
            "NODE_FAIL" | "BOOT_FAIL" => Some(Outcome::NodeFail),
            "OUT_OF_MEMORY" => Some(Outcome::Oom),
            _ => None,
        }
    }
}

pub struct Slurm;

impl Slurm {
    /// Submits a batch script; returns the job id.
    pub fn submit(&self, script: &std::path::Path) -> Result<String, SlurmError> {
        let out = run(Command::new("sbatch").arg("--parsable").arg(script))?;
        // `--parsable` prints `id` or `id;cluster`.
        let id = out.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(SlurmError::Command {
                command: "sbatch".into(),
                message: format!("unexpected output {out:?}"),
            });
        }
        Ok(id)
    }

    pub fn cancel(&self, job_ids: &[String]) -> Result<(), SlurmError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        run(Command::new("scancel").args(job_ids)).map(|_| ())
    }

    /// The state of each of `jobs` (id, and when the ledger submitted it, RFC 3339) the
    /// scheduler knows of.
    pub fn states(
        &self,
        jobs: &[(String, String)],
    ) -> Result<BTreeMap<String, JobState>, SlurmError> {
        let mut states = BTreeMap::new();
        if jobs.is_empty() {
            return Ok(states);
        }
        let list = jobs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(",");
        // squeue fails outright when none of the ids is known any more.
        if let Ok(out) =
            run(Command::new("squeue").args(["-h", "-t", "all", "-o", "%i|%T|%N", "-j", &list]))
        {
            states.extend(parse_rows(&out, |f| {
                (
                    f[0],
                    JobState { state: state_name(f[1]), exit_code: None, node_list: f[2].into() },
                )
            }));
        }
        let forgotten: Vec<&(String, String)> =
            jobs.iter().filter(|(id, _)| !states.contains_key(id)).collect();
        if forgotten.is_empty() {
            return Ok(states);
        }
        let submitted = |id: &str| {
            forgotten.iter().find(|(j, _)| j == id).and_then(|(_, at)| submitted_local(at))
        };
        let earliest = forgotten.iter().filter_map(|(_, at)| submitted_local(at)).min();
        let ended_list = forgotten.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(",");
        let mut sacct = Command::new("sacct");
        sacct.args(["-n", "-P", "-X", "-o", "JobID,State,ExitCode,NodeList,Submit"]);
        if let Some(start) = earliest {
            sacct.args(["-S", &start.format(SLURM_TIME).to_string()]);
        }
        match run(sacct.args(["-j", &ended_list])) {
            Ok(out) => {
                for line in out.lines() {
                    let f: Vec<&str> = line.trim().split('|').collect();
                    if f.len() < 5 || f[0].contains('.') {
                        continue;
                    }
                    let theirs = chrono::NaiveDateTime::parse_from_str(f[4], SLURM_TIME).ok();
                    if let (Some(ours), Some(theirs)) = (submitted(f[0]), theirs) {
                        if theirs < ours - chrono::Duration::seconds(CLOCK_SLACK_S) {
                            tracing::debug!(
                                job = f[0],
                                submit = f[4],
                                "an older job with the same id; ignored"
                            );
                            continue;
                        }
                    }
                    let state = JobState {
                        state: state_name(f[1]),
                        exit_code: Some(f[2].into()),
                        node_list: f[3].into(),
                    };
                    states.insert(f[0].to_string(), state);
                }
            }
            // No accounting database: slurmctld still holds recently ended jobs.
            Err(_) => {
                for (id, _) in forgotten {
                    if let Ok(out) = run(Command::new("scontrol").args(["show", "job", "-o", id])) {
                        let field = |name: &str| {
                            out.split_whitespace()
                                .find_map(|kv| kv.strip_prefix(name))
                                .unwrap_or_default()
                                .to_string()
                        };
                        let state = JobState {
                            state: state_name(&field("JobState=")),
                            exit_code: Some(field("ExitCode=")),
                            node_list: field("NodeList="),
                        };
                        states.insert(id.clone(), state);
                    }
                }
            }
        }
        Ok(states)
    }
}

/// Slurm's time format on the command line and in sacct's output (the cluster's local time).
const SLURM_TIME: &str = "%Y-%m-%dT%H:%M:%S";
/// Clock difference allowed between this machine and the controller when matching a job's
/// submission time.
const CLOCK_SLACK_S: i64 = 300;

/// An RFC 3339 time as the local wall-clock time Slurm prints.
fn submitted_local(rfc3339: &str) -> Option<chrono::NaiveDateTime> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.with_timezone(&chrono::Local).naive_local())
}

/// `CANCELLED by 0` -> `CANCELLED`.
fn state_name(raw: &str) -> String {
    raw.split_whitespace().next().unwrap_or_default().trim_end_matches('+').to_string()
}

fn parse_rows<'a>(
    text: &'a str,
    row: impl Fn(&[&'a str]) -> (&'a str, JobState),
) -> Vec<(String, JobState)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.trim().split('|').collect();
            (fields.len() >= 3).then(|| {
                let (id, state) = row(&fields);
                (id.to_string(), state)
            })
        })
        .filter(|(id, _)| !id.contains('.'))
        .collect()
}

fn run(command: &mut Command) -> Result<String, SlurmError> {
    let name = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|e| SlurmError::Command {
        command: name.clone(),
        message: format!("cannot start: {e}"),
    })?;
    if !output.status.success() {
        return Err(SlurmError::Command {
            command: name,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
