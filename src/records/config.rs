//! The configuration vocabulary a point's records are written in: the FSDP strategy and knobs
//! (closed sets, named as PyTorch's `ShardingStrategy`, `BackwardPrefetch` and mixed-precision
//! dtypes are), and the part of `point.json` the analysis reads.

use serde::{Deserialize, Serialize};

/// How FSDP shards a unit's parameters, gradients and optimizer states (PyTorch's `ShardingStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every rank keeps everything; gradients are all-reduced (DDP-like).
    NoShard,
    /// Parameters, gradients and optimizer states sharded over the world; parameters resharded after forward.
    FullShard,
    /// Sharded like full_shard, but gathered parameters kept from forward to backward (ZeRO-2).
    ShardGradOp,
    /// full_shard within each shard group, replicated across groups (gradients all-reduced across them).
    HybridShard,
    /// shard_grad_op within each shard group, replicated across groups.
    HybridShardZero2,
}

impl Strategy {
    /// The snake_case name experiment files and records use (`full_shard`).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::NoShard => "no_shard",
            Strategy::FullShard => "full_shard",
            Strategy::ShardGradOp => "shard_grad_op",
            Strategy::HybridShard => "hybrid_shard",
            Strategy::HybridShardZero2 => "hybrid_shard_zero2",
        }
    }

    /// Whether the ranks form shard groups smaller than the world, replicated across groups
    /// (the group's size is the point's `shard_group` axis).
    pub fn is_hybrid(self) -> bool {
        match self {
            Strategy::HybridShard | Strategy::HybridShardZero2 => true,
            Strategy::NoShard | Strategy::FullShard | Strategy::ShardGradOp => false,
        }
    }

    /// Whether a unit's parameters, gradients and optimizer states are split over a shard
    /// group (gathered for compute, gradients reduce-scattered); no_shard replicates them and
    /// all-reduces its gradients.
    pub fn shards(self) -> bool {
        match self {
            Strategy::NoShard => false,
            Strategy::FullShard
            | Strategy::ShardGradOp
            | Strategy::HybridShard
            | Strategy::HybridShardZero2 => true,
        }
    }

    /// Whether a unit's gathered parameters are freed after its forward (and gathered again
    /// for its backward). The root unit is kept either way.
    pub fn reshards_after_forward(self) -> bool {
        match self {
            Strategy::FullShard | Strategy::HybridShard => true,
            Strategy::NoShard | Strategy::ShardGradOp | Strategy::HybridShardZero2 => false,
        }
    }

    /// Ranks that shard each unit of a point of `world` ranks, `ranks_per_node` of them per
    /// node: 1 for no_shard, the world for full_shard and shard_grad_op, and for the hybrid
    /// strategies the `chosen` group (the `shard_group` axis; 0 means one node, FSDP's
    /// default). Groups are consecutive ranks.
    pub fn shard_group(self, world: u32, ranks_per_node: u32, chosen: u32) -> u32 {
        match self {
            Strategy::NoShard => 1,
            Strategy::FullShard | Strategy::ShardGradOp => world,
            Strategy::HybridShard | Strategy::HybridShardZero2 => match chosen {
                0 => ranks_per_node,
                chosen => chosen,
            },
        }
    }
}

/// When the all-gather of the next unit is issued during backward (PyTorch's BackwardPrefetch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackwardPrefetch {
    /// Before computing this unit's gradients (BACKWARD_PRE, PyTorch's default).
    Pre,
    /// After computing them, before reducing them (BACKWARD_POST).
    Post,
    /// When the next unit's backward starts, after this unit's reduction.
    None,
}

impl BackwardPrefetch {
    /// The snake_case name experiment files and records use (`pre`).
    pub fn name(self) -> &'static str {
        match self {
            BackwardPrefetch::Pre => "pre",
            BackwardPrefetch::Post => "post",
            BackwardPrefetch::None => "none",
        }
    }
}

/// Element type of gathered parameters and compute (`param_dtype`) or of gradient reductions
/// (`reduce_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    /// 32-bit IEEE float.
    Fp32,
    /// bfloat16 (8 exponent bits, 7 mantissa bits).
    Bf16,
}

impl Dtype {
    /// The name experiment files and records use (`fp32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Bf16 => "bf16",
        }
    }

    /// Bytes of one element.
    pub fn bytes(self) -> u32 {
        match self {
            Dtype::Fp32 => 4,
            Dtype::Bf16 => 2,
        }
    }
}

/// Where each rank computes. ROCm builds of libtorch expose AMD GPUs as `cuda` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// The host's CPU cores.
    #[default]
    Cpu,
    /// A GPU (CUDA, or ROCm through libtorch's `cuda` device), one per rank.
    Cuda,
}

impl DeviceKind {
    /// The name experiment files and PyTorch use (`"cpu"`, `"cuda"`).
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// Which library carries the collectives (`settings.backend`; absent: [`Backend::default_for`]
/// the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// MPI on host memory (device tensors staged through the host).
    Mpi,
    /// libtorch's c10d ProcessGroupGloo (CPU tensors; CUDA ones through the host).
    Gloo,
    /// libtorch's c10d ProcessGroupNCCL (RCCL in ROCm builds): GPUs only.
    Nccl,
}

impl Backend {
    /// The name experiment files and records use (`mpi`, `gloo`, `nccl`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Mpi => "mpi",
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// What PyTorch users run on each device: NCCL on GPUs; on CPUs MPI, this harness's
    /// original backend (records without a backend field were made with it).
    pub fn default_for(device: DeviceKind) -> Self {
        match device {
            DeviceKind::Cpu => Backend::Mpi,
            DeviceKind::Cuda => Backend::Nccl,
        }
    }
}

