//! JSON lines: one JSON object per row, one row per line (what `jq`, DuckDB's `read_json` and
//! most log shippers read). Rows are any serialisable record: [`MetricRow`](super::MetricRow),
//! or a caller's own struct that flattens one and adds fields.

use std::path::Path;

use serde::Serialize;

use super::{write, ExportError};

/// The rows as JSON lines (NaN and infinities become `null`).
pub fn to_jsonl<T: Serialize>(rows: &[T]) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for row in rows {
        out += &serde_json::to_string(row)?;
        out.push('\n');
    }
    Ok(out)
}

/// Writes the rows to `path` as JSON lines, atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), ExportError> {
    let text = to_jsonl(rows).map_err(|e| ExportError::Format {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    write(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::MetricRow;

    #[test]
    fn one_object_per_line_and_nan_is_null() {
        let row = |value: f64| MetricRow {
            run: "r1".into(),
            time: "2026-01-01T00:00:00Z".into(),
            point: "a".into(),
            metric: "step_s".into(),
            unit: "s".into(),
            value,
            low: 0.9,
            high: 1.1,
            attributes: [("torch_version".to_string(), "2.13.0".to_string())].into(),
        };
        let text = to_jsonl(&[row(1.0), row(f64::NAN)]).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["value"], 1.0);
        assert_eq!(lines[0]["attributes"]["torch_version"], "2.13.0");
        assert!(lines[1]["value"].is_null());
    }
}
