//! What the upgrade changes in the decision a sweep is for: per (model, nodes), the fastest
//! configuration (strategy, shard group, micro-batch; by median steady throughput) before and
//! after, and the points that finished before and not after (out of memory, most often).

use std::collections::BTreeMap;

use shardsweep_records::Outcome;

use crate::summary::PointSummary;

/// The best configuration of one (model, nodes) cell on each side, where it differs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BestChange {
    pub model: String,
    pub nodes: u32,
    pub before: String,
    pub before_images_per_s: f64,
    pub after: String,
    pub after_images_per_s: f64,
}

/// A point whose outcome changed (`ok` -> `oom`, or back).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutcomeChange {
    pub point: String,
    pub before: Outcome,
    pub after: Outcome,
}

/// `full_shard mb32`, `hybrid_shard sg8 mb16`.
pub fn configuration(p: &PointSummary) -> String {
    let m = &p.meta;
    let group =
        if m.strategy.is_hybrid() { format!(" sg{}", m.shard_group) } else { String::new() };
    format!("{}{group} mb{}", m.strategy.name(), m.micro_batch)
}

fn best(points: &[PointSummary]) -> BTreeMap<(String, u32), (String, f64)> {
    let mut cells: BTreeMap<(String, u32), (String, f64)> = BTreeMap::new();
    for p in
        points.iter().filter(|p| p.meta.outcome == Outcome::Ok && p.no_figures_reason().is_none())
    {
        let rate = p.images_per_s.estimate;
        let cell =
            cells.entry((p.meta.model.clone(), p.meta.nodes)).or_insert((String::new(), f64::MIN));
        if rate > cell.1 {
            *cell = (configuration(p), rate);
        }
    }
    cells
}

/// The cells whose best configuration differs, over the cells both sides measured.
pub fn best_changes(before: &[PointSummary], after: &[PointSummary]) -> Vec<BestChange> {
    let (b, a) = (best(before), best(after));
    b.into_iter()
        .filter_map(|((model, nodes), (was, was_rate))| {
            let (now, now_rate) = a.get(&(model.clone(), nodes))?.clone();
            (now != was).then_some(BestChange {
                model,
                nodes,
                before: was,
                before_images_per_s: was_rate,
                after: now,
                after_images_per_s: now_rate,
            })
        })
        .collect()
}
