//! Expands an experiment into points: the cartesian product of its axes, zip groups advancing
//! together, exclude rules applied, and every point that cannot run rejected with a reason.

use serde::Serialize;

use super::experiment::{Experiment, AXES};
use super::feasibility::{check, Machine};
use super::point::PointSpec;
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
    let mut plan = Plan { sweep: experiment.name.clone(), points: Vec::new(), rejected: Vec::new() };
    for choice in combinations(experiment) {
        let index = |axis: &str| choice[AXES.iter().position(|a| *a == axis).expect("known axis")];
        let axes = &experiment.axes;
        let strategy = axes.strategy[index("strategy")];
        let mut model = model::preset(&axes.model[index("model")]).expect("validated model name");
        if let Some(size) = experiment.settings.image_size {
            model.image_size = size;
        }
        let point = PointSpec {
            sweep: experiment.name.clone(),
            id: String::new(),
            model,
            strategy,
            nodes: axes.nodes[index("nodes")],
            ranks_per_node: axes.ranks_per_node[index("ranks_per_node")],
            micro_batch: axes.micro_batch[index("micro_batch")],
            settings: experiment.settings.clone(),
            optimizer: experiment.optimizer.clone(),
        };
        let point = PointSpec { id: point_id(&point), ..point };
        let excluded_by = experiment.exclude.iter().position(|rule| {
            rule.iter().all(|(axis, wanted)| {
                let value = axes.value(axis, index(axis));
                match wanted {
                    toml::Value::Array(any) => any.contains(&value),
                    single => *single == value,
                }
            })
        });
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

/// A readable, unique, filesystem-safe name made of the point's axis values.
pub fn point_id(p: &PointSpec) -> String {
    format!("{}-{}-n{}x{}-mb{}", p.model.name, p.strategy.name(), p.nodes, p.ranks_per_node, p.micro_batch)
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
            Some(g) => AXES.iter().enumerate().filter(|(_, x)| g.iter().any(|y| y == *x)).map(|(i, _)| i).collect(),
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
