//! What one rank records, step by step. Units are in field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the record layout (spool lines, HDF5 datasets, manifest fields).
pub const SCHEMA_VERSION: u32 = 1;

/// Wall time of each phase of one step on one rank, from a monotonic clock, with the device
/// synchronised at every boundary. The phases partition the step: `comm_s` is the time compute
/// waited for collectives (exposed communication), and `forward_s` and `backward_s` exclude the
/// waits inside them; `step_s` is the whole step, including time in no phase (bookkeeping).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phases {
    /// Waiting for the input pipeline's micro-batches (the part of loading the step did not overlap).
    pub data_s: f64,
    /// Forward compute over all micro-batches, the waits for collectives excluded.
    pub forward_s: f64,
    /// Backward compute (recomputation included), the waits for collectives excluded.
    pub backward_s: f64,
    /// Compute waiting for collectives (exposed communication), over the whole step.
    pub comm_s: f64,
    /// The optimizer update of this rank's (sharded) parameters.
    pub optimizer_s: f64,
    /// The whole step, start to end, including time in no phase.
    pub step_s: f64,
}

impl Phases {
    /// The phases' field names, which are also the dataset names under `/phases` in the records file.
    pub const NAMES: [&'static str; 6] =
        ["data_s", "forward_s", "backward_s", "comm_s", "optimizer_s", "step_s"];

    /// The phases' times (s) in [`Self::NAMES`] order.
    pub fn values(&self) -> [f64; 6] {
        [self.data_s, self.forward_s, self.backward_s, self.comm_s, self.optimizer_s, self.step_s]
    }
}

/// Which collective a [`CollectiveRecord`] is (a c10d/MPI operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectiveKind {
    /// Every rank's buffer summed, the sum on every rank (no_shard's gradient reduction).
    AllReduce,
    /// Every rank's shard concatenated on every rank (gathering a unit's parameters).
    AllGather,
    /// Buffers summed, each rank keeping its shard of the sum (sharded gradient reduction).
    ReduceScatter,
}

impl CollectiveKind {
    /// Every kind, in the order the analysis reports them.
    pub const ALL: [CollectiveKind; 3] =
        [CollectiveKind::AllGather, CollectiveKind::ReduceScatter, CollectiveKind::AllReduce];

    /// The snake_case name used in spools, HDF5 and the analysis (`all_gather`).
    pub fn name(self) -> &'static str {
        match self {
            CollectiveKind::AllReduce => "all_reduce",
            CollectiveKind::AllGather => "all_gather",
            CollectiveKind::ReduceScatter => "reduce_scatter",
        }
    }
}

/// One collective call. Times are seconds from the start of its step: issued at `start_s`,
/// complete at `end_s`; `wait_s` is how long compute waited for it (exposed communication),
/// the whole duration for a blocking call, less when a non-blocking one overlapped compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectiveRecord {
    /// Which collective it was.
    pub kind: CollectiveKind,
    /// The model unit whose parameters or gradients moved.
    pub unit: u32,
    /// Size of the full buffer (all-reduce input, all-gather output, reduce-scatter input).
    pub payload_bytes: u64,
    /// Element type of the buffer as libtorch kinds are named here (`float32`, `bfloat16`).
    pub dtype: String,
    /// Ranks in the process group the call ran over (the shard group, or the replica group for hybrid).
    pub group_size: u32,
    /// When it was issued, in seconds from the start of its step.
    pub start_s: f64,
    /// When it was complete (its wait returned), in seconds from the start of its step.
    pub end_s: f64,
    /// Seconds compute waited for it (exposed communication).
    pub wait_s: f64,
    /// All-gathers this rank had started and not yet waited for when this call was issued,
    /// itself included if it is one (`limit_all_gathers` caps it at two); 0 in records from
    /// before it was recorded.
    #[serde(default)]
    pub in_flight: u32,
    /// Its time on the stream that ran it, from its start event there to its end event
    /// (ProcessGroupNCCL's, `Work::getDuration`; the kernel's wait for its peers included):
    /// with `wait_s`, what of it compute overlapped. `None` where the backend runs collectives
    /// on host threads (MPI, Gloo) and keeps no such time, for calls made through the blocking
    /// forms (training starts every call and waits later), where the events could not be read
    /// (the log says why), and in records from before it was recorded.
    #[serde(default)]
    pub stream_s: Option<f64>,
}

