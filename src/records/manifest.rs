//! `manifest.json`: how a point ended (outcome, steps, times), its configuration and where and
//! with what it ran (provenance); written last, the mark of a point that has been accounted for.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{check_schema, read_json, write_json, PointConfig, RecordError, MANIFEST_FILE};

/// How a point's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every rank finished every step.
    Ok,
    Failed,
    /// Stopped by the harness at the point's time limit.
    Timeout,
    /// Out of memory, on evidence: an allocation failure or out-of-memory message, the OOM
    /// killer's count rising, or Slurm's OUT_OF_MEMORY. A bare SIGKILL is `Failed`.
    Oom,
    /// The scheduler lost a node the point ran on.
    NodeFail,
    /// Cancelled by a user or an administrator (scancel) before it finished.
    Cancelled,
    /// Training diverged: a step's loss was NaN or infinite.
    NanLoss,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::Oom => "oom",
            Outcome::NodeFail => "node_fail",
            Outcome::Cancelled => "cancelled",
            Outcome::NanLoss => "nan_loss",
        }
    }

    /// Whether running the point again may end differently: the machine, the scheduler or the
    /// clock stopped it, not the point itself. OOM and diverged losses repeat; a crash is
    /// assumed transient (a bad node, a network error) and retried a bounded number of times.
    pub fn is_retryable(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::Timeout | Outcome::NodeFail | Outcome::Cancelled)
    }
}

/// Where a batch scheduler ran the point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerInfo {
    pub scheduler: String,
    pub job_id: String,
    pub node_list: String,
    /// The rendered batch script (the replay artifact) and its SHA-256.
    pub script: String,
    pub script_sha256: String,
    /// The job's state when the point's outcome was decided, if the scheduler was asked.
    pub job_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankLayout {
    pub rank: u32,
    pub node: u32,
    pub local_rank: u32,
    pub hostname: String,
    pub pid: u32,
}

/// Where and with what a point ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub git_commit: String,
    pub binary_version: String,
    pub torch_version: String,
    pub comm_library: String,
    pub hostnames: Vec<String>,
    pub ranks: Vec<RankLayout>,
    /// Environment variables that change how training or communication behaves (rank 0's).
    pub env: BTreeMap<String, String>,
    pub command: Vec<String>,
    /// Rank 0's libraries, drivers and modules (see [`crate::Fingerprint`]); empty in
    /// manifests from before it was recorded.
    #[serde(default)]
    pub fingerprint: crate::Fingerprint,
}

/// The account of one point: written last and atomically, so its presence means the point's
/// records are complete for however far the run got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub sweep: String,
    pub point: String,
    /// Digest of the resolved point configuration.
    pub digest: String,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub started_at: String,
    pub ended_at: String,
    pub duration_s: f64,
    pub steps_planned: u32,
    pub warmup_steps: u32,
    /// Steps each rank completed, by rank.
    pub steps_completed: Vec<u32>,
    pub world_size: u32,
    pub nodes: u32,
    pub ranks_per_node: u32,
    pub global_batch: u32,
    pub train_flop_per_step: f64,
    /// The resolved point (`point.json`), so the manifest stands on its own.
    pub config: serde_json::Value,
    pub provenance: Provenance,
    pub records_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerInfo>,
    /// Earlier attempts of this point, kept in `<sweep>/.attempts/<point>/` (a re-run,
    /// `resume`, or a Slurm requeue that started the point again). Absent in older manifests.
    #[serde(default)]
    pub restarts: u32,
}

impl Manifest {
    /// The manifest in `point_dir`, `None` if the point has none yet.
    ///
    /// # Errors
    /// [`RecordError::Schema`] if another schema version wrote it (checked before the rest is
    /// parsed, so the error names the version, not a missing field); I/O and JSON errors with
    /// the file's path.
    pub fn read(point_dir: &Path) -> Result<Option<Self>, RecordError> {
        let path = point_dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let value: serde_json::Value = read_json(&path)?;
        let found = value.get("schema_version").and_then(|v| v.as_u64()).unwrap_or(0);
        check_schema(&path, u32::try_from(found).unwrap_or(u32::MAX))?;
        serde_json::from_value(value)
            .map(Some)
            .map_err(|source| RecordError::Json { path: path.clone(), source })
    }

    pub fn write(&self, point_dir: &Path) -> Result<(), RecordError> {
        write_json(&point_dir.join(MANIFEST_FILE), self)
    }

    /// The typed view of the point's configuration this manifest carries.
    ///
    /// # Errors
    /// [`RecordError::Json`] (naming `point_dir`'s manifest) if `config` lacks a field.
    pub fn point_config(&self, point_dir: &Path) -> Result<PointConfig, RecordError> {
        serde_json::from_value(self.config.clone())
            .map_err(|source| RecordError::Json { path: point_dir.join(MANIFEST_FILE), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_of_another_schema_version_is_refused_by_name_and_version() {
        let dir = std::env::temp_dir().join(format!("shardsweep-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A future manifest: another version and fields this build does not know.
        let future = serde_json::json!({"schema_version": 99, "new_field": 1});
        std::fs::write(dir.join(MANIFEST_FILE), future.to_string()).unwrap();
        let error = Manifest::read(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(error.contains("manifest.json"), "{error}");
        assert!(error.contains("schema version 99"), "{error}");
        assert!(error.contains(&format!("reads version {}", crate::SCHEMA_VERSION)), "{error}");
    }

    #[test]
    fn a_missing_manifest_is_none() {
        assert!(Manifest::read(Path::new("/nonexistent/point")).unwrap().is_none());
    }
}
