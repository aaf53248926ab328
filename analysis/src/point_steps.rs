//! One point's file of the tidy store reduced, in one pass over its rows, to what the summary
//! takes from it: per step the slowest rank's phases (the critical path) and each phase's max
//! over ranks, the memory figures, the final loss, the loader's work and each rank's
//! straggler score.
//!
//! Polars decodes the file; the reductions are done here, on a dense steps x ranks x phases
//! table of the point's times. The store's rows come from `[ranks, steps]` datasets, so the
//! table is as large as its rows, and every reduction is an index, a max or a selection,
//! with no hashing, sorting or joining of rows. The same reductions as lazy Polars queries
//! over batches of points (a join for the critical path, group-bys for the maxima, a window
//! median and a group-by median for the scores) took 7.5-8.4 s for 1e8 rows, against 3.2-3.5 s
//! this way (`shardsweep bench-analysis`). Each point is independent, so points are read in
//! parallel, a group of at most 64 MiB of files at a time (`summary.rs`): memory is bounded
//! by that, not by the sweep or the number of cores.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use crate::stats::median;
use crate::AnalysisError;

/// A phase's value per step.
pub(crate) type PerStep = BTreeMap<u32, f64>;

/// What the summary takes from one point's rows.
#[derive(Debug, Default)]
pub(crate) struct PointSteps {
    /// Per phase (times, and exposed waits of `comm.<kind>`), the slowest rank's value in
    /// each step: the phases of the rank whose `step` phase was longest.
    pub critical: BTreeMap<String, PerStep>,
    /// Per phase, the max over ranks in each step.
    pub max_over_ranks: BTreeMap<String, PerStep>,
    /// The largest memory figures: `peak_rss`, `device.<metric>` for the caching allocator's
    /// and the phase (`memory.<category>`) for the harness's account (bytes).
    pub memory: BTreeMap<String, f64>,
    /// The mean over ranks of the loss at the last step with a loss (NaN if none).
    pub final_loss: f64,
    /// Per step, the loader's worker time summed over ranks and figures (s).
    pub loader_work: PerStep,
    /// Per rank, the median over steps from `warmup_steps` on of its forward time over the
    /// median rank's in the same step (see [`stragglers`](crate::stragglers)).
    pub rank_scores: Vec<(u32, f64)>,
}

/// Reads `file` (one point of the tidy store) and reduces it; `warmup_steps` are left out of
/// the straggler scores. Errors name the file.
pub(crate) fn read(file: &Path, warmup_steps: u32) -> Result<PointSteps, AnalysisError> {
    let handle = std::fs::File::open(file).map_err(|e| AnalysisError::read(file, e))?;
    let columns = ["rank", "step", "phase", "metric", "value"].map(String::from).to_vec();
    let frame = ParquetReader::new(handle)
        .with_columns(Some(columns))
        // Points are read in parallel; one file's columns are decoded on one thread.
        .read_parallel(ParallelStrategy::None)
        .finish()
        .map_err(|e| AnalysisError::read(file, e))?;
    // A file of another layout (a column missing or of another type) is named too.
    reduce(&frame, warmup_steps, file).map_err(|e| match e {
        AnalysisError::Polars(e) => AnalysisError::read(file, e),
        other => other,
    })
}

/// What a row is for, from its metric (and phase).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Use {
    /// A time or an exposed wait: into the table of times.
    Timed,
    Loss,
    LoaderWork,
    Memory,
    Unused,
}

fn use_of(metric: &str, phase: &str) -> Use {
    match metric {
        "time" | "wait" => Use::Timed,
        "loss" => Use::Loss,
        "work" => Use::LoaderWork,
        "bytes" | "peak_rss" => Use::Memory,
        _ if phase == "device" => Use::Memory,
        _ => Use::Unused,
    }
}

/// The key of a memory figure, as [`PointSteps::memory`] names them.
fn memory_key(metric: &str, phase: &str) -> String {
    match (phase, metric) {
        (_, "peak_rss") => "peak_rss".to_string(),
        ("device", metric) => format!("device.{metric}"),
        (phase, _) => phase.to_string(),
    }
}

