//! What "measured" means, once, for everything that reads records: the analysis's summary,
//! `predict`/`calibrate` reading a sweep, and `analyze`'s predicted-against-measured table.
//!
//! - A step lasts as long as its slowest rank: per step, the largest of the ranks' step times
//!   ([`slowest_rank`]; a NaN on any rank makes the step's NaN).
//! - The steady state starts after the experiment's `warmup_steps` and, beyond them, where the
//!   MSER-5 rule (White 1997) says a slow start ends ([`steady_start`]).
//! - The point's step time is the median of its steady steps ([`median`]: the mean of the middle
//!   two for an even count), its throughput the global batch over that median
//!   ([`steady_throughput`]).

/// Per step, the slowest rank's time: `per_rank[rank][step]` folded with a NaN-propagating max
/// over ranks (ranks with fewer steps end the series where the shortest ends).
pub fn slowest_rank(per_rank: &[Vec<f64>]) -> Vec<f64> {
    let steps = per_rank.iter().map(Vec::len).min().unwrap_or(0);
    (0..steps)
        .map(|i| {
            per_rank.iter().map(|r| r[i]).fold(0.0_f64, |a, b| {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            })
        })
        .collect()
}

/// First steady step index in `step_s` (the slowest rank's step times in step order), at least
/// `warmup_steps`: the MSER-5 rule over batch means of 5 steps drops the leading steps whose
/// removal most reduces the standard error of the mean, keeping at least half of them.
pub fn steady_start(step_s: &[f64], warmup_steps: usize) -> usize {
    const BATCH: usize = 5;
    let start = warmup_steps.min(step_s.len());
    let rest = &step_s[start..];
    // Batch means of 5 steps smooth step-to-step noise before the rule looks at them.
    let batches: Vec<f64> =
        rest.chunks_exact(BATCH).map(|c| c.iter().sum::<f64>() / BATCH as f64).collect();
    if batches.len() < 4 {
        return start;
    }
    let mser = |d: usize| {
        let tail = &batches[d..];
        let n = tail.len() as f64;
        let mean = tail.iter().sum::<f64>() / n;
        tail.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n * n)
    };
    let scores: Vec<f64> = (0..=batches.len() / 2).map(mser).collect();
    let lowest = scores.iter().copied().fold(f64::INFINITY, f64::min);
    // The shortest truncation that is as good as the best (ties within rounding): drop no
    // more steady steps than the rule needs.
    let best = scores.iter().position(|&m| m <= lowest * (1.0 + 1e-6) + 1e-300).unwrap_or(0);
    start + best * BATCH
}

/// The median (the mean of the middle two for an even count); NaN for no values.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    let mid = v.len() / 2;
    let (lower, &mut upper, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    if values.len() % 2 == 1 {
        upper
    } else {
        (lower.iter().copied().fold(f64::NEG_INFINITY, f64::max) + upper) / 2.0
    }
}

/// A point's steady state as measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SteadyState {
    /// Index of the first steady step.
    pub from: usize,
    /// The slowest rank's time of each steady step (s), in step order.
    pub step_s: Vec<f64>,
    /// Their median (s).
    pub step_s_median: f64,
    /// Global batch over the median step: images per second over all ranks.
    pub images_per_s: f64,
}

/// The steady state of a point whose slowest rank took `step_s` per step (warm-up included),
/// of `global_batch` images a step; `None` without a steady step.
pub fn steady_throughput(
    step_s: &[f64],
    warmup_steps: usize,
    global_batch: u32,
) -> Option<SteadyState> {
    let from = steady_start(step_s, warmup_steps);
    let steady = step_s.get(from..).filter(|s| !s.is_empty())?.to_vec();
    let step_s_median = median(&steady);
    Some(SteadyState {
        from,
        images_per_s: f64::from(global_batch) / step_s_median,
        step_s: steady,
        step_s_median,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_start_is_cut_and_a_flat_series_is_kept() {
        let mut series: Vec<f64> = (0..10).map(|i| 3.0 - 0.2 * i as f64).collect();
        series.extend((0..40).map(|i| 1.0 + 0.001 * ((i * 7919) % 13) as f64));
        let start = steady_start(&series, 2);
        assert!((10..=20).contains(&start), "{start}");
        let flat: Vec<f64> = (0..50).map(|i| 1.0 + 0.001 * ((i * 7919) % 13) as f64).collect();
        assert!(steady_start(&flat, 3) <= 8);
        assert_eq!(steady_start(&[1.0, 2.0, 3.0], 1), 1, "too few steps: warm-up only");
    }

    #[test]
    fn the_slowest_rank_sets_each_step_and_the_median_the_throughput() {
        let steps = slowest_rank(&[vec![1.0, 2.0, 4.0, 4.0], vec![1.5, 1.0, 3.0]]);
        assert_eq!(steps, [1.5, 2.0, 4.0]);
        assert!(slowest_rank(&[vec![1.0], vec![f64::NAN]])[0].is_nan());
        let s = steady_throughput(&[9.0, 1.0, 2.0, 3.0, 4.0], 1, 10).unwrap();
        assert_eq!((s.from, s.step_s_median, s.images_per_s), (1, 2.5, 4.0));
        assert_eq!(steady_throughput(&[1.0, 2.0], 2, 10), None);
        assert!(median(&[]).is_nan());
    }
}
