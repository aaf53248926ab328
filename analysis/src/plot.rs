//! Plots, drawn once per backend so PNG and SVG show the same figure.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::AnalysisError;

/// One bar: a point's throughput with its spread over steady steps.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// Horizontal bars of images/s per point (bar = median step, whisker = p10..p90 steps),
/// written as `<stem>.png` and `<stem>.svg`.
pub fn throughput_bars(dir: &Path, stem: &str, title: &str, bars: &[Bar]) -> Result<Vec<PathBuf>, AnalysisError> {
    let height = 120 + 36 * bars.len() as u32;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |e: String| AnalysisError::Plot { path: path.clone(), message: e }
    };
    draw(BitMapBackend::new(&png, (1000, height)).into_drawing_area(), title, bars).map_err(err(&png))?;
    draw(SVGBackend::new(&svg, (1000, height)).into_drawing_area(), title, bars).map_err(err(&svg))?;
    Ok(vec![png, svg])
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, title: &str, bars: &[Bar]) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let max = bars.iter().map(|b| b.high.max(b.value)).filter(|v| v.is_finite()).fold(0.0, f64::max).max(1e-9) * 1.1;
    let label_width = bars.iter().map(|b| b.label.len()).max().unwrap_or(8) as u32 * 8 + 20;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(label_width)
        .build_cartesian_2d(0.0..max, -0.5..(bars.len() as f64 - 0.5))
        .map_err(e)?;
    let label_of = |y: &f64| {
        let i = y.round();
        if (y - i).abs() < 1e-6 && i >= 0.0 { bars.get(i as usize).map(|b| b.label.clone()).unwrap_or_default() } else { String::new() }
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .x_desc("images/s (bar: median step; whisker: 10th-90th percentile of steady steps)")
        .y_desc("point")
        .y_label_formatter(&label_of)
        .y_labels(bars.len().max(1))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    let colour = RGBColor(46, 110, 180);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let y = i as f64;
            Rectangle::new([(0.0, y - 0.35), (b.value, y + 0.35)], colour.mix(0.8).filled())
        }))
        .map_err(e)?
        .label("median throughput")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
    chart
        .draw_series(bars.iter().enumerate().filter(|(_, b)| b.low.is_finite() && b.high.is_finite()).map(|(i, b)| {
            PathElement::new(vec![(b.low, i as f64), (b.high, i as f64)], BLACK.stroke_width(2))
        }))
        .map_err(e)?
        .label("10th-90th percentile")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}
