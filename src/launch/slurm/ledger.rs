//! The sweep's account of what it submitted, in `<sweep>/slurm/ledger.jsonl`: one event per
//! line, appended and synced before the next step, so the account stays as long as the sweep
//! (20,000 jobs are 20,000 short appends, not 20,000 rewrites of one file).
//!
//! A job is recorded *before* sbatch runs (`intent`, with the job's unique name), and its id
//! after (`queued`), so a submission cut short between the two (a crash, a timeout, output
//! sbatch's parser does not know) is found again by name instead of submitted twice. A
//! `refused` event records a job the scheduler confirmed it never queued.
//!
//! Older sweeps kept `ledger.json` (one document, every job with its id); it is read first.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SlurmError;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// In submission order.
    pub jobs: Vec<JobEntry>,
    /// Position in `jobs` of each job name.
    by_name: HashMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEntry {
    /// Slurm's job id; none while sbatch's answer is not known.
    #[serde(default)]
    pub job_id: Option<String>,
    /// `--job-name`, unique to this job of this sweep (empty in older ledgers).
    #[serde(default)]
    pub name: String,
    pub system: String,
    /// Which submission (1 = `submit`, then one per `resume`).
    pub submission: u32,
    pub script: String,
    pub script_sha256: String,
    pub nodes: u32,
    pub walltime_s: u64,
    pub points: Vec<String>,
    /// When the intent was recorded (RFC 3339), just before sbatch ran.
    pub submitted_at: String,
    /// What sbatch printed (stdout, then stderr), kept whole when its id could not be read
    /// from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbatch_output: Option<String>,
    /// Why the job was never queued, when the scheduler confirmed it has no such job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl JobEntry {
    /// The id, or the name the job is looked up by, for messages.
    pub fn label(&self) -> String {
        match &self.job_id {
            Some(id) => id.clone(),
            None => format!("(name {})", self.name),
        }
    }
}

/// One line of `ledger.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
enum Event {
    Intent {
        job: JobEntry,
    },
    Queued {
        name: String,
        job_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sbatch_output: Option<String>,
    },
    Refused {
        name: String,
        why: String,
    },
    /// What sbatch printed for a job whose id it did not give.
    SbatchOutput {
        name: String,
        output: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyLedger {
    jobs: Vec<JobEntry>,
}

impl Ledger {
    pub fn path(sweep_dir: &Path) -> PathBuf {
        crate::records::sweep_dir::ledger_file(sweep_dir)
    }

    fn legacy_path(sweep_dir: &Path) -> PathBuf {
        crate::records::sweep_dir::legacy_ledger_file(sweep_dir)
    }

    /// Reads the ledger (empty when the sweep submitted nothing yet).
    ///
    /// Errors: a file that cannot be read, or a line that is not an event (named with its
    /// number). A last line without its newline is an append cut short by a crash: it is left
    /// out with a warning (its job, if sbatch ran, is found again by name).
    pub fn read(sweep_dir: &Path) -> Result<Self, SlurmError> {
        let mut ledger = Self::default();
        let legacy = Self::legacy_path(sweep_dir);
        if let Some(bytes) = read_if_present(&legacy)? {
            let old: LegacyLedger = serde_json::from_slice(&bytes)
                .map_err(|e| SlurmError::Ledger(format!("{}: {e}", legacy.display())))?;
            old.jobs.into_iter().for_each(|j| ledger.push(j));
        }
        let path = Self::path(sweep_dir);
        let Some(bytes) = read_if_present(&path)? else { return Ok(ledger) };
        let text = String::from_utf8_lossy(&bytes);
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            tracing::warn!(ledger = %path.display(), "the ledger's last line was cut short (an interrupted append); left out");
        }
        for (n, line) in text[..complete].lines().enumerate().filter(|(_, l)| !l.trim().is_empty())
        {
            let event: Event = serde_json::from_str(line).map_err(|e| {
                SlurmError::Ledger(format!("{} line {}: {e}", path.display(), n + 1))
            })?;
            ledger.apply(event).map_err(|why| {
                SlurmError::Ledger(format!("{} line {}: {why}", path.display(), n + 1))
            })?;
        }
        Ok(ledger)
    }

    fn push(&mut self, job: JobEntry) {
        if !job.name.is_empty() {
            self.by_name.insert(job.name.clone(), self.jobs.len());
        }
        self.jobs.push(job);
    }

    fn apply(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Intent { job } => {
                if self.by_name.contains_key(&job.name) {
                    return Err(format!("job name {} recorded twice", job.name));
                }
                self.push(job);
            }
            Event::Queued { name, job_id, sbatch_output } => {
                let job = self.named_mut(&name)?;
                job.job_id = Some(job_id);
                job.sbatch_output = sbatch_output.or(job.sbatch_output.take());
            }
            Event::Refused { name, why } => self.named_mut(&name)?.refused = Some(why),
            Event::SbatchOutput { name, output } => {
                self.named_mut(&name)?.sbatch_output = Some(output)
            }
        }
        Ok(())
    }

