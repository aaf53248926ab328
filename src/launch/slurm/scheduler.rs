//! The scheduler client: sbatch to submit, squeue for the jobs the controller knows, sacct for
//! the ones it has forgotten, scancel. One contract: every query answers, per job of the
//! ledger, [`Answer::Known`], [`Answer::NotKnownNow`] (a command timed out, the controller or
//! the accounting database did not answer, a command failed) or [`Answer::NeverSeen`], and
//! every caller decides from that: nothing is submitted, moved or finalised on "not known now".
//!
//! Which answer counts: the controller's (squeue) for every job it still knows, ended ones
//! included, since accounting (sacct) can lag it by minutes and still call an ended job
//! running. Accounting answers for jobs the controller has forgotten, and, while the controller
//! does not answer, for jobs it records as ended (an ended state is final). A record counts
//! only if it was submitted no earlier than the ledger's own submission of the job (ids are
//! reused once Slurm's counter wraps or a cluster is rebuilt).
//!
//! Queries are batched (at most [`Slurm::ids_per_call`] ids or names per command, far below
//! Linux's 128 KiB limit for one argument), each command is retried with exponential back-off
//! until the query's deadline, and sbatch is never retried: its answer, read or not, is
//! checked against the scheduler by the job's unique name.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::states::{standing, state_rule, Standing};
use super::{JobEntry, SlurmError};
use crate::records::Outcome;

/// A job as the scheduler reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub job_id: String,
    /// Slurm's state name, e.g. `RUNNING`, `COMPLETED`, `TIMEOUT`, `CANCELLED`.
    pub state: String,
    /// The pending reason (`Priority`, `JobHeldUser`, ...), `None` when there is none.
    pub reason: String,
    /// `exit:signal` of the batch script, when accounting reported it.
    pub exit_code: Option<String>,
    pub node_list: String,
    pub standing: Standing,
    /// What a person should do, for a job that waits on one.
    pub advice: Option<&'static str>,
}

impl JobState {
    fn new(job_id: &str, state: &str, reason: &str, node_list: &str) -> Self {
        let state = state_name(state);
        let reason = reason.trim().to_string();
        let (standing, advice) = standing(&state, &reason);
        Self {
            job_id: job_id.into(),
            state,
            reason,
            exit_code: None,
            node_list: node_list.into(),
            standing,
            advice,
        }
    }

    /// Still in the scheduler's hands (queued, held, running, or a state not understood).
    pub fn is_live(&self) -> bool {
        self.standing.is_live()
    }

    /// How a point still running when the job ended was stopped, if the job's state says so.
    pub fn stopped_outcome(&self) -> Option<Outcome> {
        state_rule(&self.state).and_then(|r| r.stopped)
    }

    /// What to do about a job that waits on a person, with its id filled in.
    pub fn needs(&self) -> Option<String> {
        let advice = match self.standing {
            Standing::Unrecognised => "a Slurm state this version of shardsweep does not know",
            _ => self.advice?,
        };
        let why = if self.reason.is_empty() || self.reason == "None" {
            self.state.clone()
        } else {
            format!("{}, {}", self.state, self.reason)
        };
        Some(format!("{why}: {}", advice.replace("ID", &self.job_id)))
    }
}

/// What the scheduler said of one job of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Known(JobState),
    /// It could not be asked now; why (the commands tried, the deadline, their last error).
    NotKnownNow(String),
    /// The scheduler answered and knows no such job: it ended and was forgotten with no
    /// accounting record, or (for a job with no id) it was never queued.
    NeverSeen,
}

impl Answer {
    pub fn known(&self) -> Option<&JobState> {
        match self {
            Answer::Known(state) => Some(state),
            _ => None,
        }
    }
}

/// What sbatch answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Sbatch {
    /// Its output held exactly one job id.
    Queued { job_id: String, output: String },
    /// It failed, timed out, or printed no single id: whether the job was queued is
    /// for a look-up by name to tell.
    Unclear { output: String },
}

/// The Slurm commands, with how long a query may take and how many ids one command gets.
#[derive(Debug, Clone)]
pub struct Slurm {
    /// A query's total deadline over every command and retry it runs.
    pub deadline: Duration,
    /// Ids (or names) per squeue, sacct or scancel command.
    pub ids_per_call: usize,
}

impl Default for Slurm {
    fn default() -> Self {
        let ids_per_call = std::env::var("SHARDSWEEP_SLURM_IDS_PER_CALL")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(1000);
        Self { deadline: Duration::from_secs(60), ids_per_call }
    }
}

