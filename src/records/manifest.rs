use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{write_atomic, RecordError, MANIFEST_FILE};

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
    pub fn read(point_dir: &Path) -> Result<Option<Self>, RecordError> {
        let path = point_dir.join(MANIFEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| RecordError::Json { path: path.display().to_string(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RecordError::io(&path)(e)),
        }
    }

    pub fn write(&self, point_dir: &Path) -> Result<(), RecordError> {
        let path = point_dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|source| RecordError::Json { path: path.display().to_string(), source })?;
        write_atomic(&path, &json)
    }
}
