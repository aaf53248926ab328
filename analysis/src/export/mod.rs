//! What dashboards read: one [`MetricRow`] per run, point and metric, written as JSON lines
//! ([`jsonl`]), Bencher's BMF JSON ([`bmf`]) or Otava's CSV ([`otava`]). `history` writes all
//! three; a comparison can hand its own rows to the same writers.

pub mod bmf;
pub mod jsonl;
pub mod otava;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

/// One figure of one point in one run: the median (or other estimate) with its 95% interval.
///
/// - `run`: the run's name (a sweep's folder or bundle name);
/// - `time`: when the run started (RFC 3339; empty when the manifests do not say);
/// - `point`: the point's id; `metric`: what was measured (`step_s`, `images_per_s`,
///   `<phase>_s`); `unit`: its unit (`s`, `images/s`);
/// - `value`, `low`, `high`: the estimate and its interval (equal when there is none);
/// - `attributes`: anything else a dashboard should show beside it (library versions, the
///   environment variables that change behaviour, the harness's commit).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    pub run: String,
    pub time: String,
    pub point: String,
    pub metric: String,
    pub unit: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub attributes: BTreeMap<String, String>,
}

impl MetricRow {
    /// Whether a larger value is better: rates (`.../s`) are, times and sizes are not.
    pub fn higher_is_better(&self) -> bool {
        self.unit.ends_with("/s")
    }
}

/// An export that could not be written, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Write(#[from] shardsweep_records::RecordError),
    #[error("{path}: {message}")]
    Format { path: String, message: String },
}

/// Writes `bytes` to `path` atomically.
fn write(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    Ok(shardsweep_records::write_atomic(path, bytes)?)
}

/// A JSON number, or `null` for NaN and infinities (which JSON cannot hold).
fn number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}
