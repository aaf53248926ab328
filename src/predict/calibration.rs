//! The calibration file (JSON): fitted hardware figures, per-model compute corrections, each
//! parameter's bounds and where its value came from, and the fit's residuals.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::hardware::Hardware;

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a calibration file: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("{path}: calibration for system {found:?}, not {wanted:?}")]
    OtherSystem { path: String, found: String, wanted: String },
    #[error("{0}")]
    Write(#[from] crate::records::RecordError),
    #[error(
        "{path}: not written: the fit gave {name} = {value} (the measurements cannot determine it)"
    )]
    NotFinite { path: String, name: String, value: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub system: String,
    pub created_at: String,
    /// Every hardware figure the model uses, fitted or default.
    pub hardware: Hardware,
    /// Per-model multipliers on the width curve's compute rate (models the fit saw).
    pub model_compute_scale: BTreeMap<String, f64>,
    pub parameters: Vec<FittedParameter>,
    /// Measured against predicted for every row the calibration read, fitted or held out.
    pub residuals: Vec<Residual>,
    pub summary: FitSummary,
    /// The measurements predictions of the same configurations stand on (the fitted rows).
    #[serde(default)]
    pub anchors: Vec<super::AnchorPoint>,
    /// Extrapolation error per doubling of nodes or micro-batch away from an anchor (standard
    /// deviation of the log), fitted from pairs of measured rows; `None`: no pair to fit to.
    #[serde(default)]
    pub error_per_doubling: Option<f64>,
    /// Error of the model's ratio between two configurations measured at one node count and
    /// micro-batch (standard deviation of the log), for predictions standing on a sibling.
    #[serde(default)]
    pub error_across_configurations: Option<f64>,
    /// With `calibrate --validate`: the held-out rows scored as the user would use them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<super::validate::Figures>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FittedParameter {
    pub name: String,
    pub value: f64,
    pub default: f64,
    /// Bounds of the fit (none: measured directly, positive).
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// `default (system profile)`, or what it was fitted to.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Residual {
    pub point: String,
    pub source: String,
    pub measured_images_per_s: f64,
    pub predicted_images_per_s: f64,
    /// (predicted - measured) / measured.
    pub relative_error: f64,
    /// Whether the row was used in the fit (false: held out, a prediction).
    pub fitted: bool,
    /// What the prediction stood on: `model`, or the anchor (held-out rows).
    #[serde(default = "model_basis")]
    pub basis: String,
}

fn model_basis() -> String {
    "model".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitSummary {
    pub rows_fitted: usize,
    pub rows_held_out: usize,
    pub fitted_median_abs_error: Option<f64>,
    pub fitted_p90_abs_error: Option<f64>,
    pub held_out_median_abs_error: Option<f64>,
    pub held_out_p90_abs_error: Option<f64>,
    pub unit_samples: usize,
    pub collective_samples: usize,
}

impl Calibration {
    /// Reads a calibration file for whichever system it was fitted for.
    pub fn read(path: &Path) -> Result<Self, CalibrationError> {
        let name = path.display().to_string();
        let text = std::fs::read(path)
            .map_err(|source| CalibrationError::Io { path: name.clone(), source })?;
        serde_json::from_slice(&text)
            .map_err(|source| CalibrationError::Parse { path: name, source })
    }

    pub fn load(path: &Path, system: &str) -> Result<Self, CalibrationError> {
        let name = path.display().to_string();
        let text = std::fs::read(path)
            .map_err(|source| CalibrationError::Io { path: name.clone(), source })?;
        let cal: Calibration = serde_json::from_slice(&text)
            .map_err(|source| CalibrationError::Parse { path: name.clone(), source })?;
        if cal.system != system {
            return Err(CalibrationError::OtherSystem {
                path: name,
                found: cal.system,
                wanted: system.into(),
            });
        }
        Ok(cal)
    }

    /// Writes the calibration atomically.
    ///
    /// # Errors
    /// A parameter that is not finite (JSON would hold it as `null`, which no reader takes), or
    /// the file not written.
    pub fn write(&self, path: &Path) -> Result<(), CalibrationError> {
        if let Some(p) = self.parameters.iter().find(|p| !p.value.is_finite()) {
            return Err(CalibrationError::NotFinite {
                path: path.display().to_string(),
                name: p.name.clone(),
                value: p.value,
            });
        }
        let json = serde_json::to_vec_pretty(self).expect("a calibration serialises");
        crate::records::write_atomic(path, &json)?;
        Ok(())
    }
}

/// The absolute relative errors' median and 90th percentile (nearest rank).
pub fn error_quantiles(errors: &[f64]) -> (Option<f64>, Option<f64>) {
    let mut e: Vec<f64> = errors.iter().map(|x| x.abs()).filter(|x| x.is_finite()).collect();
    if e.is_empty() {
        return (None, None);
    }
    e.sort_by(f64::total_cmp);
    let q = |p: f64| e[((p * e.len() as f64).ceil() as usize).clamp(1, e.len()) - 1];
    (Some(q(0.5)), Some(q(0.9)))
}