/// Compute time of one unit in one step (summed over micro-batches).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitRecord {
    /// Index of the model unit (FSDP wrapping unit), 0-based in model order.
    pub unit: u32,
    /// This unit's forward compute, summed over micro-batches.
    pub forward_s: f64,
    /// This unit's backward compute (recomputation excluded), summed over micro-batches.
    pub backward_s: f64,
    /// Forward recomputed in backward (activation checkpointing).
    pub recompute_s: f64,
}

/// The harness's own account of what a rank holds, by category (FSDP's memory model).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryRecord {
    /// This rank's shards of the parameters (all of them for no_shard), in the point's storage dtype.
    pub param_shards_bytes: u64,
    /// This rank's shards of the gradients kept between steps.
    pub grad_shards_bytes: u64,
    /// The optimizer's states for this rank's parameter shards (e.g. Adam's two moments).
    pub optimizer_state_bytes: u64,
    /// Most gathered (unsharded) parameters held at once during the step.
    pub gathered_params_peak_bytes: u64,
    /// Most unsharded gradients held at once across micro-batches (accumulation).
    pub unsharded_grads_peak_bytes: u64,
    /// Most stage inputs and outputs kept for backward at once (not autograd's internals).
    pub activations_peak_bytes: u64,
}

/// A GPU's caching-allocator figures for one step: peaks since the step began (PyTorch's
/// `max_memory_allocated`, the `active_bytes.all.peak` statistic, `max_memory_reserved`) and
/// the allocations that had to flush the cache and retry (`num_alloc_retries`, a sign of
/// fragmentation near the memory limit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceMemoryRecord {
    /// Most memory held by live tensors (`max_memory_allocated`).
    pub allocated_peak_bytes: u64,
    /// Most memory in active blocks, freed-but-in-use included (`active_bytes.all.peak`).
    pub active_peak_bytes: u64,
    /// Most memory the caching allocator held from the driver (`max_memory_reserved`).
    pub reserved_peak_bytes: u64,
    /// Allocations that flushed the cache and retried during the step (`num_alloc_retries`).
    pub alloc_retries: u64,
}

impl DeviceMemoryRecord {
    /// Dataset names under `/device_memory` in the records file.
    pub const NAMES: [&'static str; 4] =
        ["allocated_peak_bytes", "active_peak_bytes", "reserved_peak_bytes", "alloc_retries"];

    /// The figures in [`Self::NAMES`] order.
    pub fn values(&self) -> [u64; 4] {
        [
            self.allocated_peak_bytes,
            self.active_peak_bytes,
            self.reserved_peak_bytes,
            self.alloc_retries,
        ]
    }
}

impl MemoryRecord {
    /// Dataset names under `/memory` in the records file: each category's name and `_bytes`.
    pub const NAMES: [&'static str; 6] = [
        "param_shards_bytes",
        "grad_shards_bytes",
        "optimizer_state_bytes",
        "gathered_params_peak_bytes",
        "unsharded_grads_peak_bytes",
        "activations_peak_bytes",
    ];

    /// The categories of the account, as the analysis and the tidy store name them
    /// (`memory.<category>`), in [`Self::NAMES`] order.
    pub const CATEGORIES: [&'static str; 6] = [
        "param_shards",
        "grad_shards",
        "optimizer_state",
        "gathered_params_peak",
        "unsharded_grads_peak",
        "activations_peak",
    ];

    /// The category a `/memory` dataset holds (`param_shards_bytes`: `param_shards`), `None`
    /// for a name this version does not write.
    pub fn category(dataset: &str) -> Option<&'static str> {
        Self::NAMES.iter().position(|n| *n == dataset).map(|i| Self::CATEGORIES[i])
    }

    /// The categories' bytes in [`Self::NAMES`] order.
    pub fn values(&self) -> [u64; 6] {
        [
            self.param_shards_bytes,
            self.grad_shards_bytes,
            self.optimizer_state_bytes,
            self.gathered_params_peak_bytes,
            self.unsharded_grads_peak_bytes,
            self.activations_peak_bytes,
        ]
    }
}

/// What the input pipeline did for one step of one rank, summed over the step's micro-batches
/// and samples (worker time, which overlaps the step when batches are prefetched; `data_s` is
/// the part the step waited for).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderRecord {
    /// Bytes read from the data set file (0 for synthetic data).
    pub read_bytes: u64,
    /// Reading stored samples.
    pub read_s: f64,
    /// Turning what was read into fp32 pixels (for synthetic data: generating them).
    pub decode_s: f64,
    /// Random resized crop, flip and normalisation.
    pub augment_s: f64,
    /// Batches ready in the prefetch queue when the step asked for its first micro-batch
    /// (0: it waited).
    pub queue_depth: u32,
}

