//! What a prediction is for: per cell of (model, nodes), the point predicted fastest and the
//! points the prediction cannot tell from it (their 90% intervals overlap its own), so a user
//! runs only those candidates.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Prediction;
use crate::plan::PointSpec;

/// A point's standing in its (model, nodes) cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Predicted fastest in its cell.
    Best,
    /// Slower as predicted, but its interval overlaps the best's: a candidate too.
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
            } else if r.images_per_s_high >= rows[b].1.images_per_s_low {
                Decision::Tie
            } else {
                Decision::Slower
            }
        })
        .collect()
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
        predictions[1].images_per_s_high = 95.0;
        let rows: Vec<(&PointSpec, &Prediction)> = points.iter().zip(&predictions).collect();
        assert_eq!(decide(&rows), [Decision::Best, Decision::Tie, Decision::Best]);
    }
}