/// squeue's columns: id, state, reason, nodes, submit time, name (last: names may hold `|`).
const SQUEUE_FORMAT: &str = "%i|%T|%r|%N|%V|%j";
const SACCT_FORMAT: &str = "JobID,State,Reason,NodeList,Submit,ExitCode,JobName";
/// squeue's answer when none of the ids it was given is known (not a failure to answer).
const UNKNOWN_IDS: &str = "Invalid job id";
/// sacct's answer on a cluster with no accounting database.
const NO_ACCOUNTING: &str = "accounting storage is disabled";

/// A row of squeue or sacct.
struct Row {
    state: JobState,
    submitted: Option<chrono::NaiveDateTime>,
    name: String,
}

/// What one batch of a query got.
enum Batch {
    Rows(Vec<Row>),
    /// The command answered that it has no record of any of them.
    None,
    NoAnswer(String),
}

/// When a query must have its answers, and its whole allowance (for messages).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    total: Duration,
}

impl Deadline {
    fn after(total: Duration) -> Self {
        Self { at: Instant::now() + total, total }
    }
}

/// One source's word on one job.
enum Found {
    Row(JobState),
    Absent,
    NoAnswer(String),
}

impl Slurm {
    /// The scheduler's answer for each of `jobs`, in the same order. A job with no id is
    /// looked up by its name; a job the ledger records as refused was never queued.
    pub fn ask(&self, jobs: &[JobEntry]) -> Vec<Answer> {
        let deadline = Deadline::after(self.deadline);
        let asked = |k: &usize| jobs[*k].refused.is_none();
        let by_id: Vec<usize> =
            (0..jobs.len()).filter(|k| asked(k) && jobs[*k].job_id.is_some()).collect();
        let by_name: Vec<usize> = (0..jobs.len())
            .filter(|k| asked(k) && jobs[*k].job_id.is_none() && !jobs[*k].name.is_empty())
            .collect();

        let mut controller = self.lookup(jobs, &by_id, false, deadline, &|keys, left| {
            squeue(&["-j", &keys.join(",")], left)
        });
        controller.extend(self.lookup(jobs, &by_name, true, deadline, &|keys, left| {
            squeue(&["-n", &keys.join(",")], left)
        }));
        let not_found = |k: &usize| !matches!(controller.get(k), Some(Found::Row(_)));
        let ids_left: Vec<usize> = by_id.iter().copied().filter(not_found).collect();
        let names_left: Vec<usize> = by_name.iter().copied().filter(not_found).collect();
        let since = ids_left
            .iter()
            .chain(&names_left)
            .filter_map(|&k| submitted_local(&jobs[k].submitted_at))
            .min()
            .map(|t| (t - chrono::Duration::seconds(CLOCK_SLACK_S)).format(SLURM_TIME).to_string());
        let since = since.as_deref();
        let mut accounting = self.lookup(jobs, &ids_left, false, deadline, &|keys, left| {
            sacct(since, &["-j", &keys.join(",")], left)
        });
        accounting.extend(self.lookup(jobs, &names_left, true, deadline, &|keys, left| {
            sacct(since, &["--name", &keys.join(",")], left)
        }));

        (0..jobs.len())
            .map(|k| match (controller.remove(&k), accounting.remove(&k)) {
                (Some(Found::Row(state)), _) => Answer::Known(state),
                (Some(Found::Absent), Some(Found::Row(state))) => Answer::Known(state),
                (Some(Found::Absent), Some(Found::NoAnswer(why))) => Answer::NotKnownNow(why),
                (Some(Found::NoAnswer(_)), Some(Found::Row(state)))
                    if state.standing == Standing::Ended =>
                {
                    Answer::Known(state)
                }
                (Some(Found::NoAnswer(why)), other) => Answer::NotKnownNow(match other {
                    Some(Found::NoAnswer(also)) => format!("{why}; {also}"),
                    _ => why,
                }),
                // Refused, or asked of neither source (no id and no name: an old ledger).
                _ => Answer::NeverSeen,
            })
            .collect()
    }

