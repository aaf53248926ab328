//! `analyze`: records in, summary table (CSV and printed), plots and a Markdown report out,
//! all under `<sweep>/report/`.

use std::path::{Path, PathBuf};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use polars::prelude::*;

use crate::load::load_sweep;
use crate::plot::{throughput_bars, Bar};
use crate::summary::summarize;
use crate::AnalysisError;

pub struct Report {
    /// The summary as a printable table.
    pub table: String,
    pub summary: DataFrame,
    pub files: Vec<PathBuf>,
}

pub fn analyze_sweep(sweep_dir: &Path) -> Result<Report, AnalysisError> {
    let records = load_sweep(sweep_dir)?;
    let summary = summarize(&records)?;
    let out = sweep_dir.join("report");
    std::fs::create_dir_all(&out).map_err(|source| AnalysisError::Io { path: out.display().to_string(), source })?;

    let csv = out.join("summary.csv");
    let mut table = summary.table.clone();
    write_csv(&csv, &mut table)?;

    let f64s = |name: &str| -> Result<Vec<f64>, AnalysisError> { Ok(table.column(name)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect()) };
    let points: Vec<String> = table.column("point")?.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect();
    let outcomes: Vec<String> = table.column("outcome")?.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect();
    let (batch, median, p10, p90) = (f64s("global_batch")?, f64s("step_s_median")?, f64s("step_s_p10")?, f64s("step_s_p90")?);
    let bars: Vec<Bar> = (0..points.len())
        .map(|i| Bar {
            label: if outcomes[i] == "ok" { points[i].clone() } else { format!("{} ({})", points[i], outcomes[i]) },
            value: batch[i] / median[i],
            low: batch[i] / p90[i],
            high: batch[i] / p10[i],
        })
        .collect();
    let mut files = vec![csv];
    files.extend(throughput_bars(&out, "throughput", &format!("{}: training throughput per point", records.sweep), &bars)?);

    let printed = printable(&table, &summary.phases)?;
    let markdown = out.join("report.md");
    let text = format!(
        "# Sweep {}\n\n{} points. Times are seconds, the median over steady-state steps (warm-up excluded) of the slowest rank's time in each step.\n\n![throughput](throughput.svg)\n\n```\n{}\n```\n\nFull table: [summary.csv](summary.csv).\n",
        records.sweep,
        points.len(),
        printed
    );
    std::fs::write(&markdown, text).map_err(|source| AnalysisError::Io { path: markdown.display().to_string(), source })?;
    files.push(markdown);
    Ok(Report { table: printed, summary: summary.table, files })
}

fn write_csv(path: &Path, table: &mut DataFrame) -> Result<(), AnalysisError> {
    let tmp = path.with_extension("csv.tmp");
    let io = |source| AnalysisError::Io { path: path.display().to_string(), source };
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    CsvWriter::new(&mut file).finish(table)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn printable(table: &DataFrame, phases: &[String]) -> Result<String, AnalysisError> {
    let mut columns = vec!["point", "outcome", "step_s_median"];
    columns.extend(phases.iter().map(String::as_str));
    columns.extend(["images_per_s", "final_loss"]);
    let mut out = Table::new();
    out.load_preset(UTF8_FULL_CONDENSED).set_header(columns.clone());
    for row in 0..table.height() {
        let cells: Vec<String> = columns
            .iter()
            .map(|name| {
                let value = table.column(name).and_then(|c| c.get(row)).map(|v| v.into_static());
                match value {
                    Ok(AnyValue::Float64(v)) if *name == "images_per_s" => format!("{v:.1}"),
                    Ok(AnyValue::Float64(v)) => format!("{v:.4}"),
                    Ok(AnyValue::String(s)) => s.to_string(),
                    Ok(AnyValue::StringOwned(s)) => s.to_string(),
                    Ok(AnyValue::Null) => "-".into(),
                    Ok(other) => other.to_string(),
                    Err(_) => "-".into(),
                }
            })
            .collect();
        out.add_row(cells);
    }
    Ok(out.to_string())
}
