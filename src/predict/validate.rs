//! Scoring predictions against measurements they were not fitted to, with the figures a user
//! decides by, side by side with what a user would do without the model: multiply the
//! throughput they measured for the same configuration at the nearest smaller node count by
//! the ratio of node counts (linear extrapolation).
//!
//! - errors: median, 90th percentile and largest |predicted - measured| / measured;
//! - the decision: per (model, nodes) cell of two or more rows, whether the point predicted
//!   fastest runs within 5% of the fastest measured one (strategy regret at most 5%);
//! - scaling breakdowns: a row whose measured throughput is below 0.8 of linear scaling from its
//!   reference (the configuration's measurement at the nearest smaller node count) is a
//!   breakdown; found if the prediction also says below 0.8, a false alarm if only it does;
//! - the intervals: how many measurements lie inside their prediction's 90% interval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calibration::error_quantiles;
use super::measurements::Measured;
use super::{Calibration, Hardware, PerfModel};
use crate::plan::PointSpec;

/// Below this share of linear scaling from its reference a point has broken down.
pub const BREAKDOWN_EFFICIENCY: f64 = 0.8;
/// The point predicted fastest is a right decision if it runs within this share of the best.
pub const REGRET_TOLERANCE: f64 = 0.05;

/// One scored row.
#[derive(Debug, Clone)]
pub struct Scored<'a> {
    pub point: &'a PointSpec,
    pub measured: f64,
    pub predicted: f64,
    /// The prediction's 90% interval.
    pub low: f64,
    pub high: f64,
    /// The same configuration measured at the nearest smaller node count: (nodes, images/s).
    pub reference: Option<(u32, f64)>,
}

/// One predictor's figures over the scored rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    /// Rows the predictor made a prediction for.
    pub rows: usize,
    pub median_abs_error: Option<f64>,
    pub p90_abs_error: Option<f64>,
    pub max_abs_error: Option<f64>,
    /// (model, nodes) cells of two or more rows, and those where the point predicted fastest
    /// runs within 5% of the fastest measured.
    pub cells: usize,
    pub best_within_5pct: usize,
    /// Rows with a reference at fewer nodes, the breakdowns among them, and how many of those
    /// the predictor found; false alarms: predicted breakdowns that were not.
    pub breakdown_rows: usize,
    pub breakdowns: usize,
    pub breakdowns_found: usize,
    pub false_alarms: usize,
    /// Measurements inside their prediction's 90% interval (the model's predictor only).
    pub inside_interval: Option<usize>,
}

/// The figures of the model's predictions and of linear extrapolation on the same rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figures {
    pub predictor: Score,
    /// Linear extrapolation from each row's reference (rows without one are left out).
    pub linear: Score,
}

/// Scores `rows` for the model's predictions and for linear extrapolation from the references.
pub fn score(rows: &[Scored]) -> Figures {
    let predictor: Vec<(&Scored, f64)> = rows.iter().map(|r| (r, r.predicted)).collect();
    let linear: Vec<(&Scored, f64)> = rows
        .iter()
        .filter_map(|r| {
            let (nodes, images) = r.reference?;
            Some((r, images * f64::from(r.point.nodes) / f64::from(nodes)))
        })
        .collect();
    let mut model = one(&predictor);
    model.inside_interval =
        Some(rows.iter().filter(|r| r.low <= r.measured && r.measured <= r.high).count());
    Figures { predictor: model, linear: one(&linear) }
}

fn one(rows: &[(&Scored, f64)]) -> Score {
    let errors: Vec<f64> = rows.iter().map(|(r, p)| (p - r.measured) / r.measured).collect();
    let (median_abs_error, p90_abs_error) = error_quantiles(&errors);
    let max_abs_error = errors.iter().map(|e| e.abs()).filter(|e| e.is_finite()).reduce(f64::max);
    let mut cells: BTreeMap<(&str, u32), Vec<(f64, f64)>> = BTreeMap::new();
    for (r, p) in rows {
        cells
            .entry((r.point.model.name.as_str(), r.point.nodes))
            .or_default()
            .push((*p, r.measured));
    }
    let cells: Vec<&Vec<(f64, f64)>> = cells.values().filter(|c| c.len() >= 2).collect();
    let best_within_5pct = cells
        .iter()
        .filter(|c| {
            let chosen = c.iter().max_by(|a, b| a.0.total_cmp(&b.0)).map_or(0.0, |x| x.1);
            let best = c.iter().map(|x| x.1).fold(0.0, f64::max);
            chosen >= (1.0 - REGRET_TOLERANCE) * best
        })
        .count();
    let mut score = Score {
        rows: rows.len(),
        median_abs_error,
        p90_abs_error,
        max_abs_error,
        cells: cells.len(),
        best_within_5pct,
        ..Score::default()
    };
    for (r, p) in rows {
        let Some((nodes, reference)) = r.reference.filter(|(n, _)| *n < r.point.nodes) else {
            continue;
        };
        let linear = reference * f64::from(r.point.nodes) / f64::from(nodes);
        let (measured, predicted) =
            (r.measured / linear < BREAKDOWN_EFFICIENCY, p / linear < BREAKDOWN_EFFICIENCY);
        score.breakdown_rows += 1;
        score.breakdowns += usize::from(measured);
        score.breakdowns_found += usize::from(measured && predicted);
        score.false_alarms += usize::from(predicted && !measured);
    }
    score
}

