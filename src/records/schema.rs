//! What one rank records, step by step. Units are in field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the record layout (spool lines, HDF5 datasets, manifest fields).
pub const SCHEMA_VERSION: u32 = 1;

/// Wall time of each phase of one step on one rank, from a monotonic clock, with the device
/// synchronised at every boundary. `comm_s` is the sum of this step's collective calls;
/// `step_s` is the whole step (it also contains time in no phase, such as bookkeeping).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phases {
    pub data_s: f64,
    pub forward_s: f64,
    pub backward_s: f64,
    pub comm_s: f64,
    pub optimizer_s: f64,
    pub step_s: f64,
}

impl Phases {
    pub const NAMES: [&'static str; 6] = ["data_s", "forward_s", "backward_s", "comm_s", "optimizer_s", "step_s"];

    pub fn values(&self) -> [f64; 6] {
        [self.data_s, self.forward_s, self.backward_s, self.comm_s, self.optimizer_s, self.step_s]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectiveKind {
    AllReduce,
    AllGather,
    ReduceScatter,
}

impl CollectiveKind {
    pub fn name(self) -> &'static str {
        match self {
            CollectiveKind::AllReduce => "all_reduce",
            CollectiveKind::AllGather => "all_gather",
            CollectiveKind::ReduceScatter => "reduce_scatter",
        }
    }
}

/// One collective call. Times are seconds from the start of its step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectiveRecord {
    pub kind: CollectiveKind,
    /// The model unit whose parameters or gradients moved.
    pub unit: u32,
    /// Size of the full buffer (all-reduce input, all-gather output, reduce-scatter input).
    pub payload_bytes: u64,
    pub dtype: String,
    pub group_size: u32,
    pub start_s: f64,
    pub end_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    pub step: u32,
    /// This rank's loss on its part of the global batch.
    pub loss: f64,
    #[serde(flatten)]
    pub phases: Phases,
    /// Peak resident set size of the process so far.
    pub peak_rss_bytes: u64,
    pub collectives: Vec<CollectiveRecord>,
}

/// Who a rank is and what it ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankInfo {
    pub rank: u32,
    pub world_size: u32,
    pub node: u32,
    pub local_rank: u32,
    pub hostname: String,
    pub pid: u32,
    pub device: String,
    pub threads: u32,
    pub torch_version: String,
    pub comm_library: String,
    pub binary_version: String,
    pub git_commit: String,
    pub env: BTreeMap<String, String>,
    pub started_at: String,
}

/// One line of a rank's spool file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SpoolLine {
    Start(RankInfo),
    Step(StepRecord),
    /// The rank finished every step.
    End { ended_at: String },
    /// The rank stopped on an error it could report.
    Error { message: String },
}
