//! Per-point statistics from the tidy store. A step lasts as long as its slowest rank, so each
//! step is first reduced over ranks; the steady steps (see [`steady`](crate::steady)) are then
//! summarised with a median, percentiles and a bootstrap interval.

use std::collections::BTreeMap;
use std::path::PathBuf;

use polars::prelude::*;
use rayon::prelude::*;

use crate::breakdown::{breakdown, Breakdown};
use crate::load::PointRecords;
use crate::point_steps::{self, PointSteps};
use crate::stats::{bootstrap, median, quantile, Interval};
use crate::steady::steady_start;
use crate::tidy::Store;
use crate::{AnalysisError, EmptyPart};

/// How MFU is computed; stored beside every MFU figure.
pub const MFU_FORMULA: &str = "mfu-v1: model FLOP per step (3 x forward: patch embedding, encoder on visible tokens, decoder on all tokens, attention included; recomputation excluded) / median steady step time / (ranks x peak FLOP/s per rank)";

/// The categories of the harness's memory account (`/memory/<category>_bytes` in the records),
/// as the record format names them.
pub const MEMORY_CATEGORIES: [&str; 6] = shardsweep_records::MemoryRecord::CATEGORIES;

/// Everything the analysis says about one point.
#[derive(Debug, Clone)]
pub struct PointSummary {
    pub meta: PointRecords,
    /// First step counted as steady (`steps_planned` when there is none).
    pub steady_from: u32,
    /// Steps the slowest rank's records hold, warm-up included.
    pub steps_recorded: u32,
    /// The slowest rank's step time per steady step, in step order.
    pub step_s: Vec<f64>,
    pub step_s_median: Interval,
    pub step_s_p10: f64,
    pub step_s_p90: f64,
    pub images_per_s: Interval,
    pub model_flop_per_s: f64,
    pub mfu: Option<f64>,
    pub breakdown: Breakdown,
    /// Per phase (and collective kind), the slowest rank's time in each steady step.
    pub phase_s: BTreeMap<String, Vec<f64>>,
    /// Largest peak RSS of any rank, and the largest sum of the harness's memory account.
    pub peak_rss_bytes: f64,
    pub accounted_peak_bytes: f64,
    /// The largest figure of each category of the harness's memory account (bytes), in
    /// [`MEMORY_CATEGORIES`] order, for the categories the records have.
    pub memory_account_bytes: Vec<(String, f64)>,
    /// GPU runs: the caching allocator's largest per-step peaks over ranks and steps (allocated,
    /// reserved; bytes) and its most allocation retries in one step. `None` on CPU.
    pub device_memory: Option<DeviceMemory>,
    pub final_loss: f64,
    /// The input pipeline's own rate: images per second of its workers' time, over the steady
    /// steps, = global batch x steady steps / the sum over ranks and steady steps of
    /// `read_s + decode_s + augment_s` (each rank's worker time for its share of the global
    /// batch, from `/loader/` in the records). `None` where the records have no loader figures.
    pub loader_images_per_worker_s: Option<f64>,
    /// What the pipeline delivers with every worker busy: the rate above x ranks x
    /// `loader_workers` (images/s). Worker time is measured as the workers ran, contention
    /// included, so this is the loader alone at the point's worker count.
    pub loader_images_per_s: Option<f64>,
    /// The share of the step spent waiting for data: the slowest rank's `data_s` over its
    /// `step_s`, summed over the steady steps (1 = all waiting). `None` without a data phase.
    pub data_share: Option<f64>,
    pub weak_scaling_efficiency: Option<f64>,
    pub strong_scaling_efficiency: Option<f64>,
}

/// The caching allocator's figures of one point (see [`PointSummary::device_memory`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceMemory {
    pub allocated_peak_bytes: f64,
    pub reserved_peak_bytes: f64,
    pub alloc_retries: f64,
}

impl PointSummary {
    /// Why the point has no step-time figures (step time, throughput, FLOP/s, MFU, breakdown),
    /// or `None` when it has them: it needs at least one steady-state step.
    pub fn no_figures_reason(&self) -> Option<String> {
        self.step_s.is_empty().then(|| {
            format!(
                "no steady-state step ({} of {} steps recorded, {} warm-up)",
                self.steps_recorded, self.meta.steps_planned, self.meta.warmup_steps
            )
        })
    }