    /// Asks one source about `which` of `jobs` in batches, by id or by name; each job gets
    /// the newest row with its key submitted no earlier than the ledger's own submission.
    fn lookup(
        &self,
        jobs: &[JobEntry],
        which: &[usize],
        by_name: bool,
        deadline: Deadline,
        run: &dyn Fn(&[String], Deadline) -> Batch,
    ) -> HashMap<usize, Found> {
        let key = |k: usize| {
            if by_name {
                jobs[k].name.clone()
            } else {
                jobs[k].job_id.clone().unwrap_or_default()
            }
        };
        let mut found = HashMap::new();
        for chunk in which.chunks(self.ids_per_call) {
            let keys: Vec<String> = chunk.iter().map(|&k| key(k)).collect();
            let mut rows: HashMap<String, Vec<Row>> = HashMap::new();
            match run(&keys, deadline) {
                Batch::Rows(list) => {
                    for row in list {
                        let key = if by_name { row.name.clone() } else { row.state.job_id.clone() };
                        rows.entry(key).or_default().push(row);
                    }
                }
                Batch::None => {}
                Batch::NoAnswer(why) => {
                    found.extend(chunk.iter().map(|&k| (k, Found::NoAnswer(why.clone()))));
                    continue;
                }
            }
            for (&k, key) in chunk.iter().zip(&keys) {
                let ours = submitted_local(&jobs[k].submitted_at);
                let newest = rows
                    .remove(key)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| match (ours, r.submitted) {
                        (Some(ours), Some(theirs)) => {
                            let older = theirs < ours - chrono::Duration::seconds(CLOCK_SLACK_S);
                            if older {
                                tracing::debug!(job = %r.state.job_id, "an older job with the same id or name; ignored");
                            }
                            !older
                        }
                        _ => true,
                    })
                    .max_by_key(|r| r.submitted);
                found.insert(k, newest.map_or(Found::Absent, |r| Found::Row(r.state)));
            }
        }
        found
    }

    /// Submits a batch script, once: a failed or unreadable answer is not retried, since the
    /// job may have been queued all the same.
    pub fn submit(&self, script: &std::path::Path) -> Sbatch {
        let args = vec!["--parsable".to_string(), script.display().to_string()];
        let output = match run_once("sbatch", &args, Instant::now() + self.deadline) {
            Ok(out) => out,
            Err(why) => return Sbatch::Unclear { output: why },
        };
        let text = output.text();
        match (output.success, job_id_in(&output.stdout)) {
            (true, Some(job_id)) => Sbatch::Queued { job_id, output: text },
            _ => Sbatch::Unclear { output: text },
        }
    }

    /// Cancels `job_ids` in batches, retrying until the deadline. A job that ended meanwhile
    /// is not an error.
    pub fn cancel(&self, job_ids: &[String]) -> Result<(), SlurmError> {
        let deadline = Deadline::after(self.deadline);
        for chunk in job_ids.chunks(self.ids_per_call) {
            let ended = |said: &str| {
                let mut lines = said.lines().filter(|l| !l.trim().is_empty()).peekable();
                lines.peek().is_some()
                    && lines.all(|l| {
                        l.contains("already completing or completed") || l.contains(UNKNOWN_IDS)
                    })
            };
            retrying("scancel", chunk, deadline, ended)
                .map_err(|message| SlurmError::Command { command: "scancel".into(), message })?;
        }
        Ok(())
    }
}

fn squeue(args: &[&str], deadline: Deadline) -> Batch {
    let mut full = vec!["-h", "-t", "all", "-o", SQUEUE_FORMAT];
    full.extend_from_slice(args);
    rows("squeue", &full, deadline, UNKNOWN_IDS, |f: [&str; 6]| Row {
        state: JobState::new(f[0], f[1], f[2], f[3]),
        submitted: parse_time(f[4]),
        name: f[5].to_string(),
    })
}

fn sacct(since: Option<&str>, args: &[&str], deadline: Deadline) -> Batch {
    let mut full = vec!["-n", "-P", "-X", "-o", SACCT_FORMAT];
    if let Some(since) = since {
        full.extend(["-S", since, "-E", "now"]);
    }
    full.extend_from_slice(args);
    rows("sacct", &full, deadline, NO_ACCOUNTING, |f: [&str; 7]| {
        let mut state = JobState::new(f[0], f[1], f[2], f[3]);
        state.exit_code = Some(f[5].to_string());
        Row { state, submitted: parse_time(f[4]), name: f[6].to_string() }
    })
}

/// Runs a query (retried until `deadline`) and reads its `|`-separated rows of `N` fields (the
/// last may hold `|`), leaving out job steps (`123.batch`). `none` is the text with which the
/// command answers that it has no record of any of the jobs asked for.
fn rows<const N: usize>(
    program: &str,
    args: &[&str],
    deadline: Deadline,
    none: &str,
    row: impl Fn([&str; N]) -> Row,
) -> Batch {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match retrying(program, &args, deadline, |said| said.contains(none)) {
        Ok(Some(out)) => Batch::Rows(
            out.lines()
                .filter_map(|line| {
                    let fields: [&str; N] =
                        line.trim().splitn(N, '|').collect::<Vec<_>>().try_into().ok()?;
                    (!fields[0].contains('.')).then(|| row(fields))
                })
                .collect(),
        ),
        Ok(None) => Batch::None,
        Err(why) => Batch::NoAnswer(why),
    }
}

