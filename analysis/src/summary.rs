//! Per-point statistics from the tidy store. A step lasts as long as its slowest rank, so each
//! step is first reduced over ranks; the steady steps (see [`steady`](crate::steady)) are then
//! summarised with a median, percentiles and a bootstrap interval.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::breakdown::{breakdown, Breakdown};
use crate::load::PointRecords;
use crate::stats::{bootstrap, median, quantile, Interval};
use crate::steady::steady_start;
use crate::tidy::Store;
use crate::AnalysisError;

/// How MFU is computed; stored beside every MFU figure.
pub const MFU_FORMULA: &str = "mfu-v1: model FLOP per step (3 x forward: patch embedding, encoder on visible tokens, decoder on all tokens, attention included; recomputation excluded) / median steady step time / (ranks x peak FLOP/s per rank)";

/// Everything the analysis says about one point.
#[derive(Debug, Clone)]
pub struct PointSummary {
    pub meta: PointRecords,
    /// First step counted as steady, and how many steady steps there are.
    pub steady_from: u32,
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
    pub final_loss: f64,
    pub weak_scaling_efficiency: Option<f64>,
    pub strong_scaling_efficiency: Option<f64>,
}

impl PointSummary {
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
}

impl StepTables {
    fn append(&mut self, other: &StepTables) -> Result<(), AnalysisError> {
        self.critical.vstack_mut(&other.critical)?;
        self.max_over_ranks.vstack_mut(&other.max_over_ranks)?;
        self.memory.vstack_mut(&other.memory)?;
        self.final_loss.vstack_mut(&other.final_loss)?;
        self.rank_scores.vstack_mut(&other.rank_scores)?;
        Ok(())
    }
}

/// The heavy part: a batch of points' rows reduced to their step tables in one streaming
/// query. Only the columns these need are read (text is the costly part of decoding).
pub(crate) fn step_tables(rows: LazyFrame, warmups: &DataFrame) -> Result<StepTables, AnalysisError> {
    let rows = rows.select([col("point"), col("rank"), col("step"), col("phase"), col("metric"), col("value")]);
    let timed = rows.clone().filter(col("metric").eq(lit("time")).or(col("metric").eq(lit("wait")))).drop(cols(["metric"])).cache();
    let rank_scores = crate::stragglers::rank_scores(timed.clone(), warmups)?;
    let slowest = timed
        .clone()
        .filter(col("phase").eq(lit("step")))
        .group_by([col("point"), col("step")])
        .agg([col("rank").sort_by([col("value")], SortMultipleOptions::default()).last().alias("rank")]);
    let keys = [col("point"), col("step"), col("rank")];
    let critical = timed.clone().join(slowest, keys.clone(), keys, JoinArgs::new(JoinType::Inner)).select([col("point"), col("step"), col("phase"), col("value")]);
    let max_over_ranks = timed.group_by([col("point"), col("step"), col("phase")]).agg([col("value").max()]);
    let memory = rows.clone().filter(col("metric").eq(lit("bytes")).or(col("metric").eq(lit("peak_rss")))).group_by([col("point"), col("metric"), col("phase")]).agg([col("value").max()]);
    let final_loss = rows
        .filter(col("metric").eq(lit("loss")))
        .filter(col("step").eq(col("step").max().over([col("point")])?))
        .group_by([col("point")])
        .agg([col("value").mean()]);
    // One query: the batch is scanned and decoded once (the cache above) for all the tables;
    // without the cache each table scans it again (20 s instead of 15 s for 1e8 rows).
    let plans = [critical, max_over_ranks, memory, final_loss, rank_scores].map(|f| f.logical_plan).to_vec();
    let frames = LazyFrame::collect_all_with_engine(plans, Engine::Streaming, OptFlags::default())?;
    let [critical, max_over_ranks, memory, final_loss, rank_scores]: [DataFrame; 5] = frames.try_into().map_err(|_| AnalysisError::Empty("step tables".into()))?;
    Ok(StepTables { critical, max_over_ranks, memory, final_loss, rank_scores })
}

/// point -> phase -> step -> value.
type Series3 = BTreeMap<String, BTreeMap<String, BTreeMap<u32, f64>>>;

fn by_point(frame: &DataFrame) -> Result<Series3, AnalysisError> {
    let (point, step, phase, value) = (frame.column("point")?.str()?, frame.column("step")?.u32()?, frame.column("phase")?.str()?, frame.column("value")?.f64()?);
    let mut out: Series3 = BTreeMap::new();
    for i in 0..frame.height() {
        if let (Some(p), Some(s), Some(ph), Some(v)) = (point.get(i), step.get(i), phase.get(i), value.get(i)) {
            out.entry(p.to_string()).or_default().entry(ph.to_string()).or_default().insert(s, v);
        }
    }
    Ok(out)
}