/// A point's rows (columns rank, step, phase, metric, value) reduced; `file` is where they
/// come from (for errors).
pub(crate) fn reduce(
    frame: &DataFrame,
    warmup_steps: u32,
    file: &Path,
) -> Result<PointSteps, AnalysisError> {
    let (rank, step, phase, metric, value) = (
        frame.column("rank")?.u32()?,
        frame.column("step")?.u32()?,
        frame.column("phase")?.str()?,
        frame.column("metric")?.str()?,
        frame.column("value")?.f64()?,
    );
    let mut out = PointSteps { final_loss: f64::NAN, ..PointSteps::default() };
    let mut phases: Vec<String> = Vec::new();
    let mut timed: Vec<(u32, u32, u32, f64)> = Vec::with_capacity(frame.height());
    let mut losses: Vec<(u32, f64)> = Vec::new();
    // Rows of one phase and metric come in long runs: each is resolved once per run.
    let (mut last_phase, mut last_metric, mut last_use, mut last_code) = ("", "", Use::Unused, 0);
    let mut last_key = String::new();
    let rows = rank.iter().zip(step.iter()).zip(phase.iter()).zip(metric.iter()).zip(value.iter());
    for ((((r, s), ph), m), v) in rows {
        let (Some(r), Some(s), Some(ph), Some(m), Some(v)) = (r, s, ph, m, v) else { continue };
        if ph != last_phase || m != last_metric {
            (last_phase, last_metric, last_use) = (ph, m, use_of(m, ph));
            if last_use == Use::Memory {
                last_key = memory_key(m, ph);
            }
            if last_use == Use::Timed {
                last_code = match phases.iter().position(|p| p == ph) {
                    Some(i) => i,
                    None => {
                        phases.push(ph.to_string());
                        phases.len() - 1
                    }
                };
            }
        }
        match last_use {
            Use::Timed => timed.push((s, r, last_code as u32, v)),
            Use::Loss => losses.push((s, v)),
            Use::LoaderWork => *out.loader_work.entry(s).or_default() += v,
            Use::Memory => match out.memory.get_mut(&last_key) {
                Some(figure) => *figure = figure.max(v),
                None => drop(out.memory.insert(last_key.clone(), f64::NEG_INFINITY.max(v))),
            },
            Use::Unused => {}
        }
    }
    // A figure with no number is NaN, as for a point without the figure.
    out.memory.values_mut().filter(|v| **v == f64::NEG_INFINITY).for_each(|v| *v = f64::NAN);
    if let Some(last) = losses.iter().map(|l| l.0).max() {
        let at_last: Vec<f64> = losses.iter().filter(|l| l.0 == last).map(|l| l.1).collect();
        out.final_loss = at_last.iter().sum::<f64>() / at_last.len() as f64;
    }
    if !timed.is_empty() {
        let table =
            Table::new(&timed, phases.len()).map_err(|why| AnalysisError::read(file, why))?;
        table.reduce(&phases, &mut out);
        if let Some(forward) = phases.iter().position(|p| p == "forward") {
            out.rank_scores = table.rank_scores(forward, warmup_steps);
        }
    }
    Ok(out)
}

/// The most cells of a point's table per time it holds: a rank's phases differ from step to
/// step (waits of collectives some steps lack) and ranks complete different numbers of steps,
/// but not by this much.
const SPARSEST: usize = 64;

/// A point's times, steps `first..=last` x ranks x phases, NaN where a rank has none.
struct Table {
    first: u32,
    steps: usize,
    ranks: usize,
    phases: usize,
    values: Vec<f64>,
}

impl Table {
    fn new(rows: &[(u32, u32, u32, f64)], phases: usize) -> Result<Self, String> {
        let first = rows.iter().map(|r| r.0).min().unwrap_or(0);
        let last = rows.iter().map(|r| r.0).max().unwrap_or(0);
        let ranks = rows.iter().map(|r| r.1 as usize + 1).max().unwrap_or(0);
        let steps = (last - first) as usize + 1;
        // A table far larger than its rows comes of step or rank numbers that no run makes
        // (the store's rows come from [ranks, steps] datasets); refused, not allocated.
        let cells = steps.checked_mul(ranks).and_then(|n| n.checked_mul(phases));
        let cells = cells.filter(|&n| n <= SPARSEST * rows.len() + 65_536).ok_or_else(|| {
            format!(
                "{} times of steps {first}..={last} and {ranks} ranks: too sparse for a table of \
                 steps x ranks x {phases} phases (a step or rank number out of all proportion)",
                rows.len()
            )
        })?;
        let mut table = Table { first, steps, ranks, phases, values: vec![f64::NAN; cells] };
        for &(step, rank, phase, value) in rows {
            let i = table.index((step - first) as usize, rank as usize, phase as usize);
            table.values[i] = value;
        }
        Ok(table)
    }

    fn index(&self, step: usize, rank: usize, phase: usize) -> usize {
        (step * self.ranks + rank) * self.phases + phase
    }

    fn get(&self, step: usize, rank: usize, phase: usize) -> Option<f64> {
        Some(self.values[self.index(step, rank, phase)]).filter(|v| !v.is_nan())
    }

