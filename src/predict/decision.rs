//! What a prediction is for: per cell of (model, nodes), the point predicted fastest and the
//! points the prediction cannot tell from it (their 90% interval reaches its predicted
//! throughput), so a user runs only those candidates.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{PerfModel, Prediction};
use crate::plan::{Plan, PointSpec, Rejected, Rejection};

/// A point's standing in its (model, nodes) cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Predicted fastest in its cell.
    Best,
    /// Slower as predicted, but its 90% interval reaches the best's prediction: a candidate too.
    Tie,
    /// Slower beyond the intervals.
    Slower,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Best => "best",
            Decision::Tie => "tie",
            Decision::Slower => "slower",
        }
    }

    /// The best and its ties: the points worth running.
    pub fn is_candidate(self) -> bool {
        matches!(self, Decision::Best | Decision::Tie)
    }
}

/// Each row's standing in its (model, nodes) cell, in the rows' order.
pub fn decide(rows: &[(&PointSpec, &Prediction)]) -> Vec<Decision> {
    let mut best: BTreeMap<(&str, u32), usize> = BTreeMap::new();
    for (i, (p, r)) in rows.iter().enumerate() {
        let slot = best.entry((p.model.name.as_str(), p.nodes)).or_insert(i);
        if r.images_per_s > rows[*slot].1.images_per_s {
            *slot = i;
        }
    }
    rows.iter()
        .enumerate()
        .map(|(i, (p, r))| {
            let b = best[&(p.model.name.as_str(), p.nodes)];
            if b == i {
                Decision::Best
            } else if r.images_per_s_high >= rows[b].1.images_per_s {
                Decision::Tie
            } else {
                Decision::Slower
            }
        })
        .collect()
}

/// Keeps in `plan` only the best point of each (model, nodes) and its ties as `model` predicts
/// them; the others move to the rejected points, each with its prediction and the best's.
pub fn keep_candidates(plan: &mut Plan, model: &PerfModel) {
    let predictions: Vec<Prediction> = plan.points.iter().map(|p| model.predict(p)).collect();
    let rows: Vec<(&PointSpec, &Prediction)> = plan.points.iter().zip(&predictions).collect();
    let decisions = decide(&rows);
    let best: BTreeMap<(&str, u32), (&str, &Prediction)> = rows
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| **d == Decision::Best)
        .map(|((p, r), _)| ((p.model.name.as_str(), p.nodes), (p.id.as_str(), *r)))
        .collect();
    let mut kept = Vec::new();
    let mut rejected = Vec::new();
    for ((p, r), d) in rows.iter().zip(&decisions) {
        if d.is_candidate() {
            kept.push((*p).clone());
            continue;
        }
        let (id, b) = best[&(p.model.name.as_str(), p.nodes)];
        rejected.push(Rejected {
            id: p.id.clone(),
            reason: format!(
                "not a candidate: predicted {:.1} images/s (90%: {:.1}-{:.1}), below {id}'s {:.1} (90%: {:.1}-{:.1})",
                r.images_per_s, r.images_per_s_low, r.images_per_s_high,
                b.images_per_s, b.images_per_s_low, b.images_per_s_high
            ),
            kind: Rejection::NotACandidate,
        });
    }
    plan.points = kept;
    plan.rejected.extend(rejected);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Strategy;
    use crate::predict::measurements::point_for;
    use crate::predict::{Hardware, PerfModel};

    #[test]
    fn the_best_and_the_points_it_cannot_be_told_from_are_candidates() {
        let knobs = Hardware::fallback().measurement_defaults;
        let model = PerfModel {
            hardware: Hardware::fallback(),
            calibration: None,
            peak_flop_per_s: Default::default(),
            anchors: Vec::new(),
        };
        let at = |s, n| point_for("t", "vit-base", s, None, n, 8, 32, &knobs).unwrap();
        let points =
            [at(Strategy::NoShard, 2), at(Strategy::FullShard, 2), at(Strategy::NoShard, 4)];
        let mut predictions: Vec<Prediction> = points.iter().map(|p| model.predict(p)).collect();
        for (r, (images, width)) in
            predictions.iter_mut().zip([(100.0, 5.0), (90.0, 4.0), (1.0, 0.1)])
        {
            (r.images_per_s, r.images_per_s_low, r.images_per_s_high) =
                (images, images - width, images + width);
        }
        let rows: Vec<(&PointSpec, &Prediction)> = points.iter().zip(&predictions).collect();
        assert_eq!(decide(&rows), [Decision::Best, Decision::Slower, Decision::Best]);
        predictions[1].images_per_s_high = 101.0;
        let rows: Vec<(&PointSpec, &Prediction)> = points.iter().zip(&predictions).collect();
        assert_eq!(decide(&rows), [Decision::Best, Decision::Tie, Decision::Best]);
    }
}