/// Every point's summary, and every rank's straggler score (point, rank, score).
pub fn summarize(points: &[PointRecords], store: &Store) -> Result<(Vec<PointSummary>, DataFrame), AnalysisError> {
    let warmups = df!(
        "point" => points.iter().map(|p| p.point.clone()).collect::<Vec<_>>(),
        "warmup_steps" => points.iter().map(|p| p.warmup_steps).collect::<Vec<_>>(),
    )?;
    let mut tables: Option<StepTables> = None;
    for batch in store.batches() {
        let part = step_tables(batch?, &warmups)?;
        match &mut tables {
            None => tables = Some(part),
            Some(all) => all.append(&part)?,
        }
    }
    let tables = tables.ok_or_else(|| AnalysisError::Empty("the tidy store".into()))?;
    let critical = by_point(&tables.critical)?;
    let maxes = by_point(&tables.max_over_ranks)?;
    let mut memory: BTreeMap<(String, String), f64> = BTreeMap::new();
    {
        let m = &tables.memory;
        let (point, metric, phase, value) = (m.column("point")?.str()?, m.column("metric")?.str()?, m.column("phase")?.str()?, m.column("value")?.f64()?);
        for i in 0..m.height() {
            let key = if metric.get(i) == Some("peak_rss") { "peak_rss".to_string() } else { phase.get(i).unwrap_or_default().to_string() };
            memory.insert((point.get(i).unwrap_or_default().to_string(), key), value.get(i).unwrap_or(f64::NAN));
        }
    }
    let losses: BTreeMap<String, f64> = {
        let f = &tables.final_loss;
        let (point, value) = (f.column("point")?.str()?, f.column("value")?.f64()?);
        (0..f.height()).filter_map(|i| Some((point.get(i)?.to_string(), value.get(i).unwrap_or(f64::NAN)))).collect()
    };
    let empty = BTreeMap::new();
    let mut out: Vec<PointSummary> = points
        .iter()
        .map(|meta| {
            let phases = critical.get(&meta.point).unwrap_or(&empty);
            let steps: Vec<(u32, f64)> = phases.get("step").map(|s| s.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default();
            let from = steady_start(&steps.iter().map(|s| s.1).collect::<Vec<_>>(), meta.warmup_steps as usize);
            let steady: Vec<u32> = steps[from.min(steps.len())..].iter().map(|s| s.0).collect();
            let series = |table: &BTreeMap<String, BTreeMap<u32, f64>>, phase: &str| -> Vec<f64> {
                table.get(phase).map(|s| steady.iter().map(|k| s.get(k).copied().unwrap_or(0.0)).collect()).unwrap_or_default()
            };
            let step_s = series(phases, "step");
            let step_median = bootstrap(&step_s, median);
            let batch = f64::from(meta.global_batch);
            let images = Interval { estimate: batch / step_median.estimate, low: batch / step_median.high, high: batch / step_median.low };
            let model_flop_per_s = meta.train_flop_per_step / step_median.estimate;
            let phase_names: Vec<&String> = phases.keys().collect();
            let critical_series: BTreeMap<String, Vec<f64>> = phase_names.iter().map(|p| (p.to_string(), series(phases, p))).collect();
            let max_table = maxes.get(&meta.point).unwrap_or(&empty);
            let max_series: BTreeMap<String, Vec<f64>> = max_table.keys().map(|p| (p.clone(), series(max_table, p))).collect();
            let mem = |key: &str| memory.get(&(meta.point.clone(), key.to_string())).copied().unwrap_or(f64::NAN);
            let accounted = ["param_shards", "grad_shards", "optimizer_state", "gathered_params_peak", "unsharded_grads_peak", "activations_peak"]
                .iter()
                .map(|c| mem(&format!("memory.{c}")))
                .filter(|v| v.is_finite())
                .sum();
            PointSummary {
                meta: meta.clone(),
                steady_from: steady.first().copied().unwrap_or(meta.steps_planned),
                step_s_p10: quantile(&step_s, 0.1),
                step_s_p90: quantile(&step_s, 0.9),
                images_per_s: images,
                model_flop_per_s,
                mfu: meta.peak_flop_per_s.map(|peak| model_flop_per_s / (f64::from(meta.world_size) * peak)),
                breakdown: breakdown(&critical_series, &max_series),
                phase_s: critical_series,
                step_s_median: step_median,
                step_s,
                peak_rss_bytes: mem("peak_rss"),
                accounted_peak_bytes: accounted,
                final_loss: losses.get(&meta.point).copied().unwrap_or(f64::NAN),
                weak_scaling_efficiency: None,
                strong_scaling_efficiency: None,
            }
        })
        .collect();
    crate::scaling::add_efficiencies(&mut out);
    Ok((out, tables.rank_scores))
}