impl LoaderRecord {
    /// Dataset names of the loader's times under `/loader` in the records file.
    pub const TIME_NAMES: [&'static str; 3] = ["read_s", "decode_s", "augment_s"];

    /// The loader's times (s) in [`Self::TIME_NAMES`] order.
    pub fn times(&self) -> [f64; 3] {
        [self.read_s, self.decode_s, self.augment_s]
    }

    /// Adds `other`'s sums; the queue depth stays this record's (the step's first batch).
    pub fn add(&mut self, other: &LoaderRecord) {
        self.read_bytes += other.read_bytes;
        self.read_s += other.read_s;
        self.decode_s += other.decode_s;
        self.augment_s += other.augment_s;
    }
}

/// Everything one rank measured in one training step (one spool line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// The step's index, 0-based, warm-up steps included.
    pub step: u32,
    /// This rank's loss on its part of the global batch. JSON has no NaN: a diverged loss is
    /// written as null and read back as NaN.
    #[serde(with = "nan_as_null")]
    pub loss: f64,
    /// Wall time of each phase of the step (flattened into the line's top level).
    #[serde(flatten)]
    pub phases: Phases,
    /// Peak resident set size of the process so far.
    pub peak_rss_bytes: u64,
    /// The harness's own account of what the rank held, by category.
    pub memory: MemoryRecord,
    /// The GPU caching allocator's figures for this step (absent on CPU and in older spools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_memory: Option<DeviceMemoryRecord>,
    /// The input pipeline's own figures for this step (absent in spools older than the field).
    #[serde(default)]
    pub loader: LoaderRecord,
    /// Compute time of each model unit, in unit order.
    pub units: Vec<UnitRecord>,
    /// Every collective the rank called in the step, in issue order.
    pub collectives: Vec<CollectiveRecord>,
}

/// Who a rank is and what it ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankInfo {
    /// This rank's index in the world (0-based), as MPI's / c10d's rank.
    pub rank: u32,
    /// Number of ranks in the point.
    pub world_size: u32,
    /// Index of the node the rank ran on (0-based, in launch order).
    pub node: u32,
    /// The rank's index among its node's ranks (0-based; picks its GPU).
    pub local_rank: u32,
    /// Host name of the node, as the rank read it.
    pub hostname: String,
    /// The rank's process id on its node.
    pub pid: u32,
    /// The device it computed on, tch's `Device` in lower case (`cpu`, `cuda(0)`).
    pub device: String,
    /// libtorch's intra-op threads (`get_num_threads`) on this rank.
    pub threads: u32,
    /// Version of the libtorch the binary was linked against.
    pub torch_version: String,
    /// The communication library and its version (the MPI library, or c10d's Gloo/NCCL).
    pub comm_library: String,
    /// The shardsweep version (`CARGO_PKG_VERSION`) of the binary that ran.
    pub binary_version: String,
    /// The git commit the binary was built from.
    pub git_commit: String,
    /// The rank's environment variables with the prefixes that change training or communication.
    pub env: BTreeMap<String, String>,
    /// When the rank started, as an RFC 3339 UTC timestamp.
    pub started_at: String,
    /// What the rank's numbers depend on (libraries, drivers, modules), read as it started;
    /// the libraries are read again after the first step (a [`SpoolLine::Loaded`] line), since
    /// communication libraries and their network plugins load when first used. Empty in
    /// spools from before it was recorded.
    #[serde(default)]
    pub fingerprint: crate::Fingerprint,
}

/// One line of a rank's spool file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SpoolLine {
    /// The spool's first line: who the rank is and what it ran with.
    Start(RankInfo),
    /// One finished step.
    Step(StepRecord),
    /// The libraries mapped after the first step, replacing the start's list.
    Loaded {
        /// Every shared library mapped into the process at that time.
        libraries: Vec<crate::LoadedLibrary>,
    },
    /// The rank finished every step.
    End {
        /// When the rank finished, as an RFC 3339 UTC timestamp.
        ended_at: String,
    },
    /// The rank stopped on an error it could report.
    Error {
        /// The error, as the rank displayed it.
        message: String,
    },
}

mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_memory_dataset_is_its_category_in_bytes() {
        for (name, category) in MemoryRecord::NAMES.iter().zip(MemoryRecord::CATEGORIES) {
            assert_eq!(*name, format!("{category}_bytes"));
            assert_eq!(MemoryRecord::category(name), Some(category));
        }
        assert_eq!(MemoryRecord::category("param_shards"), None);
    }
}
