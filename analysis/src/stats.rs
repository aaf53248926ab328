//! The statistics behind every number the analysis reports: order statistics of a sample,
//! bootstrap confidence intervals (seeded, so a report is reproducible), and the Mann-Whitney
//! U test for "did this change?".

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::statistics::{Data, OrderStatistics};

/// Resamples per bootstrap interval: enough for stable 2.5/97.5 percentiles.
pub const RESAMPLES: usize = 2000;
const SEED: u64 = 0x5eed;

/// The `q` quantile (0..=1) of `values` (linear interpolation), NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    Data::new(values.to_vec()).quantile(q)
}

/// The median, by selection rather than sorting: the bootstrap takes thousands per point.
pub use shardsweep_records::measured::median;

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// A point estimate with its two-sided 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// Percentile bootstrap of `statistic` over resamples of `values`.
pub fn bootstrap(values: &[f64], statistic: impl Fn(&[f64]) -> f64) -> Interval {
    let estimate = statistic(values);
    if values.len() < 2 {
        return Interval { estimate, low: estimate, high: estimate };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut sample = Vec::new();
    let stats: Vec<f64> =
        (0..RESAMPLES).map(|_| statistic(resample(values, &mut rng, &mut sample))).collect();
    percentile_interval(estimate, &stats)
}

/// `values` drawn with replacement into `buffer`.
fn resample<'a>(values: &[f64], rng: &mut ChaCha8Rng, buffer: &'a mut Vec<f64>) -> &'a [f64] {
    buffer.clear();
    buffer.extend((0..values.len()).map(|_| values[rng.random_range(0..values.len())]));
    buffer
}

/// The 95% percentile interval of bootstrap statistics around `estimate`.
fn percentile_interval(estimate: f64, stats: &[f64]) -> Interval {
    Interval { estimate, low: quantile(stats, 0.025), high: quantile(stats, 0.975) }
}

/// Ratio of medians `after / before` with a bootstrap interval (each sample resampled on its
/// own: the runs are independent).
pub fn median_ratio(before: &[f64], after: &[f64]) -> Interval {
    let estimate = median(after) / median(before);
    if before.len() < 2 || after.len() < 2 {
        return Interval { estimate, low: estimate, high: estimate };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let (mut b, mut a) = (Vec::new(), Vec::new());
    let ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            median(resample(after, &mut rng, &mut a)) / median(resample(before, &mut rng, &mut b))
        })
        .collect();
    percentile_interval(estimate, &ratios)
}

/// Block length of the circular block bootstrap for `n` steps: `ceil(n^(1/3))`, the order
/// that minimises the error of a block-bootstrap variance (Hall, Horowitz and Jing, 1995,
/// "On blocking rules for the bootstrap with dependent data"). Steps are autocorrelated (a
/// slow node, a busy network and the allocator's state last several steps); blocks keep
/// that structure in each resample, where resampling single steps would not.
pub fn block_length(n: usize) -> usize {
    ((n as f64).cbrt().ceil() as usize).clamp(1, n.max(1))
}

/// `values` resampled by the circular block bootstrap (Politis and Romano, 1992) into
/// `buffer`: blocks of `block` consecutive values, starting anywhere and wrapping around.
fn block_resample<'a>(
    values: &[f64],
    block: usize,
    rng: &mut ChaCha8Rng,
    buffer: &'a mut Vec<f64>,
) -> &'a [f64] {
    let n = values.len();
    buffer.clear();
    while buffer.len() < n {
        let start = rng.random_range(0..n);
        buffer.extend((0..block).map(|i| values[(start + i) % n]).take(n - buffer.len()));
    }
    buffer
}

/// The change `after / before` of the medians of two series of steady steps, by the circular
/// block bootstrap of each series on its own (the runs are independent; the steps within
/// one are not).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioTest {
    /// The ratio of medians with its 95% percentile interval.
    pub ratio: Interval,
    /// Two-sided p-value of "no change", from the bootstrap's standard error of the log ratio
    /// (a normal approximation: continuous, so that a false-discovery-rate procedure over
    /// hundreds of tests can use it, which a p-value counted from 2000 resamples cannot).
    pub p_value: f64,
}

