//! The axes a sweep varies: the keys of an experiment's `[axes]` table, its `zip` groups and
//! its `exclude` and `[[fault]]` rules, and what the analysis groups points by.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One axis of an experiment file's `[axes]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// The model, by the name the experiment file gives it (its architecture and size).
    Model,
    /// The FSDP sharding strategy ([`crate::Strategy`]).
    Strategy,
    /// Ranks per shard group for the hybrid strategies (0: one node).
    ShardGroup,
    /// Number of nodes.
    Nodes,
    /// Ranks on each node.
    RanksPerNode,
    /// Images per rank per micro-batch.
    MicroBatch,
    /// Images per step over all ranks (the micro-batch follows from it).
    GlobalBatch,
    /// Micro-batches per step whose gradients are accumulated before one reduction.
    Accumulation,
    /// Whether units recompute their forward in backward instead of keeping activations.
    ActivationCheckpointing,
    /// When backward issues the next unit's all-gather ([`crate::BackwardPrefetch`]).
    BackwardPrefetch,
    /// Whether at most two all-gathers are in flight at once (FSDP's `limit_all_gathers`).
    LimitAllGathers,
    /// Element type of gathered parameters and compute.
    ParamDtype,
    /// Element type of gradient reductions.
    ReduceDtype,
    /// Where the images come from: `synthetic` or the path of an image set file.
    Data,
    /// Worker threads of each rank's input pipeline.
    LoaderWorkers,
}

impl Axis {
    /// Every axis, in the order points are expanded and named (the first varies slowest). Of
    /// `micro_batch` and `global_batch` a file sets exactly one.
    pub const ALL: [Axis; 15] = [
        Axis::Model,
        Axis::Strategy,
        Axis::ShardGroup,
        Axis::Nodes,
        Axis::RanksPerNode,
        Axis::MicroBatch,
        Axis::GlobalBatch,
        Axis::Accumulation,
        Axis::ActivationCheckpointing,
        Axis::BackwardPrefetch,
        Axis::LimitAllGathers,
        Axis::ParamDtype,
        Axis::ReduceDtype,
        Axis::Data,
        Axis::LoaderWorkers,
    ];

    /// The key as an experiment file writes it.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Model => "model",
            Axis::Strategy => "strategy",
            Axis::ShardGroup => "shard_group",
            Axis::Nodes => "nodes",
            Axis::RanksPerNode => "ranks_per_node",
            Axis::MicroBatch => "micro_batch",
            Axis::GlobalBatch => "global_batch",
            Axis::Accumulation => "accumulation",
            Axis::ActivationCheckpointing => "activation_checkpointing",
            Axis::BackwardPrefetch => "backward_prefetch",
            Axis::LimitAllGathers => "limit_all_gathers",
            Axis::ParamDtype => "param_dtype",
            Axis::ReduceDtype => "reduce_dtype",
            Axis::Data => "data",
            Axis::LoaderWorkers => "loader_workers",
        }
    }

    /// The axis a file's key names, if any.
    pub fn from_name(name: &str) -> Option<Axis> {
        Axis::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Every axis's key, comma-separated (for error messages).
    pub fn names() -> String {
        Axis::ALL.map(Axis::name).join(", ")
    }
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for axis in Axis::ALL {
            assert_eq!(Axis::from_name(axis.name()), Some(axis));
            assert_eq!(serde_json::to_value(axis).unwrap(), axis.name());
        }
        assert_eq!(Axis::from_name("nodez"), None);
    }
}