/// The one job id in sbatch's stdout: `id` or `id;cluster` on a line of its own (`--parsable`),
/// or `Submitted batch job id`, whatever else it printed around it. None when there is no id
/// or more than one.
pub fn job_id_in(stdout: &str) -> Option<String> {
    let mut ids: Vec<String> = stdout
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let parsable = line.split(';').next().filter(|id| {
                !id.is_empty()
                    && id.chars().all(|c| c.is_ascii_digit())
                    && line[id.len()..]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ";_.-".contains(c))
            });
            let said = line.split("Submitted batch job ").nth(1).and_then(|rest| {
                let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
                (!id.is_empty()).then_some(id)
            });
            parsable.map(str::to_string).or(said)
        })
        .collect();
    ids.dedup();
    (ids.len() == 1).then(|| ids.remove(0))
}

/// What a command printed and whether it succeeded.
struct CommandOutput {
    success: bool,
    stdout: String,
    stderr: String,
}

impl CommandOutput {
    fn text(&self) -> String {
        match (self.stdout.trim(), self.stderr.trim()) {
            (out, "") => out.to_string(),
            ("", err) => err.to_string(),
            (out, err) => format!("{out}\n{err}"),
        }
    }
}

/// Runs `program args` until it succeeds, or fails with an error `answered` recognises as an
/// answer (`Ok(None)`), retrying other failures with back-off (0.5 s, doubling, at most 8 s)
/// until `deadline`. The error names the command, the deadline, the tries and the last error.
fn retrying(
    program: &str,
    args: &[String],
    deadline: Deadline,
    answered: impl Fn(&str) -> bool,
) -> Result<Option<String>, String> {
    let mut backoff = Duration::from_millis(500);
    let mut tries = 0;
    loop {
        if Instant::now() >= deadline.at {
            return Err(format!(
                "{program} not asked: the {} s deadline (--scheduler-deadline-s) had passed",
                deadline.total.as_secs()
            ));
        }
        tries += 1;
        let last = match run_once(program, args, deadline.at) {
            Ok(out) if out.success => return Ok(Some(out.stdout)),
            // sacct prints some of its answers on stdout, with a failing status.
            Ok(out) if answered(&out.stderr) || answered(&out.stdout) => return Ok(None),
            Ok(out) => out.text(),
            Err(why) if why.contains("cannot start") => {
                return Err(format!("{program}: {why} (are Slurm's commands on PATH?)"))
            }
            Err(why) => why,
        };
        let left = deadline.at.saturating_duration_since(Instant::now());
        if left <= backoff {
            return Err(format!(
                "{program} gave no answer within the {} s deadline (--scheduler-deadline-s; {tries} {}; last: {})",
                deadline.total.as_secs(),
                if tries == 1 { "try" } else { "tries" },
                last.lines().last().unwrap_or("no output").trim()
            ));
        }
        tracing::debug!(program, tries, error = %last, "retrying");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(8));
    }
}

/// Runs a command once, killed at `deadline`; its output is read as it comes, so a long
/// answer (20,000 rows) never fills a pipe.
fn run_once(program: &str, args: &[String], deadline: Instant) -> Result<CommandOutput, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} timed out"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("{program}: {e}")),
        }
    };
    Ok(CommandOutput {
        success: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Slurm's time format on the command line and in its output (the cluster's local time).
const SLURM_TIME: &str = "%Y-%m-%dT%H:%M:%S";
/// Clock difference allowed between this machine and the controller when matching a job's
/// submission time.
const CLOCK_SLACK_S: i64 = 300;

fn parse_time(text: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(text.trim(), SLURM_TIME).ok()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_is_found_in_every_form_sbatch_and_site_plugins_print() {
        for (out, id) in [
            ("1234\n", Some("1234")),
            ("1234;frontier\n", Some("1234")),
            ("sbatch: warning: --mem ignored\nNOTE: charging project ABC\n77\n", Some("77")),
            ("Submitted batch job 99\n", Some("99")),
            ("Submitted batch job 99 on cluster c1\n", Some("99")),
            ("  42  \r\n", Some("42")),
            ("", None),
            ("job queued\n", None),
            ("12\n13\n", None),
            ("Your account has 3% left\n", None),
        ] {
            assert_eq!(job_id_in(out).as_deref(), id, "{out:?}");
        }
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_and_retries_stop_at_the_deadline() {
        let start = Instant::now();
        let second = || Deadline::after(Duration::from_secs(1));
        let err = retrying("sleep", &["30".into()], second(), |_| false).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        assert!(err.contains("no answer within") && err.contains("timed out"), "{err}");
        let err = retrying("no-such-slurm-command", &[], second(), |_| false).unwrap_err();
        assert!(err.contains("cannot start") && err.contains("PATH"), "{err}");
    }
}
