//! Expands an experiment into points: the cartesian product of its axes, zip groups advancing
//! together, exclude rules applied, and every point that cannot run rejected with a reason.

use serde::Serialize;

use super::experiment::{Backend, BackwardPrefetch, Dtype, Experiment, Fault, Strategy, AXES};
use super::feasibility::{check, Machine};
use super::point::{ParallelSpec, PointSpec};
use crate::model;

/// A point that will not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub sweep: String,
    pub points: Vec<PointSpec>,
    pub rejected: Vec<Rejected>,
}

/// Expands `experiment` for `machine`. Points are ordered by axis, the first axis slowest.
pub fn expand(experiment: &Experiment, machine: &Machine) -> Plan {
    let mut plan =
        Plan { sweep: experiment.name.clone(), points: Vec::new(), rejected: Vec::new() };
    for choice in combinations(experiment) {
        let index = |axis: &str| choice[AXES.iter().position(|a| *a == axis).expect("known axis")];
        let axes = &experiment.axes;
        let strategy = axes.strategy[index("strategy")];
        let mut model = model::preset(&axes.model[index("model")]).expect("validated model name");
        if let Some(size) = experiment.settings.image_size {
            model.image_size = size;
        }
        let (nodes, ranks_per_node) =
            (axes.nodes[index("nodes")], axes.ranks_per_node[index("ranks_per_node")]);
        let shard_group = match strategy {
            Strategy::NoShard => 1,
            Strategy::FullShard | Strategy::ShardGradOp => nodes * ranks_per_node,
            Strategy::HybridShard | Strategy::HybridShardZero2 => {
                match axes.shard_group[index("shard_group")] {
                    0 => ranks_per_node,
                    chosen => chosen,
                }
            }
        };
        let parallel = ParallelSpec {
            shard_group,
            accumulation: axes.accumulation[index("accumulation")],
            activation_checkpointing: axes.activation_checkpointing
                [index("activation_checkpointing")],
            backward_prefetch: axes.backward_prefetch[index("backward_prefetch")],
            limit_all_gathers: axes.limit_all_gathers[index("limit_all_gathers")],
            param_dtype: axes.param_dtype[index("param_dtype")],
            reduce_dtype: axes.reduce_dtype[index("reduce_dtype")],
        };
        let point = PointSpec {
            sweep: experiment.name.clone(),
            id: String::new(),
            model,
            strategy,
            parallel,
            nodes,
            ranks_per_node,
            micro_batch: axes.micro_batch[index("micro_batch")],
            settings: experiment.settings.clone(),
            optimizer: experiment.optimizer.clone(),
            fault: None,
            system: None,
        };
        let point = PointSpec { id: point_id(&point), ..point };
        // shard_group only applies to the hybrid strategies: other strategies would repeat.
        if plan.points.iter().any(|p| p.id == point.id)
            || plan.rejected.iter().any(|r| r.id == point.id)
        {
            continue;
        }
        let matches = |rule: &toml::Table| {
            rule.iter().all(|(axis, wanted)| {
                let value = axes.value(axis, index(axis));
                match wanted {
                    toml::Value::Array(any) => any.contains(&value),
                    single => *single == value,
                }
            })
        };
        let excluded_by = experiment.exclude.iter().position(matches);
        let fault = experiment
            .fault
            .iter()
            .find(|rule| matches(&Fault::matchers(rule)))
            .and_then(|rule| Fault::from_rule(rule).ok());
        let point = PointSpec { fault, ..point };
        let reason = match excluded_by {
            Some(r) => Some(format!("excluded by rule exclude[{r}]")),
            None => check(&point, machine).err(),
        };
        match reason {
            Some(reason) => plan.rejected.push(Rejected { id: point.id, reason }),
            None => plan.points.push(point),
        }
    }
    plan
}

/// A readable, unique, filesystem-safe name made of the point's axis values; knobs appear
/// only where they differ from their defaults (the backend too, against the device's default).
pub fn point_id(p: &PointSpec) -> String {
    let k = &p.parallel;
    let mut id = format!("{}-{}", p.model.name, p.strategy.name());
    if p.strategy.is_hybrid() {
        id += &format!("-sg{}", k.shard_group);
    }
    id += &format!("-n{}x{}-mb{}", p.nodes, p.ranks_per_node, p.micro_batch);
    if k.accumulation != 1 {
        id += &format!("-acc{}", k.accumulation);
    }
    if k.activation_checkpointing {
        id += "-ac";
    }
    if k.backward_prefetch != BackwardPrefetch::Pre {
        id += &format!("-bp{}", k.backward_prefetch.name());
    }
    if !k.limit_all_gathers {
        id += "-nolimit";
    }
    if k.param_dtype != Dtype::Fp32 {
        id += &format!("-p{}", k.param_dtype.name());
    }
    if k.reduce_dtype != Dtype::Fp32 {
        id += &format!("-r{}", k.reduce_dtype.name());
    }
    if p.backend() != Backend::default_for(p.settings.device) {
        id += &format!("-{}", p.backend().name());
    }
    id
}

/// Every combination of value indices, one index per axis in `AXES` order. Axes in one zip
/// group share an index; the product runs over the remaining axes and the groups.
fn combinations(experiment: &Experiment) -> Vec<Vec<usize>> {
    // Factors: sets of axes that advance together, ordered by their first axis.
    let mut factors: Vec<Vec<usize>> = Vec::new();
    for (a, axis) in AXES.iter().enumerate() {
        if factors.iter().any(|f| f.contains(&a)) {
            continue;
        }
        let group = experiment.zip.iter().find(|g| g.iter().any(|x| x == axis));
        factors.push(match group {
            Some(g) => AXES
                .iter()
                .enumerate()
                .filter(|(_, x)| g.iter().any(|y| y == *x))
                .map(|(i, _)| i)
                .collect(),
            None => vec![a],
        });
    }
    let mut result = vec![vec![0; AXES.len()]];
    for factor in factors {
        let len = experiment.axes.len(AXES[factor[0]]);
        result = result
            .into_iter()
            .flat_map(|choice| {
                let factor = factor.clone();
                (0..len).map(move |i| {
                    let mut next = choice.clone();
                    factor.iter().for_each(|&a| next[a] = i);
                    next
                })
            })
            .collect();
    }
    result
}
