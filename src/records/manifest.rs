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
    /// A rank or the launcher failed for another reason (a crash, an error exit, a bare SIGKILL).
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
    /// The snake_case name written in manifests and shown in tables (`node_fail`).
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
    /// The scheduler's name (`slurm`).
    pub scheduler: String,
    /// The scheduler's job id (Slurm's `SLURM_JOB_ID`).
    pub job_id: String,
    /// The job's nodes in the scheduler's compressed form (`SLURM_JOB_NODELIST`).
    pub node_list: String,
    /// The rendered batch script (the replay artifact) and its SHA-256.
    pub script: String,
    /// Hex SHA-256 of `script`.
    pub script_sha256: String,
    /// The job's state when the point's outcome was decided, if the scheduler was asked.
    pub job_state: Option<String>,
}

/// Where one rank ran, from its spool's start line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankLayout {
    /// The rank's index in the world (0-based).
    pub rank: u32,
    /// Index of its node (0-based, in launch order).
    pub node: u32,
    /// Its index among its node's ranks (0-based).
    pub local_rank: u32,
    /// Host name of its node.
    pub hostname: String,
    /// Its process id on that node.
    pub pid: u32,
}

/// Where and with what a point ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The git commit the binary was built from (rank 0's).
    pub git_commit: String,
    /// The shardsweep version of the binary that ran (rank 0's).
    pub binary_version: String,
    /// Version of the libtorch the binary was linked against.
    pub torch_version: String,
    /// The communication library and its version (rank 0's).
    pub comm_library: String,
    /// Host names the ranks ran on, sorted, each once.
    pub hostnames: Vec<String>,
    /// Where each rank ran, by rank (empty if no rank started).
    pub ranks: Vec<RankLayout>,
    /// Environment variables that change how training or communication behaves (rank 0's).
    pub env: BTreeMap<String, String>,
    /// The launcher's command line for the ranks (program and arguments).
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
    /// The record schema version that wrote it ([`crate::SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Name of the sweep (the experiment's `name`).
    pub sweep: String,
    /// The point's name, which is also its folder's name in the sweep.
    pub point: String,
    /// Digest of the resolved point configuration.
    pub digest: String,
    /// How the run ended.
    pub outcome: Outcome,
    /// The launcher process's exit code; `None` if it had none (killed by a signal, never ran).
    pub exit_code: Option<i32>,
    /// What the harness found about how the run ended (errors, signals), if anything.
    pub message: Option<String>,
    /// When the harness launched the point, as an RFC 3339 UTC timestamp.
    pub started_at: String,
    /// When its outcome was decided, as an RFC 3339 UTC timestamp.
    pub ended_at: String,
    /// Wall time from launch to the end of the run.
    pub duration_s: f64,
    /// Steps each rank was to run, warm-up included.
    pub steps_planned: u32,
    /// Leading steps the analysis leaves out of the steady state (the experiment's setting).
    pub warmup_steps: u32,
    /// Steps each rank completed, by rank.
    pub steps_completed: Vec<u32>,
    /// Number of ranks.
    pub world_size: u32,
    /// Number of nodes.
    pub nodes: u32,
    /// Ranks on each node.
    pub ranks_per_node: u32,
    /// Images per step over all ranks.
    pub global_batch: u32,
    /// Model FLOPs of one training step over the global batch, what MFU divides by the step time.
    pub train_flop_per_step: f64,
    /// The resolved point (`point.json`), so the manifest stands on its own.
    pub config: serde_json::Value,
    /// Where and with what the point ran.
    pub provenance: Provenance,
    /// The records file's name in the point's folder (`records.h5`); `None` if it was not written.
    pub records_file: Option<String>,
    /// The batch job that ran it; absent for a local launch.
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

    /// Writes it atomically as `point_dir/manifest.json`.
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
