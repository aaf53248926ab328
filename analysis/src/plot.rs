//! Figures, each drawn once per backend so the PNG and the SVG show the same thing. Every
//! figure has a title, axis descriptions with units and a legend naming its series.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::AnalysisError;

pub(crate) trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static;
}

/// Writes `<stem>.png` and `<stem>.svg`.
pub(crate) fn write(
    dir: &Path,
    stem: &str,
    figure: &impl Figure,
) -> Result<Vec<PathBuf>, AnalysisError> {
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: String| AnalysisError::Plot { path: path.clone(), message: e }
    };
    let draw_on = |root: DrawingArea<BitMapBackend, Shift>| {
        figure.draw(&root).and_then(|_| root.present().map_err(|e| e.to_string()))
    };
    draw_on(BitMapBackend::new(&png, figure.size()).into_drawing_area()).map_err(err(&png))?;
    {
        let root = SVGBackend::new(&svg, figure.size()).into_drawing_area();
        figure
            .draw(&root)
            .and_then(|_| root.present().map_err(|e| e.to_string()))
            .map_err(err(&svg))?;
    }
    Ok(vec![png, svg])
}

pub(crate) fn e<E: std::error::Error + Send + Sync>(error: DrawingAreaErrorKind<E>) -> String {
    error.to_string()
}

pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(46, 110, 180),
    RGBColor(214, 96, 39),
    RGBColor(60, 150, 70),
    RGBColor(170, 50, 140),
    RGBColor(120, 120, 120),
    RGBColor(200, 160, 20),
    RGBColor(30, 170, 170),
    RGBColor(150, 80, 40),
    RGBColor(100, 70, 200),
    RGBColor(230, 130, 170),
];

pub(crate) fn legend_box<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, impl CoordTranslate>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(e)
}

/// The label of the row at `y` (rows sit at whole numbers; ticks between them stay blank).
fn row_label(labels: &[&str], y: f64) -> String {
    let i = y.round();
    if (y - i).abs() < 1e-6 && i >= 0.0 {
        labels.get(i as usize).map(|l| l.to_string()).unwrap_or_default()
    } else {
        String::new()
    }
}

/// A horizontal bar with a whisker: a median and its spread.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

struct Bars<'a> {
    title: &'a str,
    x_desc: &'a str,
    bar_label: &'a str,
    whisker_label: &'a str,
    bars: &'a [Bar],
    /// Bars start here and a reference line marks it (1.0 for ratios); `None`: from zero.
    reference: Option<f64>,
}

/// Horizontal bars of images/s per point (bar = median step, whisker = p10..p90 steps).
pub fn throughput_bars(
    dir: &Path,
    stem: &str,
    title: &str,
    bars: &[Bar],
) -> Result<Vec<PathBuf>, AnalysisError> {
    let x_desc = "images/s (bar: median step; whisker: 10th-90th percentile of steady steps)";
    write(
        dir,
        stem,
        &Bars {
            title,
            x_desc,
            bar_label: "median throughput",
            whisker_label: "10th-90th percentile",
            bars,
            reference: None,
        },
    )
}

/// Predicted over measured throughput, one bar per point (from 1: the prediction's error).
pub fn prediction_bars(
    dir: &Path,
    stem: &str,
    title: &str,
    bars: &[Bar],
) -> Result<Vec<PathBuf>, AnalysisError> {
    write(
        dir,
        stem,
        &Bars {
            title,
            x_desc: "predicted / measured images/s (bar from 1)",
            bar_label: "predicted / measured",
            whisker_label: "",
            bars,
            reference: Some(1.0),
        },
    )
}

/// Ratios after/before with their 95% intervals, one bar per point and phase.
pub fn ratio_bars(
    dir: &Path,
    stem: &str,
    title: &str,
    bars: &[Bar],
) -> Result<Vec<PathBuf>, AnalysisError> {
    let x_desc =
        "time after / time before (bar: ratio of medians from 1; whisker: 95% bootstrap interval)";
    write(
        dir,
        stem,
        &Bars {
            title,
            x_desc,
            bar_label: "ratio of medians",
            whisker_label: "95% interval",
            bars,
            reference: Some(1.0),
        },
    )
}

