//! A measured sweep's points predicted after the fact, each as a user would have predicted it
//! before running it (a hindcast): standing on the calibration's and the sweep's other
//! measurements of its configuration (never on its own), else by the model alone; with the
//! validation figures ([`validate::score`](super::validate::score)) over all of them.

use std::collections::BTreeMap;
use std::path::Path;

use super::measurements::{read_records, Measured, MeasurementError};
use super::validate::{score, Figures, Scored};
use super::{AnchorPoint, Calibration, Hardware, PerfModel};

/// Points whose prediction is off by more than this share of their measurement are flagged.
pub const FLAG_SHARE: f64 = 0.20;

/// One point, measured and predicted (images/s; a figure that cannot be computed is NaN).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub point: String,
    pub measured: f64,
    pub predicted: f64,
    /// (predicted - measured) / measured.
    pub error: f64,
    /// Off by more than [`FLAG_SHARE`].
    pub flagged: bool,
    /// What the prediction stands on ([`Basis::label`](super::Basis::label)).
    pub basis: String,
}

/// Every finished point of a sweep predicted in hindsight, and the figures over them.
#[derive(Debug, Clone)]
pub struct Hindcast {
    pub rows: Vec<Row>,
    pub figures: Figures,
}

impl Hindcast {
    /// Predicted over measured images/s per point (the residual plot's bars).
    pub fn ratios(&self) -> Vec<(String, f64)> {
        self.rows.iter().map(|r| (r.point.clone(), r.predicted / r.measured)).collect()
    }

    /// The rows as CSV (`report/predicted_vs_measured.csv`); a figure that cannot be computed
    /// is an empty cell, never NaN.
    pub fn csv(&self) -> String {
        let cell = |v: f64| if v.is_finite() { v.to_string() } else { String::new() };
        let mut csv = String::from(
            "point,measured_images_per_s,predicted_images_per_s,relative_error,flagged,basis\n",
        );
        for r in &self.rows {
            csv += &format!(
                "{},{},{},{},{},{}\n",
                r.point,
                cell(r.measured),
                cell(r.predicted),
                cell(r.error),
                r.flagged,
                r.basis
            );
        }
        csv
    }
}

/// Every finished point of `sweep_dir` ([`read_records`]) predicted with `calibration` on
/// `hardware` (peak FLOP/s per compute type for MFU: `peak_flop_per_s`).
///
/// # Errors
/// Reading the sweep's records.
pub fn of_sweep(
    sweep_dir: &Path,
    calibration: Calibration,
    hardware: Hardware,
    peak_flop_per_s: BTreeMap<String, f64>,
) -> Result<Hindcast, MeasurementError> {
    let measured = read_records(sweep_dir, &|_| true)?.points;
    let model = PerfModel {
        hardware,
        calibration: Some(calibration),
        peak_flop_per_s,
        anchors: Vec::new(),
    };
    Ok(of_points(&model, &measured))
}

/// `measured` predicted by `model` (whose own anchors are left aside), each standing on the
/// calibration's anchors and the other points' measurements.
fn of_points(model: &PerfModel, measured: &[Measured]) -> Hindcast {
    let mut anchors = model.calibration.as_ref().map(|c| c.anchors.clone()).unwrap_or_default();
    anchors.extend(measured.iter().map(Measured::anchor));
    let mut rows = Vec::new();
    let mut scored = Vec::new();
    for m in measured {
        let own = |a: &AnchorPoint| a.configures(&m.point) && a.doublings(&m.point) == 0.0;
        let others: Vec<_> = anchors.iter().filter(|a| !own(a)).cloned().collect();
        let reference = others
            .iter()
            .filter(|a| {
                a.configures(&m.point)
                    && a.micro_batch == m.point.micro_batch
                    && a.nodes < m.point.nodes
            })
            .max_by_key(|a| a.nodes)
            .map(|a| (a.nodes, a.images_per_s));
        let prediction = PerfModel { anchors: others, ..model.clone() }.predict(&m.point);
        let predicted = prediction.images_per_s;
        scored.push(Scored {
            point: &m.point,
            measured: m.images_per_s,
            predicted,
            low: prediction.images_per_s_low,
            high: prediction.images_per_s_high,
            reference,
        });
        let error = (predicted - m.images_per_s) / m.images_per_s;
        rows.push(Row {
            point: m.point.id.clone(),
            measured: m.images_per_s,
            predicted,
            error,
            flagged: error.abs() > FLAG_SHARE,
            basis: prediction.basis.label(),
        });
    }
    Hindcast { figures: score(&scored), rows }
}