/// How a step's phases and collectives are timed (`settings.timing`; absent:
/// [`Timing::default_for`] the device). Records name it in `point.json`'s settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// The host's monotonic clock, read after waiting for the device at every mark: exact on
    /// a CPU; on a GPU the waits serialise what FSDP overlaps (a debugging aid there).
    Host,
    /// Timing events recorded on the compute stream at every mark and read once the step is
    /// over (CUDA or HIP events): the device's own timeline, nothing waited for. GPUs only.
    DeviceEvents,
}

impl Timing {
    /// The name experiment files and records use (`host`, `device_events`).
    pub fn name(self) -> &'static str {
        match self {
            Timing::Host => "host",
            Timing::DeviceEvents => "device_events",
        }
    }

    /// The device's own events on GPUs, the host's clock on CPUs.
    pub fn default_for(device: DeviceKind) -> Self {
        match device {
            DeviceKind::Cpu => Timing::Host,
            DeviceKind::Cuda => Timing::DeviceEvents,
        }
    }
}

/// The part of a point's resolved configuration (`point.json`, a manifest's `config`) that
/// analysis needs, read as a view: the full point holds more (model shape, settings) and this
/// ignores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointConfig {
    /// The model, by name (`point.json`'s `model.name`).
    pub model: ModelName,
    /// The FSDP sharding strategy.
    pub strategy: Strategy,
    /// Images per rank per micro-batch.
    pub micro_batch: u32,
    /// The FSDP knobs beyond the strategy.
    pub parallel: ParallelSpec,
    /// The system it was submitted to; `None` for a local run (or older records).
    #[serde(default)]
    pub system: Option<SystemSpec>,
    /// Worker threads of each rank's input pipeline (`point.json` omits the axis when 1).
    #[serde(default = "one_worker")]
    pub loader_workers: u32,
    /// Where the images come from, as experiment files spell it: `synthetic` or the path of
    /// an image set file (`point.json` omits the axis when synthetic).
    #[serde(default = "synthetic")]
    pub data: String,
    /// Where the ranks computed, over which library and on which clock.
    #[serde(default)]
    pub settings: PointSettings,
}

/// The part of a point's `settings` the analysis reads. Backend and timing are absent when
/// the point took its device's defaults (and in records from before they were settings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PointSettings {
    /// Where the ranks computed (absent: CPU).
    #[serde(default)]
    pub device: DeviceKind,
    /// The collective library set; `None`: the device's default ([`Self::backend`]).
    #[serde(default)]
    pub backend: Option<Backend>,
    /// How steps were timed if set; `None`: the device's default ([`Self::timing`]).
    #[serde(default)]
    pub timing: Option<Timing>,
}

impl PointSettings {
    /// The collective library the ranks used: the setting, else the device's default.
    pub fn backend(&self) -> Backend {
        self.backend.unwrap_or(Backend::default_for(self.device))
    }

    /// How steps were timed: the setting, else the device's default.
    pub fn timing(&self) -> Timing {
        self.timing.unwrap_or(Timing::default_for(self.device))
    }
}

fn one_worker() -> u32 {
    1
}

fn synthetic() -> String {
    "synthetic".into()
}

/// The model's entry in `point.json`, read for its name only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelName {
    /// The model's name as the experiment file gives it.
    pub name: String,
}

/// How the point spreads the model over ranks, beyond the strategy's name (the FSDP knobs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelSpec {
    /// Ranks that shard each unit: the world for full_shard and shard_grad_op, 1 for no_shard,
    /// the chosen group for the hybrid strategies. Groups are consecutive ranks.
    pub shard_group: u32,
    /// Micro-batches per step whose gradients are accumulated before they are reduced.
    pub accumulation: u32,
    /// Whether units recompute their forward in backward instead of keeping activations.
    pub activation_checkpointing: bool,
    /// When backward issues the next unit's all-gather.
    pub backward_prefetch: BackwardPrefetch,
    /// Whether a rank keeps at most two all-gathers in flight (FSDP's `limit_all_gathers`).
    pub limit_all_gathers: bool,
    /// Element type of gathered parameters and compute.
    pub param_dtype: Dtype,
    /// Element type of gradient reductions.
    pub reduce_dtype: Dtype,
}

/// The system a point was submitted to and the device peak its MFU is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    /// The system's name in its system file.
    pub name: String,
    /// Peak FLOP/s of one rank's device for the point's compute type, if the system states it.
    pub peak_flop_per_s: Option<f64>,
    /// Where `peak_flop_per_s` comes from (the system file's note on it; empty if not stated).
    pub peak_source: String,
}

/// Shown by their record names (`full_shard`, `pre`, `bf16`), as experiment files spell them.
macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}
display_by_name!(Strategy, BackwardPrefetch, Dtype, crate::Outcome);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_strategy_shards_over_its_own_group() {
        // 8 ranks, 4 per node; the hybrid strategies' chosen group, 0 for one node.
        let groups = |chosen| {
            [
                Strategy::NoShard,
                Strategy::FullShard,
                Strategy::ShardGradOp,
                Strategy::HybridShard,
                Strategy::HybridShardZero2,
            ]
            .map(|s| s.shard_group(8, 4, chosen))
        };
        assert_eq!(groups(0), [1, 8, 8, 4, 4]);
        assert_eq!(groups(2), [1, 8, 8, 2, 2]);
        assert_eq!(groups(8), [1, 8, 8, 8, 8]);
        assert_eq!((Dtype::Fp32.bytes(), Dtype::Bf16.bytes()), (4, 2));
    }
}
