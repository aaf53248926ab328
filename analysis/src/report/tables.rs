//! The report's tables as data frames, and the CSV writer they go out through. A figure that
//! cannot be computed (a median of no steady step, a rate over no time) is NaN in the
//! summaries and an empty cell (null) in every CSV: no figure is not a number.

use super::*;

fn opt(values: impl Iterator<Item = Option<f64>>) -> Vec<Option<f64>> {
    values.collect()
}

pub(super) fn summary_frame(s: &[PointSummary]) -> Result<DataFrame, AnalysisError> {
    let text = |f: &dyn Fn(&PointSummary) -> String| s.iter().map(f).collect::<Vec<_>>();
    let num = |f: &dyn Fn(&PointSummary) -> f64| s.iter().map(f).collect::<Vec<_>>();
    let count = |f: &dyn Fn(&PointSummary) -> u32| s.iter().map(f).collect::<Vec<_>>();
    Ok(df!(
        "point" => text(&|p| p.meta.point.clone()),
        "model" => text(&|p| p.meta.model.clone()),
        "strategy" => text(&|p| p.meta.strategy.to_string()),
        "shard_group" => count(&|p| p.meta.shard_group),
        "nodes" => count(&|p| p.meta.nodes),
        "ranks_per_node" => count(&|p| p.meta.ranks_per_node),
        "world_size" => count(&|p| p.meta.world_size),
        "micro_batch" => count(&|p| p.meta.micro_batch),
        "global_batch" => num(&|p| f64::from(p.meta.global_batch)),
        "outcome" => text(&|p| p.meta.outcome.to_string()),
        "steady_from" => s.iter().map(|p| (!p.step_s.is_empty()).then_some(p.steady_from)).collect::<Vec<_>>(),
        "steady_steps" => count(&|p| p.step_s.len() as u32),
        "step_s_median" => num(&|p| p.step_s_median.estimate),
        "step_s_ci95_low" => num(&|p| p.step_s_median.low),
        "step_s_ci95_high" => num(&|p| p.step_s_median.high),
        "step_s_p10" => num(&|p| p.step_s_p10),
        "step_s_p90" => num(&|p| p.step_s_p90),
        "images_per_s" => num(&|p| p.images_per_s.estimate),
        "images_per_s_ci95_low" => num(&|p| p.images_per_s.low),
        "images_per_s_ci95_high" => num(&|p| p.images_per_s.high),
        "images_per_s_per_device" => num(&|p| p.images_per_s_per_device()),
        "model_flop_per_s" => num(&|p| p.model_flop_per_s),
        "mfu" => opt(s.iter().map(|p| p.mfu)),
        "peak_flop_per_s_per_device" => opt(s.iter().map(|p| p.meta.peak_flop_per_s)),
        "peak_source" => text(&|p| p.meta.peak_source.clone()),
        "mfu_formula" => text(&|_| MFU_FORMULA.to_string()),
        "weak_scaling_efficiency" => opt(s.iter().map(|p| p.weak_scaling_efficiency)),
        "strong_scaling_efficiency" => opt(s.iter().map(|p| p.strong_scaling_efficiency)),
        "peak_rss_bytes" => num(&|p| p.peak_rss_bytes),
        "accounted_peak_bytes" => num(&|p| p.accounted_peak_bytes),
        "device_allocated_peak_bytes" =>
            opt(s.iter().map(|p| p.device_memory.map(|d| d.allocated_peak_bytes))),
        "device_reserved_peak_bytes" =>
            opt(s.iter().map(|p| p.device_memory.map(|d| d.reserved_peak_bytes))),
        "device_alloc_retries" => opt(s.iter().map(|p| p.device_memory.map(|d| d.alloc_retries))),
        "final_loss" => num(&|p| p.final_loss),
        "loader_workers" => count(&|p| p.meta.loader_workers),
        "data" => text(&|p| p.meta.data.clone()),
        "loader_images_per_worker_s" => opt(s.iter().map(|p| p.loader_images_per_worker_s)),
        "loader_images_per_s" => opt(s.iter().map(|p| p.loader_images_per_s)),
        "data_share" => opt(s.iter().map(|p| p.data_share)),
        "note" => text(&|p| p.no_figures_reason().unwrap_or_default()),
    )?)
}

pub(super) fn breakdown_frame(s: &[PointSummary]) -> Result<DataFrame, AnalysisError> {
    let (mut point, mut view, mut component, mut seconds) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in s {
        for (name, parts) in [
            ("critical_path", &p.breakdown.critical_path),
            ("max_over_ranks", &p.breakdown.max_over_ranks),
        ] {
            for (c, v) in parts {
                point.push(p.meta.point.clone());
                view.push(name);
                component.push(c.clone());
                seconds.push(*v);
            }
        }
    }
    Ok(
        df!("point" => point, "view" => view, "component" => component, "seconds_per_step" => seconds)?,
    )
}

pub(super) fn straggler_frame(s: &[NodeScore]) -> Result<DataFrame, AnalysisError> {
    Ok(df!(
        "hostname" => s.iter().map(|n| n.hostname.clone()).collect::<Vec<_>>(),
        "score" => s.iter().map(|n| n.score).collect::<Vec<_>>(),
        "worst_rank_score" => s.iter().map(|n| n.worst_score).collect::<Vec<_>>(),
        "rank_points" => s.iter().map(|n| n.rank_points as u32).collect::<Vec<_>>(),
    )?)
}

/// Writes `table` as CSV, every non-finite float (NaN: no figure; an infinite rate) as an
/// empty cell, which pandas, Polars and DuckDB read as null.
pub(crate) fn write_csv(path: &Path, table: &mut DataFrame) -> Result<PathBuf, AnalysisError> {
    let mut table = without_non_finite(table)?;
    write_atomically(path, |file| Ok(CsvWriter::new(file).finish(&mut table)?))?;
    Ok(path.to_path_buf())
}

/// `table` with every NaN or infinite float replaced by null.
pub(crate) fn without_non_finite(table: &DataFrame) -> Result<DataFrame, AnalysisError> {
    let columns = table
        .columns()
        .iter()
        .map(|c| match c.dtype() {
            DataType::Float64 => {
                let finite: Float64Chunked =
                    c.f64()?.iter().map(|v| v.filter(|x| x.is_finite())).collect();
                Ok(finite.with_name(c.name().clone()).into_column())
            }
            _ => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>, AnalysisError>>()?;
    Ok(DataFrame::new(table.height(), columns)?)
}