pub fn block_bootstrap_ratio(before: &[f64], after: &[f64]) -> RatioTest {
    let estimate = median(after) / median(before);
    if before.len() < 2 || after.len() < 2 {
        let ratio = Interval { estimate, low: estimate, high: estimate };
        return RatioTest { ratio, p_value: 1.0 };
    }
    let (lb, la) = (block_length(before.len()), block_length(after.len()));
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let (mut b, mut a) = (Vec::new(), Vec::new());
    let ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            median(block_resample(after, la, &mut rng, &mut a))
                / median(block_resample(before, lb, &mut rng, &mut b))
        })
        .collect();
    let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).filter(|l| l.is_finite()).collect();
    let m = mean(&logs);
    let se = (logs.iter().map(|l| (l - m).powi(2)).sum::<f64>() / (logs.len() as f64 - 1.0)).sqrt();
    let p_value = if se > 0.0 && estimate.ln().is_finite() {
        let z = estimate.ln().abs() / se;
        (2.0 * (1.0 - Normal::standard().cdf(z))).min(1.0)
    } else if estimate == 1.0 || !estimate.is_finite() {
        1.0
    } else {
        0.0
    };
    RatioTest { ratio: percentile_interval(estimate, &ratios), p_value }
}

/// Two-sided p-value of the Mann-Whitney U test (normal approximation with tie correction,
/// fine from about eight values a side).
pub fn mann_whitney_p(x: &[f64], y: &[f64]) -> f64 {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    if x.is_empty() || y.is_empty() {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> =
        x.iter().map(|&v| (v, true)).chain(y.iter().map(|&v| (v, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum_x, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let average_rank = (i + j + 1) as f64 / 2.0;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        rank_sum_x += average_rank * all[i..j].iter().filter(|(_, from_x)| *from_x).count() as f64;
        i = j;
    }
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    let z = (u - n1 * n2 / 2.0).abs() / variance.sqrt();
    (2.0 * (1.0 - Normal::standard().cdf(z))).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(n: usize, centre: f64, spread: f64, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| centre + spread * (rng.random::<f64>() - 0.5)).collect()
    }

    #[test]
    fn bootstrap_interval_of_the_median_covers_the_truth() {
        // Uniform noise around 1.0: over many samples the 95% interval covers the true median
        // about 95% of the time.
        let covered = (0..200)
            .filter(|&seed| bootstrap(&noisy(40, 1.0, 0.2, seed), median).contains(1.0))
            .count();
        assert!((180..=199).contains(&covered), "covered {covered} of 200");
    }

    #[test]
    fn median_by_selection_equals_the_interpolated_quantile() {
        for n in 1..40 {
            let values = noisy(n, 1.0, 1.0, n as u64);
            assert_eq!(median(&values), quantile(&values, 0.5), "n = {n}");
        }
    }

    #[test]
    fn mann_whitney_separates_shifted_samples_and_not_equal_ones() {
        let a = noisy(30, 1.0, 0.1, 1);
        assert!(mann_whitney_p(&a, &noisy(30, 1.1, 0.1, 2)) < 1e-6);
        assert!(mann_whitney_p(&a, &noisy(30, 1.0, 0.1, 3)) > 0.01);
        // Known value: x = 1..5 against 6..10 has U = 0, z = 2.611, p = 0.0090.
        let p = mann_whitney_p(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        assert!((p - 0.0090).abs() < 2e-4, "{p}");
    }

    #[test]
    fn the_block_bootstrap_brackets_a_planted_change_in_autocorrelated_steps() {
        // An AR(1) series (phi = 0.7): single-step resampling would be overconfident.
        let ar = |seed: u64, scale: f64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut x = 0.0;
            (0..60)
                .map(|_| {
                    x = 0.7 * x + 0.02 * (rng.random::<f64>() - 0.5);
                    scale * (1.0 + x)
                })
                .collect::<Vec<f64>>()
        };
        let changed = block_bootstrap_ratio(&ar(1, 1.0), &ar(2, 1.2));
        assert!(changed.ratio.contains(1.2) && changed.p_value < 1e-6, "{changed:?}");
        let same = block_bootstrap_ratio(&ar(3, 1.0), &ar(4, 1.0));
        assert!(same.ratio.contains(1.0) && same.p_value > 0.01, "{same:?}");
        assert_eq!(block_length(60), 4);
        assert_eq!(block_length(1), 1);
    }

    #[test]
    fn ratio_interval_brackets_a_planted_change() {
        let before = noisy(40, 1.0, 0.05, 4);
        let after: Vec<f64> = noisy(40, 1.0, 0.05, 5).iter().map(|x| x * 1.10).collect();
        let r = median_ratio(&before, &after);
        assert!(r.low > 1.05 && r.high < 1.15 && r.contains(r.estimate), "{r:?}");
    }
}
