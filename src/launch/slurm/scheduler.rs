//! The Slurm commands the harness uses: sbatch to submit, squeue for live jobs, sacct for
//! ended ones (scontrol where the cluster keeps no accounting database), scancel.

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

    /// The state of each job the scheduler still knows of.
    pub fn states(&self, job_ids: &[String]) -> Result<BTreeMap<String, JobState>, SlurmError> {
        let mut states = BTreeMap::new();
        if job_ids.is_empty() {
            return Ok(states);
        }
        let list = job_ids.join(",");
        // squeue fails outright when none of the ids is live any more.
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
        let ended: Vec<&String> =
            job_ids.iter().filter(|id| states.get(*id).is_none_or(|s| !s.is_live())).collect();
        if ended.is_empty() {
            return Ok(states);
        }
        let ended_list = ended.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
        match run(Command::new("sacct").args([
            "-n",
            "-P",
            "-X",
            "-o",
            "JobID,State,ExitCode,NodeList",
            "-j",
            &ended_list,
        ])) {
            Ok(out) => states.extend(parse_rows(&out, |f| {
                (
                    f[0],
                    JobState {
                        state: state_name(f[1]),
                        exit_code: Some(f[2].into()),
                        node_list: f[3].into(),
                    },
                )
            })),
            // No accounting database: slurmctld still holds recently ended jobs.
            Err(_) => {
                for id in ended {
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
