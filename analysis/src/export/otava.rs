//! Otava's (formerly Hunter's) CSV: one row per run, ordered by its time column, a column per
//! metric and columns of attributes shown beside them. Here a metric column is
//! `<point>.<metric>` (its median), the attributes are the run's name and its environment, and
//! [`otava_config`] writes the test definition (`otava.yaml`) that `otava analyze` reads it
//! with, each metric's direction set from its unit (rates: higher is better).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{write, ExportError, MetricRow};

/// The CSV's fixed columns: when the run started and its name.
pub const TIME_COLUMN: &str = "time";
pub const RUN_COLUMN: &str = "run";

/// A metric's column name.
pub fn column(row: &MetricRow) -> String {
    format!("{}.{}", row.point, row.metric)
}

/// A CSV field, quoted when it holds a delimiter, a quote or a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// One run's cells: its time, its attributes (from its first row that has each) and values.
struct Run<'a> {
    time: &'a str,
    attributes: BTreeMap<&'a str, &'a str>,
    values: BTreeMap<String, f64>,
}

/// The runs of `rows`, in the order their first rows come, and every metric column.
fn runs(rows: &[MetricRow]) -> (Vec<(&str, Run<'_>)>, BTreeSet<String>) {
    let mut order: Vec<(&str, Run)> = Vec::new();
    let mut columns = BTreeSet::new();
    for row in rows {
        let index = match order.iter().position(|(name, _)| *name == row.run) {
            Some(i) => i,
            None => {
                let run =
                    Run { time: &row.time, attributes: BTreeMap::new(), values: BTreeMap::new() };
                order.push((&row.run, run));
                order.len() - 1
            }
        };
        let run = &mut order[index].1;
        for (k, v) in &row.attributes {
            run.attributes.entry(k).or_insert(v);
        }
        columns.insert(column(row));
        run.values.insert(column(row), row.value);
    }
    (order, columns)
}

/// The attribute columns of `rows`: every attribute any row has, in name order.
pub fn attribute_columns(rows: &[MetricRow]) -> Vec<String> {
    let keys: BTreeSet<&String> = rows.iter().flat_map(|r| r.attributes.keys()).collect();
    keys.into_iter().filter(|k| *k != TIME_COLUMN && *k != RUN_COLUMN).cloned().collect()
}

/// The CSV: `time,run,<attributes>,<point>.<metric>...`, a row per run sorted by time (runs
/// with equal times keep their order). A value a run lacks, or that is not finite, is empty.
pub fn to_otava_csv(rows: &[MetricRow]) -> String {
    let (mut order, columns) = runs(rows);
    order.sort_by(|a, b| a.1.time.cmp(b.1.time));
    let attributes = attribute_columns(rows);
    let header: Vec<String> = [TIME_COLUMN.to_string(), RUN_COLUMN.to_string()]
        .into_iter()
        .chain(attributes.iter().cloned())
        .chain(columns.iter().cloned())
        .map(|c| field(&c))
        .collect();
    let mut out = header.join(",") + "\n";
    for (name, run) in &order {
        let mut cells = vec![field(run.time), field(name)];
        cells.extend(
            attributes.iter().map(|a| field(run.attributes.get(a.as_str()).unwrap_or(&""))),
        );
        cells.extend(columns.iter().map(|c| match run.values.get(c) {
            Some(v) if v.is_finite() => v.to_string(),
            _ => String::new(),
        }));
        out += &cells.join(",");
        out.push('\n');
    }
    out
}

/// A YAML double-quoted string.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `tests:` entry that reads `csv` as test `test` (`otava analyze <test>`).
pub fn otava_config(test: &str, csv: &Path, rows: &[MetricRow]) -> String {
    let mut directions: BTreeMap<String, i32> = BTreeMap::new();
    for row in rows {
        directions.insert(column(row), if row.higher_is_better() { 1 } else { -1 });
    }
    let attributes: Vec<String> = std::iter::once(RUN_COLUMN.to_string())
        .chain(attribute_columns(rows))
        .map(|a| quoted(&a))
        .collect();
    let mut out = format!(
        "# Written by shardsweep: `otava --config-file THIS analyze {test}`.\ntests:\n  {}:\n    type: csv\n    file: {}\n    time_column: {TIME_COLUMN}\n    attributes: [{}]\n    csv_options:\n      delimiter: \",\"\n      quote_char: '\"'\n    metrics:\n",
        quoted(test),
        quoted(&csv.display().to_string()),
        attributes.join(", "),
    );
    for (name, direction) in &directions {
        out += &format!(
            "      {}:\n        column: {}\n        direction: {direction}\n",
            quoted(name),
            quoted(name)
        );
    }
    out
}

/// Writes `<dir>/<test>.csv` and `<dir>/otava.yaml` (the test definition naming the CSV by
/// its absolute path) and returns both paths.
pub fn write_otava(
    dir: &Path,
    test: &str,
    rows: &[MetricRow],
) -> Result<Vec<PathBuf>, ExportError> {
    let csv = dir.join(format!("{test}.csv"));
    write(&csv, to_otava_csv(rows).as_bytes())?;
    let absolute = std::path::absolute(&csv).unwrap_or_else(|_| csv.clone());
    let config = dir.join("otava.yaml");
    write(&config, otava_config(test, &absolute, rows).as_bytes())?;
    Ok(vec![csv, config])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, time: &str, point: &str, metric: &str, unit: &str, value: f64) -> MetricRow {
        MetricRow {
            run: run.into(),
            time: time.into(),
            point: point.into(),
            metric: metric.into(),
            unit: unit.into(),
            value,
            low: value,
            high: value,
            attributes: [("torch_version".to_string(), format!("2.{}", &run[1..]))].into(),
        }
    }

    #[test]
    fn a_row_per_run_in_time_order_with_a_column_per_point_and_metric() {
        let rows = [
            row("r2", "2026-01-02T00:00:00Z", "a", "step_s", "s", 1.5),
            row("r1", "2026-01-01T00:00:00Z", "a", "step_s", "s", 1.0),
            row("r1", "2026-01-01T00:00:00Z", "b,c", "images_per_s", "images/s", 8.0),
        ];
        let csv = to_otava_csv(&rows);
        assert_eq!(
            csv,
            "time,run,torch_version,a.step_s,\"b,c.images_per_s\"\n\
             2026-01-01T00:00:00Z,r1,2.1,1,8\n\
             2026-01-02T00:00:00Z,r2,2.2,1.5,\n"
        );
        let config = otava_config("shardsweep.nightly", Path::new("/x/h.csv"), &rows);
        assert!(config.contains("time_column: time"), "{config}");
        assert!(config.contains("attributes: [\"run\", \"torch_version\"]"), "{config}");
        assert!(
            config.contains("\"a.step_s\":\n        column: \"a.step_s\"\n        direction: -1")
        );
        assert!(config.contains(
            "\"b,c.images_per_s\":\n        column: \"b,c.images_per_s\"\n        direction: 1"
        ));
    }
}