/// The figures as table rows: (figure, the model's, linear extrapolation's).
pub fn table_rows(f: &Figures) -> Vec<[String; 3]> {
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v));
    let (m, l) = (&f.predictor, &f.linear);
    let breakdowns = |s: &Score| {
        let (found, all, alarms) = (s.breakdowns_found, s.breakdowns, s.false_alarms);
        format!("{found} of {all}, {alarms} in {}", s.breakdown_rows - s.breakdowns)
    };
    vec![
        ["rows scored".into(), m.rows.to_string(), l.rows.to_string()],
        ["median |error| of images/s".into(), pct(m.median_abs_error), pct(l.median_abs_error)],
        [
            "p90 / max |error|".into(),
            format!("{} / {}", pct(m.p90_abs_error), pct(m.max_abs_error)),
            format!("{} / {}", pct(l.p90_abs_error), pct(l.max_abs_error)),
        ],
        [
            "predicted-best within 5% of the measured best".into(),
            format!("{} of {} cells", m.best_within_5pct, m.cells),
            format!("{} of {} cells", l.best_within_5pct, l.cells),
        ],
        ["breakdowns (< 0.8 of linear) found, false alarms".into(), breakdowns(m), breakdowns(l)],
        [
            "measured inside the 90% interval".into(),
            m.inside_interval.map_or("-".into(), |n| format!("{n} of {}", m.rows)),
            "-".into(),
        ],
    ]
}

/// The held-out rows predicted with the calibration (standing on its fitted rows), each with
/// its reference: the same configuration's fitted row at the nearest node count (a smaller one
/// first), as linear extrapolation would start from it.
pub fn held_out(
    cal: &Calibration,
    hw: &Hardware,
    peak_flop_per_s: &std::collections::BTreeMap<String, f64>,
    held_out: &[Measured],
) -> Figures {
    let model = PerfModel {
        hardware: hw.clone(),
        calibration: Some(cal.clone()),
        peak_flop_per_s: peak_flop_per_s.clone(),
        anchors: cal.anchors.clone(),
    };
    let scored: Vec<Scored> = held_out
        .iter()
        .map(|m| {
            let r = model.predict(&m.point);
            let reference = cal
                .anchors
                .iter()
                .filter(|a| a.configures(&m.point) && a.micro_batch == m.point.micro_batch)
                .filter(|a| a.nodes != m.point.nodes)
                .min_by_key(|a| (a.nodes > m.point.nodes, a.nodes.abs_diff(m.point.nodes)))
                .map(|a| (a.nodes, a.images_per_s));
            Scored {
                point: &m.point,
                measured: m.images_per_s,
                predicted: r.images_per_s,
                low: r.images_per_s_low,
                high: r.images_per_s_high,
                reference,
            }
        })
        .collect();
    score(&scored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Strategy;
    use crate::predict::measurements::point_for;
    use crate::predict::Hardware;

    #[test]
    fn regret_breakdowns_and_errors_are_counted_per_cell() {
        let knobs = Hardware::fallback().measurement_defaults;
        let at = |s, n| point_for("t", "vit-base", s, None, n, 8, 32, &knobs).unwrap();
        let points = [at(Strategy::NoShard, 8), at(Strategy::FullShard, 8)];
        // References at 2 nodes: 100 and 110 images/s. Measured at 8: no_shard scales (400),
        // full_shard breaks down (300 of 440). The model says full_shard is faster (a wrong
        // decision) but sees its breakdown; linear extrapolation picks full_shard too.
        let rows = [
            Scored {
                point: &points[0],
                measured: 400.0,
                predicted: 380.0,
                low: 350.0,
                high: 410.0,
                reference: Some((2, 100.0)),
            },
            Scored {
                point: &points[1],
                measured: 300.0,
                predicted: 390.0,
                low: 380.0,
                high: 400.0,
                reference: Some((2, 110.0)),
            },
        ];
        let f = score(&rows);
        assert_eq!((f.predictor.cells, f.predictor.best_within_5pct), (1, 0));
        assert_eq!((f.predictor.breakdowns, f.predictor.breakdowns_found), (1, 0));
        assert_eq!(f.predictor.max_abs_error, Some(0.3));
        assert_eq!(f.predictor.inside_interval, Some(1));
        assert_eq!((f.linear.breakdowns_found, f.linear.false_alarms), (0, 0));
        assert_eq!(f.linear.median_abs_error, Some(0.0));
        let fixed = [rows[0].clone(), Scored { predicted: 310.0, ..rows[1].clone() }];
        let f = score(&fixed);
        assert_eq!((f.predictor.best_within_5pct, f.predictor.breakdowns_found), (1, 1));
        assert_eq!(table_rows(&f).len(), 6);
    }
}
