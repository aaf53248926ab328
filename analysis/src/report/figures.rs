//! The report's figures: throughput, scaling, memory, breakdown and input-pipeline plots.

use super::*;

/// A bar's label: the point, its outcome unless ok, and "n/a" where it has no figure (its bar
/// is then left out rather than drawn at 0).
fn label(p: &PointSummary) -> String {
    let mut notes = Vec::new();
    if p.meta.outcome != Outcome::Ok {
        notes.push(p.meta.outcome.to_string());
    }
    if p.no_figures_reason().is_some() {
        notes.push("n/a: no steady-state step".to_string());
    }
    if notes.is_empty() {
        p.meta.point.clone()
    } else {
        format!("{} ({})", p.meta.point, notes.join(", "))
    }
}

pub(super) fn plots(
    out: &Path,
    sweep: &str,
    summaries: &[PointSummary],
) -> Result<Vec<PathBuf>, AnalysisError> {
    let mut files = Vec::new();
    let bars: Vec<Bar> = summaries
        .iter()
        .map(|p| {
            let batch = f64::from(p.meta.global_batch);
            Bar {
                label: label(p),
                value: p.images_per_s.estimate,
                low: batch / p.step_s_p90,
                high: batch / p.step_s_p10,
            }
        })
        .collect();
    files.extend(throughput_bars(
        out,
        "throughput",
        &format!("{sweep}: training throughput per point"),
        &bars,
    )?);

    let ok: Vec<&PointSummary> =
        summaries.iter().filter(|p| p.meta.outcome == Outcome::Ok).collect();
    let panels = |value: &dyn Fn(&PointSummary) -> Option<f64>, ideal: bool| -> Vec<Panel> {
        let mut models: BTreeMap<&str, Vec<&PointSummary>> = BTreeMap::new();
        for p in &ok {
            models.entry(p.meta.model.as_str()).or_default().push(p);
        }
        let models = models.into_iter().map(|(model, points)| {
            let metas: Vec<&PointRecords> = points.iter().map(|p| &p.meta).collect();
            let mut series: BTreeMap<String, (String, Vec<&PointSummary>)> = BTreeMap::new();
            for p in points {
                let line = series
                    .entry(series_key(&p.meta, Scaling::Weak))
                    .or_insert_with(|| (line_label(&p.meta, &metas), Vec::new()));
                line.1.push(p);
            }
            (model, series.into_values().collect::<Vec<_>>())
        });
        models
            .map(|(model, series)| {
                let mut lines = Vec::new();
                for (name, mut points) in series {
                    points.sort_by_key(|p| p.meta.nodes);
                    let xy: Vec<(f64, f64)> = points
                        .iter()
                        .filter_map(|p| value(p).map(|v| (f64::from(p.meta.nodes), v)))
                        .collect();
                    if ideal && xy.len() > 1 {
                        let (n0, v0) = xy[0];
                        lines.push(Line {
                            name: format!("{name} (ideal)"),
                            points: xy.iter().map(|(n, _)| (*n, v0 * n / n0)).collect(),
                            dashed: true,
                        });
                    }
                    lines.push(Line { name, points: xy, dashed: false });
                }
                Panel { title: model.to_string(), lines }
            })
            .collect()
    };
    if !ok.is_empty() {
        let title =
            format!("{sweep}: throughput vs nodes (dashed: linear scaling from the fewest nodes)");
        files.extend(line_panels(
            out,
            "scaling_throughput",
            &title,
            "images/s",
            &panels(&|p| Some(p.images_per_s.estimate), true),
        )?);
        let title = format!("{sweep}: weak-scaling efficiency vs the fewest nodes");
        files.extend(line_panels(
            out,
            "scaling_efficiency",
            &title,
            "efficiency (1 = ideal)",
            &panels(&|p| p.weak_scaling_efficiency, false),
        )?);
        let title = format!("{sweep}: peak memory per rank vs nodes");
        files.extend(line_panels(
            out,
            "memory",
            &title,
            "GiB per rank (largest peak: allocator's allocated on GPUs, RSS on CPU)",
            &panels(&|p| Some(p.peak_memory_bytes() / (1u64 << 30) as f64), false),
        )?);
    }
    // Peak RSS includes libtorch's own baseline, the same for every strategy on CPU and far
    // larger than a small model; the account by category shows what the strategies change,
    // on its own scale, beside the RSS plot.
    let mib = (1u64 << 20) as f64;
    let memory: Vec<Stack> = summaries
        .iter()
        .filter(|p| !p.memory_account_bytes.is_empty())
        .map(|p| Stack {
            label: label(p),
            parts: p.memory_account_bytes.iter().map(|(c, v)| (c.clone(), v / mib)).collect(),
        })
        .collect();
    let title = format!("{sweep}: the harness's memory account per rank, by category (largest)");
    files.extend(stacked_bars(out, "memory_account", &title, "MiB per rank", &memory)?);
    let stacks: Vec<Stack> = summaries
        .iter()
        .filter(|p| !p.step_s.is_empty())
        .map(|p| Stack { label: label(p), parts: p.breakdown.critical_path.clone() })
        .collect();
    let title = format!("{sweep}: where a step goes (slowest rank, mean over steady steps)");
    files.extend(stacked_bars(out, "breakdown", &title, "seconds per step", &stacks)?);
    Ok(files)
}
