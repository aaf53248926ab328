//! Per-point statistics from the tidy store. A step lasts as long as its slowest rank, so each
//! step is first reduced over ranks; the steady steps (see [`steady`](crate::steady)) are then
//! summarised with a median, percentiles and a bootstrap interval.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;
use rayon::prelude::*;

use crate::breakdown::{breakdown, Breakdown};
use crate::load::PointRecords;
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

/// Per step, the slowest rank's time in every phase (as the critical path takes it: the
/// phases of the rank whose step was longest) and the max over ranks of every phase.
pub(crate) struct StepTables {
    /// point, step, phase, value: the phases of the slowest rank.
    pub critical: DataFrame,
    /// point, step, phase, value: max over ranks.
    pub max_over_ranks: DataFrame,
    /// point, metric, phase, value: largest memory figures.
    pub memory: DataFrame,
    /// point, value: mean over ranks of the last step's loss.
    pub final_loss: DataFrame,
    /// point, rank, score: see [`stragglers`](crate::stragglers).
    pub rank_scores: DataFrame,
    /// point, step, phase (`loader`), value: the loader's worker time summed over ranks and
    /// figures (read, decode, augment).
    pub loader_work: DataFrame,
}

impl StepTables {
    fn append(&mut self, other: &StepTables) -> Result<(), AnalysisError> {
        self.critical.vstack_mut(&other.critical)?;
        self.max_over_ranks.vstack_mut(&other.max_over_ranks)?;
        self.memory.vstack_mut(&other.memory)?;
        self.final_loss.vstack_mut(&other.final_loss)?;
        self.rank_scores.vstack_mut(&other.rank_scores)?;
        self.loader_work.vstack_mut(&other.loader_work)?;
        Ok(())
    }
}

/// Keys are packed into one integer: Polars hashes one integer column about twice as fast as
/// several (which it row-encodes first). Room for 2^20 points per analysis, 2^20 steps and
/// 2^24 ranks; [`summarize`] checks.
const POINT_BITS: u32 = 20;
const STEP_BITS: u32 = 20;
const RANK_BITS: u32 = 24;

fn pack(high: Expr, low: Expr, low_bits: u32) -> Expr {
    high.cast(DataType::UInt64) * lit(1u64 << low_bits) + low.cast(DataType::UInt64)
}

/// The two halves of a packed key, named, followed by `rest`.
fn unpack(
    key: &str,
    low_bits: u32,
    [high, low]: [&str; 2],
    rest: impl IntoIterator<Item = Expr>,
) -> Vec<Expr> {
    let base = lit(1u64 << low_bits);
    [
        (col(key) / base.clone()).cast(DataType::UInt32).alias(high),
        (col(key) % base).cast(DataType::UInt32).alias(low),
    ]
    .into_iter()
    .chain(rest)
    .collect()
}

