//! The axes of a sweep, as the analysis groups by them. A scaling series is every point with
//! the same value on every axis but nodes (and, for strong scaling, the micro-batch, which
//! shrinks as the nodes grow at a fixed global batch). Efficiencies, plot lines and their
//! labels all take their axes from [`AXES`], so a setting added to the sweep cannot be pooled
//! into a series in one place and kept apart in another.

use crate::load::PointRecords;

pub use shardsweep_records::Axis;

/// Every axis a point has, in the order keys and labels list them (the global batch is not
/// one: a point's batch is its micro-batch, accumulation and world).
pub const AXES: [Axis; 14] = [
    Axis::Model,
    Axis::Strategy,
    Axis::ShardGroup,
    Axis::Nodes,
    Axis::RanksPerNode,
    Axis::MicroBatch,
    Axis::Accumulation,
    Axis::ActivationCheckpointing,
    Axis::BackwardPrefetch,
    Axis::LimitAllGathers,
    Axis::ParamDtype,
    Axis::ReduceDtype,
    Axis::LoaderWorkers,
    Axis::Data,
];

/// How a series grows with the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// The per-device batch is fixed: every axis but nodes.
    Weak,
    /// The global batch is fixed: every axis but nodes and micro-batch, and the global batch.
    Strong,
}

/// What the analysis reads off a point for each axis.
pub trait AxisValue {
    /// The point's value on this axis, as text.
    fn value(self, p: &PointRecords) -> String;
    /// The value as a plot legend writes it, in words a reader needs no key for.
    fn label(self, p: &PointRecords) -> String;
}

impl AxisValue for Axis {
    /// The point's value on this axis, as text. The shard group is relative to the layout
    /// (one node, or the world for the non-hybrid strategies), since its rank count grows
    /// with the nodes when it is the world.
    fn value(self, p: &PointRecords) -> String {
        match self {
            Axis::Model => p.model.clone(),
            Axis::Strategy => p.strategy.to_string(),
            Axis::ShardGroup => p.shard_group_label(),
            Axis::Nodes => p.nodes.to_string(),
            Axis::RanksPerNode => p.ranks_per_node.to_string(),
            Axis::MicroBatch => p.micro_batch.to_string(),
            Axis::Accumulation => p.accumulation.to_string(),
            Axis::ActivationCheckpointing => p.activation_checkpointing.to_string(),
            Axis::BackwardPrefetch => p.backward_prefetch.to_string(),
            Axis::LimitAllGathers => p.limit_all_gathers.to_string(),
            Axis::ParamDtype => p.param_dtype.to_string(),
            Axis::ReduceDtype => p.reduce_dtype.to_string(),
            Axis::LoaderWorkers => p.loader_workers.to_string(),
            Axis::Data => p.data.clone(),
            Axis::GlobalBatch => p.global_batch.to_string(),
        }
    }

    fn label(self, p: &PointRecords) -> String {
        match self {
            Axis::Model => p.model.clone(),
            Axis::Strategy => p.strategy.to_string(),
            Axis::ShardGroup => match p.shard_group_label().as_str() {
                _ if p.strategy == shardsweep_records::Strategy::NoShard => {
                    "replicated, not sharded".into()
                }
                "world" => "sharded over all ranks".into(),
                "node" => "shard group of one node".into(),
                ranks => format!("shard group of {ranks} ranks"),
            },
            Axis::Nodes => format!("{} nodes", p.nodes),
            Axis::RanksPerNode => format!("{} ranks per node", p.ranks_per_node),
            Axis::MicroBatch => format!("mb{}", p.micro_batch),
            Axis::Accumulation => format!("accumulation {}", p.accumulation),
            Axis::ActivationCheckpointing => {
                if p.activation_checkpointing { "checkpointed" } else { "not checkpointed" }.into()
            }
            Axis::BackwardPrefetch => format!("backward prefetch {}", p.backward_prefetch),
            Axis::LimitAllGathers => {
                format!("limit_all_gathers {}", p.limit_all_gathers)
            }
            Axis::ParamDtype => format!("params {}", p.param_dtype),
            Axis::ReduceDtype => format!("reduce {}", p.reduce_dtype),
            Axis::LoaderWorkers => format!("{} loader workers", p.loader_workers),
            Axis::Data => format!("data {}", p.data),
            Axis::GlobalBatch => format!("gb{}", p.global_batch),
        }
    }
}

/// The key that groups `p` with the other points of its series.
pub fn series_key(p: &PointRecords, scaling: Scaling) -> String {
    let mut key: Vec<String> = AXES
        .iter()
        .filter(|&&a| a != Axis::Nodes && !(scaling == Scaling::Strong && a == Axis::MicroBatch))
        .map(|a| a.value(p))
        .collect();
    if scaling == Scaling::Strong {
        key.push(format!("gb{}", p.global_batch));
    }
    key.join("|")
}

/// A plot line's name within a panel of one model: the strategy and micro-batch always, the
/// shard group for the hybrid strategies, and any other axis whose value differs among
/// `points` (so two settings are never drawn as one line).
pub fn line_label(p: &PointRecords, points: &[&PointRecords]) -> String {
    let varies = |a: Axis| points.iter().any(|q| a.value(q) != a.value(p));
    let mut parts = vec![format!("{} {}", p.strategy, Axis::MicroBatch.label(p))];
    for axis in AXES {
        let always = axis == Axis::ShardGroup && p.strategy.is_hybrid();
        let shown = matches!(axis, Axis::Model | Axis::Strategy | Axis::MicroBatch | Axis::Nodes);
        if !shown && (always || varies(axis)) {
            parts.push(axis.label(p));
        }
    }
    parts.join(", ")
}