    /// The figure memory plots use: the caching allocator's peak allocated on GPUs (what
    /// PyTorch reports), else peak RSS.
    pub fn peak_memory_bytes(&self) -> f64 {
        self.device_memory.map_or(self.peak_rss_bytes, |d| d.allocated_peak_bytes)
    }

    pub fn images_per_s_per_device(&self) -> f64 {
        self.images_per_s.estimate / f64::from(self.meta.world_size)
    }
}

/// Every point's summary, and every rank's straggler score (point: index in `points`, rank,
/// score). Scaling efficiencies, which compare points, are left empty here and filled by
/// [`add_efficiencies`](crate::scaling::add_efficiencies).
pub fn summarize(
    points: &[PointRecords],
    store: &Store,
) -> Result<(Vec<PointSummary>, DataFrame), AnalysisError> {
    let files: Vec<Option<(PathBuf, u64)>> = points.iter().map(|p| store.file(&p.point)).collect();
    if files.iter().all(Option::is_none) {
        return Err(AnalysisError::EmptyStore { dir: store.dir.clone(), what: EmptyPart::Points });
    }
    let summarize_one = |(meta, file): (&PointRecords, &Option<(PathBuf, u64)>)| {
        let steps = match file {
            Some((file, _)) => point_steps::read(file, meta.warmup_steps)?,
            // A point without a file in the store has no figures.
            None => PointSteps { final_loss: f64::NAN, ..PointSteps::default() },
        };
        Ok((point_summary(meta, &steps), steps.rank_scores))
    };
    let mut out: Vec<(PointSummary, Vec<(u32, f64)>)> = Vec::with_capacity(points.len());
    let sizes: Vec<u64> = files.iter().map(|f| f.as_ref().map_or(0, |f| f.1)).collect();
    for group in in_flight_groups(&sizes) {
        let part: Vec<_> = points[group.clone()]
            .par_iter()
            .zip(&files[group])
            .map(summarize_one)
            .collect::<Result<_, AnalysisError>>()?;
        out.extend(part);
    }
    let (mut point, mut rank, mut score) = (Vec::new(), Vec::new(), Vec::new());
    for (index, (_, scores)) in out.iter().enumerate() {
        for &(r, s) in scores {
            point.push(index as u32);
            rank.push(r);
            score.push(s);
        }
    }
    let rank_scores = df!("point" => point, "rank" => rank, "score" => score)?;
    Ok((out.into_iter().map(|(summary, _)| summary).collect(), rank_scores))
}

/// Store bytes read at once: points are reduced in parallel, each whole in memory (about 15
/// bytes decoded per byte of its file), so a group of points at most this large is read at
/// a time, whatever the number of cores. 64 MiB is about 1.2e7 rows, 1 GiB decoded.
const IN_FLIGHT_FILE_BYTES: u64 = 64 << 20;