impl Figure for Bars<'_> {
    fn size(&self) -> (u32, u32) {
        let label = self.bars.iter().map(|b| b.label.len()).max().unwrap_or(8) as u32 * 8;
        (label + 800, 140 + 36 * self.bars.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        // Drawn bottom-up: reversed, the first bar is at the top.
        let bars: Vec<&Bar> = self.bars.iter().rev().collect();
        root.fill(&WHITE).map_err(e)?;
        let finite =
            || bars.iter().flat_map(|b| [b.low, b.value, b.high]).filter(|v| v.is_finite());
        let origin = self.reference.unwrap_or(0.0);
        let max = finite().fold(origin, f64::max).max(1e-9) * 1.1;
        // Ratios are shown around 1; throughputs from 0.
        let min =
            if self.reference.is_some() { finite().fold(origin, f64::min) * 0.95 } else { 0.0 };
        let label_width = bars.iter().map(|b| b.label.len()).max().unwrap_or(8) as u32 * 8 + 20;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(label_width)
            .build_cartesian_2d(min..max, -0.5..(bars.len() as f64 - 0.5))
            .map_err(e)?;
        let labels: Vec<&str> = bars.iter().map(|b| b.label.as_str()).collect();
        let label_of = |y: &f64| row_label(&labels, *y);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .x_desc(self.x_desc)
            .y_label_formatter(&label_of)
            .y_labels(bars.len().max(1))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        let colour = PALETTE[0];
        chart
            // A bar without a figure (NaN) keeps its label and gets no rectangle.
            .draw_series(bars.iter().enumerate().filter(|(_, b)| b.value.is_finite()).map(
                |(i, b)| {
                    let y = i as f64;
                    let corners = [(origin, y - 0.35), (b.value, y + 0.35)];
                    Rectangle::new(corners, colour.mix(0.8).filled())
                },
            ))
            .map_err(e)?
            .label(self.bar_label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        chart
            .draw_series(
                bars.iter()
                    .enumerate()
                    .filter(|(_, b)| b.low.is_finite() && b.high.is_finite())
                    .map(|(i, b)| {
                        PathElement::new(
                            vec![(b.low, i as f64), (b.high, i as f64)],
                            BLACK.stroke_width(2),
                        )
                    }),
            )
            .map_err(e)?
            .label(self.whisker_label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(2)));
        if let Some(x) = self.reference {
            let red = RGBColor(200, 30, 30);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, -0.5), (x, bars.len() as f64 - 0.5)],
                    red.stroke_width(1),
                )))
                .map_err(e)?
                .label("unchanged")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], red));
        }
        // Below the bars, in the margin the caption leaves free at the top.
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .margin(4)
            .background_style(WHITE.mix(0.95))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(e)
    }
}

/// A line of a panel: (nodes, value) pairs; `dashed` for reference lines (ideal scaling).
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// One panel (a model): lines per strategy against nodes on a log2 axis.
pub struct Panel {
    pub title: String,
    pub lines: Vec<Line>,
}

struct Panels<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    panels: &'a [Panel],
}

/// A figure with a panel per entry, up to three panels a row.
pub fn line_panels(
    dir: &Path,
    stem: &str,
    title: &str,
    y_desc: &str,
    panels: &[Panel],
) -> Result<Vec<PathBuf>, AnalysisError> {
    write(dir, stem, &Panels { title, x_desc: "nodes", y_desc, panels })
}

/// The same figure against the loader's worker threads per rank (log2 axis) instead of nodes.
pub fn worker_panels(
    dir: &Path,
    stem: &str,
    title: &str,
    y_desc: &str,
    panels: &[Panel],
) -> Result<Vec<PathBuf>, AnalysisError> {
    write(dir, stem, &Panels { title, x_desc: "loader workers per rank", y_desc, panels })
}