/// The heavy part: a batch of points' rows reduced to their step tables in one streaming
/// query. Only the columns these need are read (text is the costly part of decoding). `store`
/// is the folder the rows come from (for errors).
pub(crate) fn step_tables(rows: LazyFrame, store: &Path) -> Result<StepTables, AnalysisError> {
    let rows = rows.select([
        col("point"),
        col("warmup_steps"),
        col("rank"),
        col("step"),
        col("phase"),
        col("metric"),
        col("value"),
    ]);
    let timed = rows
        .clone()
        .filter(col("metric").eq(lit("time")).or(col("metric").eq(lit("wait"))))
        .select([
            pack(col("point"), col("step"), STEP_BITS).alias("point_step"),
            col("rank"),
            col("phase"),
            col("value"),
            col("step").gt_eq(col("warmup_steps")).alias("steady"),
        ])
        .cache();
    let rank_scores = crate::stragglers::rank_scores(timed.clone(), STEP_BITS, RANK_BITS)?
        .select(unpack("point_rank", RANK_BITS, ["point", "rank"], [col("score")]));
    let point_step_rank =
        || pack(col("point_step"), col("rank"), RANK_BITS).alias("point_step_rank");
    let slowest = timed
        .clone()
        .filter(col("phase").eq(lit("step")))
        .group_by([col("point_step")])
        .agg([col("rank").sort_by([col("value")], SortMultipleOptions::default()).last()])
        .select([point_step_rank()]);
    let by_step =
        || unpack("point_step", STEP_BITS, ["point", "step"], [col("phase"), col("value")]);
    let critical = timed
        .clone()
        .with_column(point_step_rank())
        .join(
            slowest,
            [col("point_step_rank")],
            [col("point_step_rank")],
            JoinArgs::new(JoinType::Inner),
        )
        .select(by_step());
    let max_over_ranks = timed
        .group_by([col("point_step"), col("phase")])
        .agg([col("value").max()])
        .select(by_step());
    let memory = rows
        .clone()
        .filter(
            col("metric")
                .eq(lit("bytes"))
                .or(col("metric").eq(lit("peak_rss")))
                .or(col("phase").eq(lit("device"))),
        )
        .group_by([col("point"), col("metric"), col("phase")])
        .agg([col("value").max()]);
    let loader_work = rows
        .clone()
        .filter(col("metric").eq(lit("work")))
        .group_by([col("point"), col("step")])
        .agg([col("value").sum()])
        .select([col("point"), col("step"), lit("loader").alias("phase"), col("value")]);
    let final_loss = rows
        .filter(col("metric").eq(lit("loss")))
        .filter(col("step").eq(col("step").max().over([col("point")])?))
        .group_by([col("point")])
        .agg([col("value").mean()]);
    // One query: the times are scanned and decoded once (the cache above) for all the tables
    // that need them; without the cache each table scans them again (20 s instead of 15 s for
    // 1e8 rows). Polars' own merging of common scans is off so that the memory and loss tables
    // keep their filters in the Parquet reader, which skips row groups without such rows by
    // their statistics (merged, they filter every row of the batch: 2 s more for 1e8 rows).
    let plans = [critical, max_over_ranks, memory, final_loss, rank_scores, loader_work]
        .map(|f| f.logical_plan)
        .to_vec();
    let frames = LazyFrame::collect_all_with_engine(
        plans,
        Engine::Streaming,
        OptFlags::default() & !OptFlags::COMM_SUBPLAN_ELIM,
    )?;
    let [critical, max_over_ranks, memory, final_loss, rank_scores, loader_work]: [DataFrame; 6] =
        frames.try_into().map_err(|_| AnalysisError::EmptyStore {
            dir: store.to_path_buf(),
            what: EmptyPart::StepTables,
        })?;
    Ok(StepTables { critical, max_over_ranks, memory, final_loss, rank_scores, loader_work })
}

/// point (index) -> phase -> step -> value.
type Series3 = BTreeMap<u32, BTreeMap<String, BTreeMap<u32, f64>>>;

fn by_point(frame: &DataFrame) -> Result<Series3, AnalysisError> {
    let (point, step, phase, value) = (
        frame.column("point")?.u32()?,
        frame.column("step")?.u32()?,
        frame.column("phase")?.str()?,
        frame.column("value")?.f64()?,
    );
    let mut out: Series3 = BTreeMap::new();
    for (((p, s), ph), v) in point.iter().zip(step.iter()).zip(phase.iter()).zip(value.iter()) {
        if let (Some(p), Some(s), Some(ph), Some(v)) = (p, s, ph, v) {
            let phases = out.entry(p).or_default();
            // Allocate a phase's name once per point, not once per row.
            if !phases.contains_key(ph) {
                phases.insert(ph.to_string(), BTreeMap::new());
            }
            phases.get_mut(ph).expect("inserted above").insert(s, v);
        }
    }
    Ok(out)
}