/// Consecutive ranges of files, whose sizes are `sizes` (bytes), of at most
/// [`IN_FLIGHT_FILE_BYTES`] together (a larger file alone).
fn in_flight_groups(sizes: &[u64]) -> Vec<std::ops::Range<usize>> {
    let (mut groups, mut start, mut bytes) = (Vec::new(), 0, 0);
    for (i, &len) in sizes.iter().enumerate() {
        if i > start && bytes + len > IN_FLIGHT_FILE_BYTES {
            groups.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < sizes.len() {
        groups.push(start..sizes.len());
    }
    groups
}

/// One point's summary from its reduced rows.
fn point_summary(meta: &PointRecords, point: &PointSteps) -> PointSummary {
    let phases = &point.critical;
    let steps: Vec<(u32, f64)> =
        phases.get("step").map(|s| s.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default();
    let from =
        steady_start(&steps.iter().map(|s| s.1).collect::<Vec<_>>(), meta.warmup_steps as usize);
    let steady: Vec<u32> = steps[from.min(steps.len())..].iter().map(|s| s.0).collect();
    let series = |table: &BTreeMap<String, BTreeMap<u32, f64>>, phase: &str| -> Vec<f64> {
        table
            .get(phase)
            .map(|s| steady.iter().map(|k| s.get(k).copied().unwrap_or(0.0)).collect())
            .unwrap_or_default()
    };
    let step_s = series(phases, "step");
    let step_median = bootstrap(&step_s, median);
    let batch = f64::from(meta.global_batch);
    let images = Interval {
        estimate: batch / step_median.estimate,
        low: batch / step_median.high,
        high: batch / step_median.low,
    };
    let model_flop_per_s = meta.train_flop_per_step / step_median.estimate;
    let phase_names: Vec<&String> = phases.keys().collect();
    let critical_series: BTreeMap<String, Vec<f64>> =
        phase_names.iter().map(|p| (p.to_string(), series(phases, p))).collect();
    let max_table = &point.max_over_ranks;
    let max_series: BTreeMap<String, Vec<f64>> =
        max_table.keys().map(|p| (p.clone(), series(max_table, p))).collect();
    let mem = |key: &str| point.memory.get(key).copied().unwrap_or(f64::NAN);
    let memory_account_bytes: Vec<(String, f64)> = MEMORY_CATEGORIES
        .iter()
        .map(|c| (c.to_string(), mem(&format!("memory.{c}"))))
        .filter(|(_, v)| v.is_finite())
        .collect();
    let accounted = memory_account_bytes.iter().map(|(_, v)| v).sum();
    let device_memory = mem("device.allocated_peak").is_finite().then(|| DeviceMemory {
        allocated_peak_bytes: mem("device.allocated_peak"),
        reserved_peak_bytes: mem("device.reserved_peak"),
        alloc_retries: mem("device.alloc_retries"),
    });
    let work_s: Vec<f64> =
        steady.iter().filter_map(|k| point.loader_work.get(k).copied()).collect();
    let loader_images_per_worker_s = (work_s.iter().sum::<f64>() > 0.0)
        .then(|| batch * work_s.len() as f64 / work_s.iter().sum::<f64>());
    let workers = f64::from(meta.world_size * meta.loader_workers);
    let total = |phase: &str| critical_series.get(phase).map(|v| v.iter().sum::<f64>());
    let data_share = match (total("data"), total("step")) {
        (Some(data), Some(step)) if step > 0.0 => Some(data / step),
        _ => None,
    };
    PointSummary {
        meta: meta.clone(),
        steady_from: steady.first().copied().unwrap_or(meta.steps_planned),
        steps_recorded: steps.len() as u32,
        step_s_p10: quantile(&step_s, 0.1),
        step_s_p90: quantile(&step_s, 0.9),
        images_per_s: images,
        model_flop_per_s,
        // No steady step, no MFU (rather than NaN).
        mfu: meta
            .peak_flop_per_s
            .map(|peak| model_flop_per_s / (f64::from(meta.world_size) * peak))
            .filter(|m| m.is_finite()),
        breakdown: breakdown(&critical_series, &max_series),
        phase_s: critical_series,
        step_s_median: step_median,
        step_s,
        peak_rss_bytes: mem("peak_rss"),
        accounted_peak_bytes: accounted,
        memory_account_bytes,
        device_memory,
        final_loss: point.final_loss,
        loader_images_per_worker_s,
        loader_images_per_s: loader_images_per_worker_s.map(|r| r * workers),
        data_share,
        weak_scaling_efficiency: None,
        strong_scaling_efficiency: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_read_in_groups_within_the_budget_and_a_larger_file_alone() {
        let mib = 1 << 20;
        let sizes = [40 * mib, 20 * mib, 10 * mib, 100 * mib, 0, 64 * mib];
        // The 100 MiB file is alone; the empty file after it fits with the next.
        assert_eq!(in_flight_groups(&sizes), [0..2, 2..3, 3..4, 4..6]);
        assert_eq!(in_flight_groups(&[]), Vec::<std::ops::Range<usize>>::new());
    }
}