    fn named_mut(&mut self, name: &str) -> Result<&mut JobEntry, String> {
        let k = *self.by_name.get(name).ok_or_else(|| format!("no intent for job {name}"))?;
        Ok(&mut self.jobs[k])
    }

    /// Appends `event` durably, then applies it.
    fn record(&mut self, sweep_dir: &Path, event: Event) -> Result<(), SlurmError> {
        append(sweep_dir, &event)?;
        self.apply(event).map_err(SlurmError::Ledger)
    }

    /// Records a job about to be submitted (no id yet), durably, before sbatch runs.
    pub fn record_intent(&mut self, sweep_dir: &Path, job: JobEntry) -> Result<(), SlurmError> {
        self.record(sweep_dir, Event::Intent { job })
    }

    /// Records the id sbatch (or a look-up by name) gave the job named `name`.
    pub fn record_queued(
        &mut self,
        sweep_dir: &Path,
        name: &str,
        job_id: &str,
        sbatch_output: Option<String>,
    ) -> Result<(), SlurmError> {
        self.record(
            sweep_dir,
            Event::Queued { name: name.into(), job_id: job_id.into(), sbatch_output },
        )
    }

    /// Records that the job named `name` was never queued, and why.
    pub fn record_refused(
        &mut self,
        sweep_dir: &Path,
        name: &str,
        why: &str,
    ) -> Result<(), SlurmError> {
        self.record(sweep_dir, Event::Refused { name: name.into(), why: why.into() })
    }

    /// Records what sbatch printed for the job named `name` when no id could be read from it.
    pub fn record_sbatch_output(
        &mut self,
        sweep_dir: &Path,
        name: &str,
        output: &str,
    ) -> Result<(), SlurmError> {
        self.record(sweep_dir, Event::SbatchOutput { name: name.into(), output: output.into() })
    }

    pub fn next_submission(&self) -> u32 {
        self.jobs.iter().map(|j| j.submission).max().unwrap_or(0) + 1
    }

    /// For each point, the position in `jobs` of the most recent job that was to run it.
    pub fn latest_jobs(&self) -> HashMap<&str, usize> {
        let mut latest = HashMap::new();
        for (k, job) in self.jobs.iter().enumerate() {
            for point in &job.points {
                latest.insert(point.as_str(), k);
            }
        }
        latest
    }
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, SlurmError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SlurmError::Io { path: path.display().to_string(), source: e }),
    }
}

/// Appends one event as one line and syncs it, so it survives a crash of this process or
/// of the machine before the next step (sbatch) runs.
fn append(sweep_dir: &Path, event: &Event) -> Result<(), SlurmError> {
    let path = Ledger::path(sweep_dir);
    let io = |e| SlurmError::Io { path: path.display().to_string(), source: e };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut line = serde_json::to_vec(event).expect("a ledger event serialises");
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
    file.write_all(&line).map_err(io)?;
    file.sync_data().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> JobEntry {
        JobEntry {
            job_id: None,
            name: name.into(),
            system: "local".into(),
            submission: 1,
            script: "/dev/null".into(),
            script_sha256: String::new(),
            nodes: 1,
            walltime_s: 60,
            points: vec![format!("p-{name}")],
            submitted_at: "2026-01-01T00:00:00Z".into(),
            sbatch_output: None,
            refused: None,
        }
    }

    #[test]
    fn intents_ids_and_refusals_survive_a_reread_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::read(dir.path()).unwrap();
        ledger.record_intent(dir.path(), job("a")).unwrap();
        ledger.record_queued(dir.path(), "a", "7", None).unwrap();
        ledger.record_intent(dir.path(), job("b")).unwrap();
        ledger.record_refused(dir.path(), "b", "Invalid account").unwrap();
        ledger.record_intent(dir.path(), job("c")).unwrap();
        // A crash in the middle of an append.
        let mut f =
            std::fs::OpenOptions::new().append(true).open(Ledger::path(dir.path())).unwrap();
        f.write_all(b"{\"event\":\"queued\",\"name\":\"c\",\"jo").unwrap();
        let again = Ledger::read(dir.path()).unwrap();
        assert_eq!(again, ledger);
        assert_eq!(again.jobs[0].job_id.as_deref(), Some("7"));
        assert_eq!(again.jobs[1].refused.as_deref(), Some("Invalid account"));
        assert_eq!(again.jobs[2].job_id, None);
        assert_eq!(again.latest_jobs()["p-c"], 2);
        assert_eq!(again.next_submission(), 2);
    }

    #[test]
    fn a_legacy_ledger_is_read_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("slurm")).unwrap();
        let mut old = job("");
        old.job_id = Some("42".into());
        let legacy = serde_json::json!({ "jobs": [old] });
        std::fs::write(dir.path().join("slurm/ledger.json"), legacy.to_string()).unwrap();
        assert_eq!(Ledger::read(dir.path()).unwrap().jobs[0].job_id.as_deref(), Some("42"));
        std::fs::write(
            Ledger::path(dir.path()),
            "{\"event\":\"queued\",\"name\":\"x\",\"job_id\":\"1\"}\n",
        )
        .unwrap();
        let err = Ledger::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("no intent for job x"), "{err}");
    }
}
