//! The sweep's account of what it submitted: every job, its script, its hash and its points,
//! in `<sweep>/slurm/ledger.json`, rewritten atomically after each submission.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SlurmError;
use crate::records::write_atomic;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    pub jobs: Vec<JobEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEntry {
    pub job_id: String,
    pub system: String,
    /// Which submission (1 = `submit`, then one per `resume`).
    pub submission: u32,
    pub script: String,
    pub script_sha256: String,
    pub nodes: u32,
    pub walltime_s: u64,
    pub points: Vec<String>,
    pub submitted_at: String,
}

impl Ledger {
    pub fn path(sweep_dir: &Path) -> PathBuf {
        sweep_dir.join("slurm").join("ledger.json")
    }

    pub fn read(sweep_dir: &Path) -> Result<Self, SlurmError> {
        let path = Self::path(sweep_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| SlurmError::Ledger(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(SlurmError::Io { path: path.display().to_string(), source: e }),
        }
    }

    pub fn write(&self, sweep_dir: &Path) -> Result<(), SlurmError> {
        let json = serde_json::to_vec_pretty(self).expect("a ledger serialises");
        write_atomic(&Self::path(sweep_dir), &json)?;
        Ok(())
    }

    pub fn next_submission(&self) -> u32 {
        self.jobs.iter().map(|j| j.submission).max().unwrap_or(0) + 1
    }

    /// The most recent job that was to run `point`.
    pub fn latest_job_of(&self, point: &str) -> Option<&JobEntry> {
        self.jobs.iter().rev().find(|j| j.points.iter().any(|p| p == point))
    }

    pub fn job_ids(&self) -> Vec<String> {
        self.jobs.iter().map(|j| j.job_id.clone()).collect()
    }

    /// Each job's id and when it was submitted, for [`Slurm::states`](super::Slurm::states).
    pub fn submissions(&self) -> Vec<(String, String)> {
        self.jobs.iter().map(|j| (j.job_id.clone(), j.submitted_at.clone())).collect()
    }
}