impl Figure for Panels<'_> {
    fn size(&self) -> (u32, u32) {
        let columns = self.panels.len().clamp(1, 3) as u32;
        let rows = self.panels.len().div_ceil(3).max(1) as u32;
        (540 * columns, 60 + 420 * rows)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(e)?;
        let body = root.titled(self.title, ("sans-serif", 24)).map_err(e)?;
        let columns = self.panels.len().clamp(1, 3);
        let rows = self.panels.len().div_ceil(3).max(1);
        let areas = body.split_evenly((rows, columns));
        // Every strategy keeps its colour in every panel.
        let mut names: Vec<String> = self
            .panels
            .iter()
            .flat_map(|p| p.lines.iter().filter(|l| !l.dashed).map(|l| l.name.clone()))
            .collect();
        names.dedup();
        names.sort();
        names.dedup();
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            let all: Vec<(f64, f64)> = panel
                .lines
                .iter()
                .flat_map(|l| l.points.iter().copied())
                .filter(|p| p.0 > 0.0 && p.1.is_finite())
                .collect();
            let (x_max, y_max) =
                all.iter().fold((1.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                // Headroom above the data for the legend.
                .build_cartesian_2d((0.7..x_max * 1.4).log_scale(), 0.0..(y_max * 1.6).max(1e-9))
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc(self.x_desc)
                .y_desc(self.y_desc)
                .x_label_formatter(&|x| format!("{}", x.round()))
                .y_label_formatter(&|y| readable(*y, y_max))
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(e)?;
            for line in &panel.lines {
                let base = line.name.trim_end_matches(" (ideal)").trim_end_matches(" (before)");
                let colour =
                    PALETTE[names.iter().position(|n| n == base).unwrap_or(0) % PALETTE.len()];
                let style = if line.dashed {
                    colour.mix(0.6).stroke_width(1)
                } else {
                    colour.stroke_width(2)
                };
                let series = if line.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(
                            line.points.iter().copied(),
                            6,
                            4,
                            style,
                        ))
                        .map_err(e)?
                } else {
                    chart
                        .draw_series(
                            LineSeries::new(line.points.iter().copied(), style).point_size(4),
                        )
                        .map_err(e)?
                };
                series
                    .label(line.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            }
            legend_box(&mut chart)?;
        }
        Ok(())
    }
}

/// A tick label with as many decimals as the axis' range needs.
fn readable(y: f64, max: f64) -> String {
    match max {
        m if m >= 100.0 => format!("{y:.0}"),
        m if m >= 1.0 => format!("{y:.2}"),
        _ => format!("{y:.3}"),
    }
}

/// One stacked bar: a point's components (seconds) in order.
pub struct Stack {
    pub label: String,
    pub parts: Vec<(String, f64)>,
}

struct Stacks<'a> {
    title: &'a str,
    x_desc: &'a str,
    stacks: &'a [Stack],
}

/// Horizontal stacked bars, a bar per point and a colour per component.
pub fn stacked_bars(
    dir: &Path,
    stem: &str,
    title: &str,
    x_desc: &str,
    stacks: &[Stack],
) -> Result<Vec<PathBuf>, AnalysisError> {
    write(dir, stem, &Stacks { title, x_desc, stacks })
}

impl Figure for Stacks<'_> {
    fn size(&self) -> (u32, u32) {
        (1100, 160 + 34 * self.stacks.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(e)?;
        let stacks: Vec<&Stack> = self.stacks.iter().rev().collect();
        // Room on the right for the legend.
        let max = stacks
            .iter()
            .map(|s| s.parts.iter().map(|p| p.1.max(0.0)).sum::<f64>())
            .fold(0.0, f64::max)
            .max(1e-12)
            * 1.45;
        let label_width = stacks.iter().map(|s| s.label.len()).max().unwrap_or(8) as u32 * 8 + 20;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.0..max, -0.5..(stacks.len() as f64 - 0.5))
            .map_err(e)?;
        let labels: Vec<&str> = stacks.iter().map(|s| s.label.as_str()).collect();
        let label_of = |y: &f64| row_label(&labels, *y);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(self.x_desc)
            .y_label_formatter(&label_of)
            .y_labels(stacks.len().max(1))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(e)?;
        let mut components: Vec<String> = Vec::new();
        for s in &stacks {
            for (name, _) in &s.parts {
                if !components.contains(name) {
                    components.push(name.clone());
                }
            }
        }
        for (c, name) in components.iter().enumerate() {
            let colour = PALETTE[c % PALETTE.len()];
            let rects = stacks.iter().enumerate().filter_map(|(i, s)| {
                let start: f64 =
                    s.parts.iter().take_while(|p| &p.0 != name).map(|p| p.1.max(0.0)).sum();
                let width = s.parts.iter().find(|p| &p.0 == name)?.1.max(0.0);
                let y = i as f64;
                Some(Rectangle::new(
                    [(start, y - 0.35), (start + width, y + 0.35)],
                    colour.filled(),
                ))
            });
            chart.draw_series(rects).map_err(e)?.label(name.clone()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled())
            });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(e)
    }
}

