//! The configuration vocabulary a point's records are written in: the FSDP strategy and knobs
//! (closed sets, named as PyTorch's `ShardingStrategy`, `BackwardPrefetch` and mixed-precision
//! dtypes are), and the part of `point.json` the analysis reads.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    NoShard,
    FullShard,
    ShardGradOp,
    HybridShard,
    HybridShardZero2,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::NoShard => "no_shard",
            Strategy::FullShard => "full_shard",
            Strategy::ShardGradOp => "shard_grad_op",
            Strategy::HybridShard => "hybrid_shard",
            Strategy::HybridShardZero2 => "hybrid_shard_zero2",
        }
    }

    pub fn is_hybrid(self) -> bool {
        matches!(self, Strategy::HybridShard | Strategy::HybridShardZero2)
    }

    /// Whether a unit's gathered parameters are freed after its forward (and gathered again
    /// for its backward). The root unit is kept either way.
    pub fn reshards_after_forward(self) -> bool {
        matches!(self, Strategy::FullShard | Strategy::HybridShard)
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
    Fp32,
    Bf16,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Bf16 => "bf16",
        }
    }
}

/// The part of a point's resolved configuration (`point.json`, a manifest's `config`) that
/// analysis needs, read as a view: the full point holds more (model shape, settings) and this
/// ignores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointConfig {
    pub model: ModelName,
    pub strategy: Strategy,
    pub micro_batch: u32,
    pub parallel: ParallelSpec,
    #[serde(default)]
    pub system: Option<SystemSpec>,
    /// Worker threads of each rank's input pipeline (`point.json` omits the axis when 1).
    #[serde(default = "one_worker")]
    pub loader_workers: u32,
    /// Where the images come from, as experiment files spell it: `synthetic` or the path of
    /// an image set file (`point.json` omits the axis when synthetic).
    #[serde(default = "synthetic")]
    pub data: String,
}

fn one_worker() -> u32 {
    1
}

fn synthetic() -> String {
    "synthetic".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelName {
    pub name: String,
}

/// How the point spreads the model over ranks, beyond the strategy's name (the FSDP knobs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelSpec {
    /// Ranks that shard each unit: the world for full_shard and shard_grad_op, 1 for no_shard,
    /// the chosen group for the hybrid strategies. Groups are consecutive ranks.
    pub shard_group: u32,
    pub accumulation: u32,
    pub activation_checkpointing: bool,
    pub backward_prefetch: BackwardPrefetch,
    pub limit_all_gathers: bool,
    pub param_dtype: Dtype,
    pub reduce_dtype: Dtype,
}

/// The system a point was submitted to and the device peak its MFU is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    pub name: String,
    /// Peak FLOP/s of one rank's device for the point's compute type, if the system states it.
    pub peak_flop_per_s: Option<f64>,
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
