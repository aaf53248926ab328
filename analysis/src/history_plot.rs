//! The history's figure per point: its times (step and phases, seconds) and its throughput
//! against the run, each run's median with its 95% interval, and a dashed red line where a
//! change of level starts, labelled with the metric and the environment fields that changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::history::{file_stem, History, HistoryRow};
use crate::plot::{e, legend_box, write, Figure, PALETTE};
use crate::AnalysisError;

/// One panel: a line per metric of (run index, row).
struct Panel<'a> {
    title: &'static str,
    y_desc: &'static str,
    lines: BTreeMap<&'a str, Vec<(usize, &'a HistoryRow)>>,
}

struct PointHistory<'a> {
    title: String,
    runs: &'a [String],
    panels: Vec<Panel<'a>>,
}

/// Writes `history-<point>.png/.svg` under `out` for every point of the history.
pub(crate) fn plots(out: &Path, history: &History) -> Result<Vec<PathBuf>, AnalysisError> {
    let index: BTreeMap<&str, usize> =
        history.runs.iter().enumerate().map(|(i, r)| (r.as_str(), i)).collect();
    let mut points: BTreeMap<&str, [Panel; 2]> = BTreeMap::new();
    for row in &history.rows {
        let panels = points.entry(&row.row.point).or_insert_with(|| {
            [
                Panel {
                    title: "time per step and phase",
                    y_desc: "seconds (median of steady steps)",
                    lines: BTreeMap::new(),
                },
                Panel { title: "throughput", y_desc: "images/s", lines: BTreeMap::new() },
            ]
        });
        let panel = usize::from(row.row.higher_is_better());
        let run = index.get(row.row.run.as_str()).copied().unwrap_or(0);
        panels[panel].lines.entry(&row.row.metric).or_default().push((run, row));
    }
    let mut files = Vec::new();
    for (point, panels) in points {
        let figure = PointHistory {
            title: format!("{point}: history over {} runs", history.runs.len()),
            runs: &history.runs,
            panels: panels.into_iter().collect(),
        };
        files.extend(write(out, &format!("history-{}", file_stem(point)), &figure)?);
    }
    Ok(files)
}

impl Figure for PointHistory<'_> {
    fn size(&self) -> (u32, u32) {
        (1300, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(e)?;
        let body = root.titled(&self.title, ("sans-serif", 22)).map_err(e)?;
        let areas = body.split_evenly((1, self.panels.len()));
        let n = self.runs.len().max(1);
        let runs = self.runs;
        let run_label = move |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            runs.get(i as usize).map(|r| r.chars().take(14).collect()).unwrap_or_default()
        };
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            let values = || {
                panel
                    .lines
                    .values()
                    .flatten()
                    .flat_map(|(_, r)| [r.row.low, r.row.high, r.row.value])
            };
            let y_max = values().filter(|v| v.is_finite()).fold(0.0f64, f64::max).max(1e-12);
            // Headroom above the data for the legend (a row per line) and the change labels.
            let top = y_max * (1.25 + 0.075 * (panel.lines.len() + 1) as f64);
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..top)
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc("run (in the history's order)")
                .y_desc(panel.y_desc)
                .x_labels(n.min(12))
                .x_label_formatter(&run_label)
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(e)?;
            for (k, (metric, line)) in panel.lines.iter().enumerate() {
                let colour = PALETTE[k % PALETTE.len()];
                let style = colour.stroke_width(2);
                chart
                    .draw_series(
                        LineSeries::new(line.iter().map(|(i, r)| (*i as f64, r.row.value)), style)
                            .point_size(3),
                    )
                    .map_err(e)?
                    .label(metric.to_string())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
                chart
                    .draw_series(line.iter().map(|(i, r)| {
                        PathElement::new(
                            vec![(*i as f64, r.row.low), (*i as f64, r.row.high)],
                            colour.stroke_width(1),
                        )
                    }))
                    .map_err(e)?;
            }
            let red = RGBColor(200, 30, 30);
            let mut first = true;
            let mut stacked: BTreeMap<usize, usize> = BTreeMap::new();
            for (i, row) in panel.lines.values().flatten().filter(|(_, r)| r.change_point) {
                let x = *i as f64 - 0.5;
                let series = chart
                    .draw_series(DashedLineSeries::new(
                        [(x, 0.0), (x, top)],
                        5,
                        4,
                        red.stroke_width(1),
                    ))
                    .map_err(e)?;
                if first {
                    series
                        .label("change point")
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], red));
                    first = false;
                }
                let fields = if row.changed_fields.is_empty() {
                    "no field changed".to_string()
                } else {
                    row.changed_fields.join(", ")
                };
                let text = format!(
                    "{} {:+.1}%: {fields}",
                    row.row.metric,
                    100.0 * row.relative_change.unwrap_or(0.0)
                );
                // Labels of changes at the same run stack downwards.
                let nth = stacked.entry(*i).or_insert(0);
                let y = top * (0.97 - 0.04 * *nth as f64);
                *nth += 1;
                chart
                    .draw_series(std::iter::once(Text::new(
                        text,
                        (x + 0.03, y),
                        ("sans-serif", 11).into_font().color(&red),
                    )))
                    .map_err(e)?;
            }
            legend_box(&mut chart)?;
        }
        Ok(())
    }
}
