//! The input-pipeline study: images/s of training and of the loader alone against the loader's
//! worker threads, one panel per model and data source (the shape of the paper's input
//! throughput figure).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shardsweep_records::Outcome;

use crate::plot::{worker_panels, Line, Panel};
use crate::series::{Axis, AxisValue, AXES};
use crate::summary::PointSummary;
use crate::AnalysisError;

/// Whether the sweep varies `loader_workers`: only then is there a study to draw.
pub(crate) fn studied(summaries: &[PointSummary]) -> bool {
    let mut workers = summaries.iter().map(|p| p.meta.loader_workers);
    workers.next().is_some_and(|first| workers.any(|w| w != first))
}

/// Writes `input_pipeline.png` and `.svg`: per panel, for every setting of the other axes, a
/// line of training images/s (the median steady step's) and one of the loader alone with every
/// worker busy ([`PointSummary::loader_images_per_s`]).
pub(crate) fn input_pipeline(
    out: &Path,
    sweep: &str,
    summaries: &[PointSummary],
) -> Result<Vec<PathBuf>, AnalysisError> {
    let mut panels: BTreeMap<(String, String), Vec<&PointSummary>> = BTreeMap::new();
    for p in summaries.iter().filter(|p| p.meta.outcome == Outcome::Ok) {
        panels.entry((p.meta.model.clone(), p.meta.data.clone())).or_default().push(p);
    }
    let others = |a: &Axis| !matches!(a, Axis::Model | Axis::Data | Axis::LoaderWorkers);
    let panels: Vec<Panel> = panels
        .into_iter()
        .map(|((model, data), points)| {
            let mut groups: BTreeMap<String, Vec<&PointSummary>> = BTreeMap::new();
            for p in &points {
                let key: Vec<String> =
                    AXES.iter().filter(|a| others(a)).map(|a| a.value(&p.meta)).collect();
                groups.entry(key.join("|")).or_default().push(p);
            }
            let mut lines = Vec::new();
            for mut group in groups.into_values() {
                group.sort_by_key(|p| p.meta.loader_workers);
                // Name a line by the axes that tell it from the panel's other lines.
                let first = &group[0].meta;
                let setting: Vec<String> = AXES
                    .iter()
                    .filter(|a| others(a))
                    .filter(|a| points.iter().any(|q| a.value(&q.meta) != a.value(first)))
                    .map(|a| a.label(first))
                    .collect();
                let name = |what: &str| {
                    if setting.is_empty() {
                        what.to_string()
                    } else {
                        format!("{}, {what}", setting.join(", "))
                    }
                };
                let x = |p: &PointSummary| f64::from(p.meta.loader_workers);
                lines.push(Line {
                    name: name("training"),
                    points: group.iter().map(|p| (x(p), p.images_per_s.estimate)).collect(),
                    dashed: false,
                });
                lines.push(Line {
                    name: name("loader alone"),
                    points: group
                        .iter()
                        .filter_map(|p| p.loader_images_per_s.map(|v| (x(p), v)))
                        .collect(),
                    dashed: false,
                });
            }
            Panel { title: format!("{model}, data {data}"), lines }
        })
        .collect();
    let title = format!("{sweep}: input pipeline");
    worker_panels(out, "input_pipeline", &title, "images/s", &panels)
}