/// Every point's summary, and every rank's straggler score (point: index in `points`, rank,
/// score). Scaling efficiencies, which compare points, are left empty here and filled by
/// [`add_efficiencies`](crate::scaling::add_efficiencies).
pub fn summarize(
    points: &[PointRecords],
    store: &Store,
) -> Result<(Vec<PointSummary>, DataFrame), AnalysisError> {
    let fits = |n: usize, bits: u32| n <= 1 << bits;
    if !fits(points.len(), POINT_BITS)
        || points.iter().any(|p| {
            !fits(p.steps_planned as usize, STEP_BITS) || !fits(p.world_size as usize, RANK_BITS)
        })
    {
        return Err(AnalysisError::TooLarge {
            points: 1 << POINT_BITS,
            steps: 1 << STEP_BITS,
            ranks: 1 << RANK_BITS,
        });
    }
    let mut tables: Option<StepTables> = None;
    for batch in store.batches(points) {
        let part = step_tables(batch?, &store.dir)?;
        match &mut tables {
            None => tables = Some(part),
            Some(all) => all.append(&part)?,
        }
    }
    let tables = tables.ok_or_else(|| AnalysisError::EmptyStore {
        dir: store.dir.clone(),
        what: EmptyPart::Points,
    })?;
    let (critical, maxes) =
        rayon::join(|| by_point(&tables.critical), || by_point(&tables.max_over_ranks));
    let (critical, maxes) = (critical?, maxes?);
    let loader = by_point(&tables.loader_work)?;
    let mut memory: BTreeMap<(u32, String), f64> = BTreeMap::new();
    {
        let m = &tables.memory;
        let (point, metric, phase, value) = (
            m.column("point")?.u32()?,
            m.column("metric")?.str()?,
            m.column("phase")?.str()?,
            m.column("value")?.f64()?,
        );
        for i in 0..m.height() {
            let key = match (phase.get(i), metric.get(i)) {
                (_, Some("peak_rss")) => "peak_rss".to_string(),
                (Some("device"), Some(metric)) => format!("device.{metric}"),
                (phase, _) => phase.unwrap_or_default().to_string(),
            };
            memory
                .insert((point.get(i).unwrap_or(u32::MAX), key), value.get(i).unwrap_or(f64::NAN));
        }
    }
    let losses: BTreeMap<u32, f64> = {
        let f = &tables.final_loss;
        let (point, value) = (f.column("point")?.u32()?, f.column("value")?.f64()?);
        (0..f.height())
            .filter_map(|i| Some((point.get(i)?, value.get(i).unwrap_or(f64::NAN))))
            .collect()
    };
    let empty = BTreeMap::new();
    let out: Vec<PointSummary> = points
        .par_iter()
        .enumerate()
        .map(|(index, meta)| {
            let index = index as u32;
            let phases = critical.get(&index).unwrap_or(&empty);
            let steps: Vec<(u32, f64)> = phases
                .get("step")
                .map(|s| s.iter().map(|(k, v)| (*k, *v)).collect())
                .unwrap_or_default();
            let from = steady_start(
                &steps.iter().map(|s| s.1).collect::<Vec<_>>(),
                meta.warmup_steps as usize,
            );
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
            let max_table = maxes.get(&index).unwrap_or(&empty);
            let max_series: BTreeMap<String, Vec<f64>> =
                max_table.keys().map(|p| (p.clone(), series(max_table, p))).collect();
            let mem =
                |key: &str| memory.get(&(index, key.to_string())).copied().unwrap_or(f64::NAN);
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
            let work = loader.get(&index).and_then(|t| t.get("loader"));
            let work_s: Vec<f64> = steady.iter().filter_map(|k| work?.get(k).copied()).collect();
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
                final_loss: losses.get(&index).copied().unwrap_or(f64::NAN),
                loader_images_per_worker_s,
                loader_images_per_s: loader_images_per_worker_s.map(|r| r * workers),
                data_share,
                weak_scaling_efficiency: None,
                strong_scaling_efficiency: None,
            }
        })
        .collect();
    Ok((out, tables.rank_scores))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_keys_unpack_to_their_parts() {
        let frame = df!("point" => [0u32, 7, (1 << POINT_BITS) - 1], "step" => [3u32, 0, (1 << STEP_BITS) - 1]).unwrap();
        let round = frame
            .clone()
            .lazy()
            .select([pack(col("point"), col("step"), STEP_BITS).alias("key")])
            .select(unpack("key", STEP_BITS, ["point", "step"], []))
            .collect()
            .unwrap();
        assert_eq!(round, frame);
    }
}
