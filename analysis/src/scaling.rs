//! Scaling efficiency against the smallest node count of each series.
//!
//! - Weak scaling (the per-device batch is fixed, the global batch grows with the nodes):
//!   efficiency = (images/s per device at N nodes) / (images/s per device at the smallest N).
//! - Strong scaling (the global batch is fixed, the per-device batch shrinks):
//!   efficiency = (images/s at N / images/s at N0) / (devices at N / devices at N0).
//!
//! A series is every ok point with the same value on every axis but the node count (and, for
//! strong scaling, the micro-batch): see [`series`](crate::series). A series needs at least
//! two node counts.

use shardsweep_records::Outcome;
use std::collections::BTreeMap;

use crate::series::{series_key, Scaling};
use crate::summary::PointSummary;

/// The smallest node count's point of a series, and how many node counts the series has.
struct Baseline {
    nodes: u32,
    images_per_s: f64,
    devices: f64,
    node_counts: usize,
}

pub fn add_efficiencies(points: &mut [PointSummary]) {
    let weak_key = |p: &PointSummary| series_key(&p.meta, Scaling::Weak);
    let strong_key = |p: &PointSummary| series_key(&p.meta, Scaling::Strong);
    let weak = baselines(points, weak_key);
    let strong = baselines(points, strong_key);
    // A point without a throughput has no efficiency either (not NaN).
    for p in points
        .iter_mut()
        .filter(|p| p.meta.outcome == Outcome::Ok && p.images_per_s.estimate.is_finite())
    {
        let devices = f64::from(p.meta.world_size);
        if let Some(b) = weak.get(&weak_key(p)).filter(|b| b.node_counts > 1) {
            p.weak_scaling_efficiency =
                Some((p.images_per_s.estimate / devices) / (b.images_per_s / b.devices));
        }
        if let Some(b) = strong.get(&strong_key(p)).filter(|b| b.node_counts > 1) {
            p.strong_scaling_efficiency =
                Some((p.images_per_s.estimate / b.images_per_s) / (devices / b.devices));
        }
    }
}

fn baselines(
    points: &[PointSummary],
    key: impl Fn(&PointSummary) -> String,
) -> BTreeMap<String, Baseline> {
    let mut base: BTreeMap<String, Baseline> = BTreeMap::new();
    let mut nodes: BTreeMap<String, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for p in points
        .iter()
        .filter(|p| p.meta.outcome == Outcome::Ok && p.images_per_s.estimate.is_finite())
    {
        let k = key(p);
        nodes.entry(k.clone()).or_default().insert(p.meta.nodes);
        let candidate = Baseline {
            nodes: p.meta.nodes,
            images_per_s: p.images_per_s.estimate,
            devices: f64::from(p.meta.world_size),
            node_counts: 0,
        };
        match base.get(&k) {
            Some(b) if b.nodes <= candidate.nodes => {}
            _ => {
                base.insert(k, candidate);
            }
        }
    }
    for (k, b) in base.iter_mut() {
        b.node_counts = nodes[k].len();
    }
    base
}