/// A cell of a [`HeatMap`]: how a point changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tone {
    /// A change with a verdict, as after / before (above 1: slower).
    Changed(f64),
    Indistinguishable,
    /// No verdict could be given, or nothing was measured there.
    Unknown,
}

/// One panel (a model): a row per strategy, a column per node count.
pub struct HeatMap {
    pub title: String,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// (row, column) -> the cell's tone and its label.
    pub cells: Vec<(usize, usize, Tone, String)>,
}

struct HeatMaps<'a> {
    title: &'a str,
    maps: &'a [HeatMap],
}

/// A figure with a heat map per entry, stacked.
pub fn heat_maps(
    dir: &Path,
    stem: &str,
    title: &str,
    maps: &[HeatMap],
) -> Result<Vec<PathBuf>, AnalysisError> {
    write(dir, stem, &HeatMaps { title, maps })
}

impl Tone {
    /// Red for slower, blue for faster, deeper with the change (full at 2x); white for no
    /// change, grey for no verdict.
    fn colour(self) -> RGBColor {
        let blend = |to: (f64, f64, f64), t: f64| {
            let t = t.clamp(0.15, 1.0);
            let c = |a: f64| (255.0 + (a - 255.0) * t) as u8;
            RGBColor(c(to.0), c(to.1), c(to.2))
        };
        match self {
            Tone::Changed(r) if r >= 1.0 => blend((200.0, 30.0, 30.0), r.log2()),
            Tone::Changed(r) => blend((40.0, 90.0, 200.0), -r.log2()),
            Tone::Indistinguishable => WHITE,
            Tone::Unknown => RGBColor(200, 200, 200),
        }
    }
}

impl Figure for HeatMaps<'_> {
    fn size(&self) -> (u32, u32) {
        let rows: usize = self.maps.iter().map(|m| m.rows.len() + 3).sum();
        let columns = self.maps.iter().map(|m| m.columns.len()).max().unwrap_or(1) as u32;
        (320 + 110 * columns, 80 + 44 * rows as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(e)?;
        let body = root.titled(self.title, ("sans-serif", 22)).map_err(e)?;
        let weights: Vec<u32> = self.maps.iter().map(|m| m.rows.len() as u32 + 3).collect();
        let total: u32 = weights.iter().sum::<u32>().max(1);
        let height = body.dim_in_pixel().1;
        let mut rest = body;
        for (map, weight) in self.maps.iter().zip(&weights) {
            let (area, below) = rest.split_vertically(height * weight / total);
            rest = below;
            let (rows, columns) = (map.rows.len().max(1) as f64, map.columns.len().max(1) as f64);
            let mut chart = ChartBuilder::on(&area)
                .caption(&map.title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(200)
                .build_cartesian_2d(-0.5..columns - 0.5, -0.5..rows - 0.5)
                .map_err(e)?;
            let column_of = |x: &f64| {
                let i = x.round();
                if (x - i).abs() < 0.01 && i >= 0.0 {
                    map.columns.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            };
            let rows_top_down: Vec<&str> = map.rows.iter().rev().map(String::as_str).collect();
            let row_of = |y: &f64| row_label(&rows_top_down, *y);
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("nodes")
                .x_labels(map.columns.len().max(1))
                .y_labels(map.rows.len().max(1))
                .x_label_formatter(&column_of)
                .y_label_formatter(&row_of)
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(e)?;
            for (row, column, tone, label) in &map.cells {
                let (x, y) = (*column as f64, rows - 1.0 - *row as f64);
                let corners = [(x - 0.48, y - 0.45), (x + 0.48, y + 0.45)];
                chart
                    .draw_series([
                        Rectangle::new(corners, tone.colour().filled()),
                        Rectangle::new(corners, BLACK.mix(0.3).stroke_width(1)),
                    ])
                    .map_err(e)?;
                let text = ("sans-serif", 13).into_font().color(&BLACK).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                );
                chart.draw_series([Text::new(label.clone(), (x, y), text)]).map_err(e)?;
            }
        }
        Ok(())
    }
}