    /// The critical path and the maxima over ranks, per phase and step.
    fn reduce(&self, names: &[String], out: &mut PointSteps) {
        let step_phase = names.iter().position(|p| p == "step");
        for step in 0..self.steps {
            let number = self.first + step as u32;
            // The slowest rank; of ranks equally slow, the last.
            let slowest = step_phase.and_then(|p| {
                (0..self.ranks)
                    .filter_map(|r| Some((r, self.get(step, r, p)?)))
                    .fold(None, |best: Option<(usize, f64)>, (r, v)| match best {
                        Some((_, b)) if b > v => best,
                        _ => Some((r, v)),
                    })
                    .map(|(r, _)| r)
            });
            for (phase, name) in names.iter().enumerate() {
                let max = (0..self.ranks).filter_map(|r| self.get(step, r, phase)).reduce(f64::max);
                if let Some(max) = max {
                    let per_step = out.max_over_ranks.entry(name.clone()).or_default();
                    per_step.insert(number, max);
                }
                if let Some(value) = slowest.and_then(|r| self.get(step, r, phase)) {
                    out.critical.entry(name.clone()).or_default().insert(number, value);
                }
            }
        }
    }

    /// Each rank's median over the steps from `warmup_steps` on of its `forward` time over
    /// the step's median; ranks without such a time have no score.
    fn rank_scores(&self, forward: usize, warmup_steps: u32) -> Vec<(u32, f64)> {
        let from = warmup_steps.saturating_sub(self.first) as usize;
        let mut ratios = vec![f64::NAN; self.steps * self.ranks];
        let mut present = Vec::with_capacity(self.ranks);
        for step in from..self.steps {
            present.clear();
            present.extend((0..self.ranks).filter_map(|r| self.get(step, r, forward)));
            let typical = median(&present);
            for rank in 0..self.ranks {
                if let Some(v) = self.get(step, rank, forward) {
                    ratios[step * self.ranks + rank] = v / typical;
                }
            }
        }
        (0..self.ranks)
            .filter_map(|rank| {
                present.clear();
                let column = ratios[rank..].iter().step_by(self.ranks);
                present.extend(column.copied().filter(|v| !v.is_nan()));
                (!present.is_empty()).then(|| (rank as u32, median(&present)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of 2 ranks x 3 steps: rank 1 is the slower in steps 0 and 2, rank 0 in step 1.
    fn rows() -> DataFrame {
        let mut rows: Vec<(u32, u32, &str, &str, f64)> = Vec::new();
        for (step, forward) in [[1.0, 3.0], [4.0, 2.0], [1.0, 5.0]].into_iter().enumerate() {
            for (rank, f) in forward.into_iter().enumerate() {
                let s = step as u32;
                rows.push((rank as u32, s, "forward", "time", f));
                rows.push((rank as u32, s, "comm.all_gather", "wait", 0.5 * f));
                rows.push((rank as u32, s, "comm.all_gather", "span", 99.0));
                rows.push((rank as u32, s, "step", "time", f + 1.0));
                rows.push((rank as u32, s, "step", "loss", 10.0 * s as f64 + rank as f64));
                rows.push((rank as u32, s, "step", "peak_rss", 100.0 + f));
                rows.push((rank as u32, s, "memory.parameters", "bytes", 7.0));
                rows.push((rank as u32, s, "device", "allocated_peak", 50.0 + f));
                rows.push((rank as u32, s, "loader.read", "work", 0.25));
            }
        }
        df!(
            "rank" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "step" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "phase" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            "metric" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            "value" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn per_step(values: [f64; 3]) -> PerStep {
        values.into_iter().enumerate().map(|(s, v)| (s as u32, v)).collect()
    }

    #[test]
    fn a_points_rows_reduce_to_its_critical_path_maxima_and_scores() {
        let point = reduce(&rows(), 1, Path::new("rows")).unwrap();
        // The slowest rank's phases, its exposed wait included; spans are not times.
        assert_eq!(point.critical["step"], per_step([4.0, 5.0, 6.0]));
        assert_eq!(point.critical["forward"], per_step([3.0, 4.0, 5.0]));
        assert_eq!(point.critical["comm.all_gather"], per_step([1.5, 2.0, 2.5]));
        assert_eq!(point.critical.len(), 3);
        assert_eq!(point.max_over_ranks["forward"], per_step([3.0, 4.0, 5.0]));
        // Steps 1 and 2: medians 3 and 3; rank 0's ratios 4/3 and 1/3, rank 1's 2/3 and 5/3.
        let scores = point.rank_scores;
        assert_eq!(scores.len(), 2);
        assert!((scores[0].1 - 2.5 / 3.0).abs() < 1e-12 && (scores[1].1 - 3.5 / 3.0).abs() < 1e-12);
        // Step 2's losses are 20 and 21.
        assert_eq!(point.final_loss, 20.5);
        let memory: Vec<(&str, f64)> = point.memory.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            memory,
            [("device.allocated_peak", 55.0), ("memory.parameters", 7.0), ("peak_rss", 105.0)]
        );
        assert_eq!(point.loader_work, per_step([0.5, 0.5, 0.5]));
    }

    #[test]
    fn a_rank_missing_from_a_step_is_left_out_not_counted_as_zero() {
        let rows =
            rows().lazy().filter(col("rank").eq(lit(1u32)).and(col("step").eq(lit(2u32))).not());
        let point = reduce(&rows.collect().unwrap(), 0, Path::new("rows")).unwrap();
        assert_eq!(point.critical["step"], per_step([4.0, 5.0, 2.0]));
        assert_eq!(point.max_over_ranks["forward"], per_step([3.0, 4.0, 1.0]));
        // Rank 0's ratios: 1/2, 4/3, and 1 in step 2, where it is its own median.
        assert_eq!(point.rank_scores[0], (0, 1.0));
        assert_eq!(point.final_loss, 20.0);
    }

    /// The reductions as Polars queries (a join for the critical path, group-bys for the
    /// maxima, a window median for the scores) agree with these on a synthetic store.
    #[test]
    fn the_reductions_agree_with_the_same_polars_queries() {
        let dir = tempfile::tempdir().unwrap();
        let shape = crate::bench::Shape { points: 2, ranks: 24, steps: 9 };
        crate::bench::generate(dir.path(), &shape).unwrap();
        let file = dir.path().join("synthetic-00001.parquet");
        let point = read(&file, 2).unwrap();
        let rows = LazyFrame::scan_parquet(
            PlRefPath::new(file.display().to_string()),
            ScanArgsParquet::default(),
        )
        .unwrap()
        .filter(col("metric").eq(lit("time")).or(col("metric").eq(lit("wait"))));
        let slowest = rows
            .clone()
            .filter(col("phase").eq(lit("step")))
            .group_by([col("step")])
            .agg([col("rank").sort_by([col("value")], SortMultipleOptions::default()).last()]);
        let critical = rows.clone().join(
            slowest,
            [col("step"), col("rank")],
            [col("step"), col("rank")],
            JoinArgs::new(JoinType::Inner),
        );
        let maxima = rows.clone().group_by([col("step"), col("phase")]).agg([col("value").max()]);
        let by_phase = |frame: LazyFrame| {
            let frame = frame.collect().unwrap();
            let (step, phase, value) = (
                frame.column("step").unwrap().u32().unwrap().clone(),
                frame.column("phase").unwrap().str().unwrap().clone(),
                frame.column("value").unwrap().f64().unwrap().clone(),
            );
            let mut out: BTreeMap<String, PerStep> = BTreeMap::new();
            for i in 0..frame.height() {
                let phase = phase.get(i).unwrap().to_string();
                out.entry(phase).or_default().insert(step.get(i).unwrap(), value.get(i).unwrap());
            }
            out
        };
        assert_eq!(point.critical, by_phase(critical));
        assert_eq!(point.max_over_ranks, by_phase(maxima));
        let scores = rows
            .filter(col("phase").eq(lit("forward")).and(col("step").gt_eq(lit(2u32))))
            .with_column(
                (col("value") / col("value").median().over([col("step")]).unwrap()).alias("r"),
            )
            .group_by([col("rank")])
            .agg([col("r").median()])
            .sort(["rank"], SortMultipleOptions::default())
            .collect()
            .unwrap();
        let expected: Vec<(u32, f64)> = scores
            .column("rank")
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .zip(scores.column("r").unwrap().f64().unwrap().into_no_null_iter())
            .collect();
        assert_eq!(point.rank_scores.len(), expected.len());
        for (got, want) in point.rank_scores.iter().zip(&expected) {
            assert!(got.0 == want.0 && (got.1 - want.1).abs() < 1e-12, "{got:?} {want:?}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_point_of_the_store_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("torn.parquet");
        std::fs::write(&file, b"PAR1 not really").unwrap();
        let error = read(&file, 0).unwrap_err().to_string();
        assert!(error.starts_with(&file.display().to_string()), "{error}");
        let mut frame = df!("rank" => [0u32], "step" => [0u32], "value" => [1.0]).unwrap();
        let other = dir.path().join("other.parquet");
        crate::tidy::write_parquet(&other, &mut frame).unwrap();
        let error = read(&other, 0).unwrap_err().to_string();
        assert!(error.starts_with(&other.display().to_string()), "{error}");
    }

    #[test]
    fn a_step_number_out_of_all_proportion_is_refused_not_allocated() {
        let rows = rows().lazy().with_column(
            when(col("rank").eq(lit(1u32)).and(col("step").eq(lit(2u32))))
                .then(lit(4_000_000_000u32))
                .otherwise(col("step"))
                .alias("step"),
        );
        let error =
            reduce(&rows.collect().unwrap(), 0, Path::new("odd.parquet")).unwrap_err().to_string();
        assert!(error.starts_with("odd.parquet: ") && error.contains("too sparse"), "{error}");
    }
}
