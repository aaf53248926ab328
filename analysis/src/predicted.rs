//! Plots of predicted points (`shardsweep predict --plots DIR`): throughput against nodes, a
//! line per strategy (and shard group) in a panel per model, dashed ideal linear scaling from
//! each line's fewest nodes; and peak device memory against nodes the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::plot::{line_panels, prediction_bars, Bar, Line, Panel};
use crate::AnalysisError;

/// One predicted point, as the plots need it.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictedPoint {
    pub model: String,
    /// The line it belongs to (strategy, with its shard group for the hybrid ones).
    pub series: String,
    pub nodes: u32,
    pub images_per_s: f64,
    pub peak_device_bytes: f64,
}

/// (nodes, value) pairs by line, by model.
type Series<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Vec<(f64, f64)>>>;

fn panels(points: &[PredictedPoint], value: fn(&PredictedPoint) -> f64, ideal: bool) -> Vec<Panel> {
    let mut by_model: Series = BTreeMap::new();
    for p in points {
        by_model
            .entry(&p.model)
            .or_default()
            .entry(&p.series)
            .or_default()
            .push((f64::from(p.nodes), value(p)));
    }
    by_model
        .into_iter()
        .map(|(model, series)| {
            let mut lines = Vec::new();
            for (name, mut pts) in series {
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                if ideal {
                    if let Some(&(n0, v0)) = pts.first() {
                        lines.push(Line {
                            name: format!("{name} ideal"),
                            points: pts.iter().map(|(n, _)| (*n, v0 * n / n0)).collect(),
                            dashed: true,
                        });
                    }
                }
                lines.push(Line { name: name.to_string(), points: pts, dashed: false });
            }
            Panel { title: model.to_string(), lines }
        })
        .collect()
}

/// Writes `predicted_throughput` and `predicted_memory` (PNG and SVG) into `dir`.
pub fn plot(points: &[PredictedPoint], dir: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| AnalysisError::Plot { path: dir.to_path_buf(), message: e.to_string() })?;
    let mut out = line_panels(
        dir,
        "predicted_throughput",
        "Predicted throughput (dashed: linear scaling)",
        "images/s",
        &panels(points, |p| p.images_per_s, true),
    )?;
    out.extend(line_panels(
        dir,
        "predicted_memory",
        "Predicted peak device memory per rank",
        "GiB",
        &panels(points, |p| p.peak_device_bytes / (1u64 << 30) as f64, false),
    )?);
    Ok(out)
}

/// Writes `predicted_vs_measured` (PNG and SVG): predicted over measured images/s per point.
pub fn residual_plot(ratios: &[(String, f64)], dir: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    let bars: Vec<Bar> = ratios
        .iter()
        .map(|(label, r)| Bar { label: label.clone(), value: *r, low: *r, high: *r })
        .collect();
    prediction_bars(dir, "predicted_vs_measured", "Predicted against measured throughput", &bars)
}
