//! Where the steady state starts. The experiment's `warmup_steps` are always excluded; beyond
//! them, the MSER-5 rule (White, 1997) drops the leading steps whose removal most reduces the
//! standard error of the mean: it finds the end of a slow start (allocator growth, kernel
//! autotuning, a cold cache) without a fixed count, and keeps at least half of the steps.

/// First steady step index in `step_s` (the slowest rank's step times in step order), at
/// least `warmup_steps`.
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
}
