//! Bencher's Metric Format (BMF) JSON, which `bencher run --adapter json --file FILE` reads:
//! `{"<benchmark>": {"<measure>": {"value": v, "lower_value": l, "upper_value": h}}}`. The
//! benchmark is the point, the measure the metric (`step_s`, `images_per_s`, ...), and the
//! bounds its 95% interval. One document holds one run: Bencher records each upload as one
//! report of one branch and testbed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::{number, write, ExportError, MetricRow};

/// The BMF document of `rows`, which must all belong to one run. Rows without a finite value
/// are left out (BMF requires a number); bounds that are not finite are omitted.
pub fn bmf_document(rows: &[MetricRow]) -> Result<Value, String> {
    let mut benchmarks: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let runs: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.run.as_str()).collect();
    if runs.len() > 1 {
        return Err(format!(
            "one BMF document holds one run, these rows have {}: {}",
            runs.len(),
            runs.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    for row in rows.iter().filter(|r| r.value.is_finite()) {
        let mut metric = Map::new();
        metric.insert("value".into(), number(row.value));
        if row.low.is_finite() && row.high.is_finite() {
            metric.insert("lower_value".into(), number(row.low));
            metric.insert("upper_value".into(), number(row.high));
        }
        let measures = benchmarks.entry(&row.point).or_default();
        if measures.insert(row.metric.clone(), Value::Object(metric)).is_some() {
            return Err(format!("{} {} appears twice in run {}", row.point, row.metric, row.run));
        }
    }
    Ok(Value::Object(
        benchmarks.into_iter().map(|(k, v)| (k.to_string(), Value::Object(v))).collect(),
    ))
}

/// Writes the BMF document of `rows` (one run) to `path`, atomically.
pub fn write_bmf(path: &Path, rows: &[MetricRow]) -> Result<(), ExportError> {
    let format =
        |message: String| ExportError::Format { path: path.display().to_string(), message };
    let document = bmf_document(rows).map_err(format)?;
    let text = serde_json::to_string_pretty(&document).map_err(|e| format(e.to_string()))?;
    write(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, point: &str, metric: &str, value: f64) -> MetricRow {
        MetricRow {
            run: run.into(),
            time: String::new(),
            point: point.into(),
            metric: metric.into(),
            unit: "s".into(),
            value,
            low: value * 0.9,
            high: value * 1.1,
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn points_are_benchmarks_and_metrics_are_measures() {
        let doc = bmf_document(&[
            row("r", "a", "step_s", 1.0),
            row("r", "a", "images_per_s", 8.0),
            row("r", "b", "step_s", 2.0),
            row("r", "b", "forward_s", f64::NAN),
        ])
        .unwrap();
        assert_eq!(doc["a"]["step_s"]["value"], 1.0);
        assert_eq!(doc["a"]["step_s"]["lower_value"], 0.9);
        assert_eq!(doc["a"]["images_per_s"]["upper_value"], 8.8);
        assert_eq!(doc["b"].as_object().unwrap().len(), 1, "a NaN value is left out: {doc}");
    }

    #[test]
    fn two_runs_or_a_figure_twice_are_refused() {
        let two = bmf_document(&[row("r1", "a", "step_s", 1.0), row("r2", "a", "step_s", 1.0)]);
        assert!(two.unwrap_err().contains("r1, r2"));
        let twice = bmf_document(&[row("r", "a", "step_s", 1.0), row("r", "a", "step_s", 2.0)]);
        assert!(twice.unwrap_err().contains("a step_s appears twice"));
    }
}
