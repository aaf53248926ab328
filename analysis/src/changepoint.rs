//! Change points in a short series of per-run figures (a point's median step time over nightly
//! runs), each figure with its own 95% interval.
//!
//! The crates on crates.io that detect change points (`changepoint`, and `augurs-changepoint`
//! which wraps it) implement Bayesian online detection (BOCPD) and autoregressive Gaussian
//! processes: they learn the noise from the series itself and need priors tuned to it, where
//! here every run already measures its own noise and series are a handful of runs long. So this
//! is PELT (Killick, Fearnhead and Eckley 2012), exact and small, with the Gaussian cost of
//! known variances:
//!
//! - each run `i` has a value `x_i` and a noise scale `sigma_i`, half its 95% interval over
//!   1.96 (the bootstrap interval of its median over steady steps), floored at
//!   [`ChangeOptions::noise_floor`] of the value so a run of one steady step still weighs
//!   finitely;
//! - a segment's cost is `sum w_i (x_i - m)^2` with `w_i = 1 / sigma_i^2` and `m` the
//!   weighted mean (twice the negative log-likelihood, up to a constant);
//! - a change costs a penalty of `3 ln n` (a little above BIC's `2 ln n`: two parameters, the
//!   new level and where it starts), so noise alone rarely buys one;
//! - every change PELT keeps must then be a real one: the levels either side differ by at
//!   least [`ChangeOptions::min_effect`] (relative) and by more than
//!   [`ChangeOptions::z`] standard errors of that difference. The weakest change failing either
//!   is dropped (its segments merged) until all pass.

/// One run's figure and its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangeOptions {
    /// Smallest relative change of level that counts (0.05 = 5%).
    pub min_effect: f64,
    /// How many standard errors the change of level must exceed.
    pub z: f64,
    /// Smallest noise scale, as a fraction of the value.
    pub noise_floor: f64,
}

impl Default for ChangeOptions {
    fn default() -> Self {
        Self { min_effect: 0.05, z: 3.0, noise_floor: 1e-3 }
    }
}

/// A change of level: the first run of the new level, and the levels before and after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// Index in the series of the first observation after the change.
    pub index: usize,
    pub before: f64,
    pub after: f64,
    /// `after / before - 1`.
    pub relative: f64,
    /// The change of level in standard errors.
    pub z: f64,
}

/// Prefix sums of weights, weighted values and weighted squares: any segment's cost in O(1).
struct Sums {
    w: Vec<f64>,
    wx: Vec<f64>,
    wxx: Vec<f64>,
}

impl Sums {
    fn new(x: &[f64], w: &[f64]) -> Self {
        let mut s = Sums { w: vec![0.0], wx: vec![0.0], wxx: vec![0.0] };
        for (x, w) in x.iter().zip(w) {
            s.w.push(s.w.last().unwrap() + w);
            s.wx.push(s.wx.last().unwrap() + w * x);
            s.wxx.push(s.wxx.last().unwrap() + w * x * x);
        }
        s
    }

    /// The segment `start..end`: total weight, weighted mean and cost.
    fn segment(&self, start: usize, end: usize) -> (f64, f64, f64) {
        let w = self.w[end] - self.w[start];
        let wx = self.wx[end] - self.wx[start];
        let wxx = self.wxx[end] - self.wxx[start];
        (w, wx / w, (wxx - wx * wx / w).max(0.0))
    }
}

/// The noise scale of each observation (see the module's documentation).
pub fn noise_scales(series: &[Observation], options: &ChangeOptions) -> Vec<f64> {
    series
        .iter()
        .map(|o| {
            let half = if o.low.is_finite() && o.high.is_finite() {
                (o.high - o.low).abs() / 2.0
            } else {
                0.0
            };
            (half / 1.96).max(options.noise_floor * o.value.abs()).max(f64::MIN_POSITIVE)
        })
        .collect()
}

/// PELT's optimal segmentation: the starts of every segment after the first.
fn pelt(sums: &Sums, n: usize, penalty: f64) -> Vec<usize> {
    let mut best = vec![0.0; n + 1];
    let mut last = vec![0usize; n + 1];
    best[0] = -penalty;
    let mut candidates = vec![0usize];
    for t in 1..=n {
        let (cost, from) = candidates
            .iter()
            .map(|&s| (best[s] + sums.segment(s, t).2 + penalty, s))
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a });
        best[t] = cost;
        last[t] = from;
        // A start that cannot beat the best even before its penalty never will later.
        candidates.retain(|&s| best[s] + sums.segment(s, t).2 <= best[t]);
        candidates.push(t);
    }
    let mut starts = Vec::new();
    let mut t = n;
    while last[t] > 0 {
        starts.push(last[t]);
        t = last[t];
    }
    starts.reverse();
    starts
}

/// The changes of level in `series` (see the module's documentation). Observations must be
/// finite; a series of fewer than two has none.
pub fn change_points(series: &[Observation], options: &ChangeOptions) -> Vec<Change> {
    let n = series.len();
    if n < 2 {
        return Vec::new();
    }
    let x: Vec<f64> = series.iter().map(|o| o.value).collect();
    let w: Vec<f64> = noise_scales(series, options).iter().map(|s| 1.0 / (s * s)).collect();
    let sums = Sums::new(&x, &w);
    let mut starts = pelt(&sums, n, 3.0 * (n as f64).ln());
    loop {
        let bounds: Vec<usize> =
            std::iter::once(0).chain(starts.iter().copied()).chain(std::iter::once(n)).collect();
        let changes: Vec<Change> = (1..bounds.len() - 1)
            .map(|k| {
                let (wa, a, _) = sums.segment(bounds[k - 1], bounds[k]);
                let (wb, b, _) = sums.segment(bounds[k], bounds[k + 1]);
                let se = (1.0 / wa + 1.0 / wb).sqrt();
                Change {
                    index: bounds[k],
                    before: a,
                    after: b,
                    relative: b / a - 1.0,
                    z: (b - a).abs() / se,
                }
            })
            .collect();
        let weak = changes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.relative.abs() < options.min_effect || c.z <= options.z)
            .min_by(|a, b| {
                let score =
                    |c: &Change| (c.relative.abs() / options.min_effect).min(c.z / options.z);
                score(a.1).total_cmp(&score(b.1))
            })
            .map(|(k, _)| k);
        match weak {
            Some(k) => {
                starts.remove(k);
            }
            None => return changes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observations of `values`, each with a 95% interval of +-`half` (relative).
    fn series(values: &[f64], half: f64) -> Vec<Observation> {
        values
            .iter()
            .map(|&v| Observation { value: v, low: v * (1.0 - half), high: v * (1.0 + half) })
            .collect()
    }

    #[test]
    fn a_step_is_found_where_it_starts() {
        let s = series(&[1.0, 1.004, 1.15, 1.148, 1.152], 0.01);
        let changes = change_points(&s, &ChangeOptions::default());
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].index, 2);
        assert!((changes[0].relative - 0.149).abs() < 0.01, "{changes:?}");
    }

    #[test]
    fn noise_and_small_changes_are_no_change() {
        let noise = series(&[1.0, 1.01, 0.99, 1.005, 1.0, 0.995], 0.01);
        assert!(change_points(&noise, &ChangeOptions::default()).is_empty());
        // 3% is far beyond the noise but under the 5% minimum effect.
        let small = series(&[1.0, 1.0, 1.03, 1.03, 1.03], 0.001);
        assert!(change_points(&small, &ChangeOptions::default()).is_empty());
        let lower = ChangeOptions { min_effect: 0.02, ..Default::default() };
        assert_eq!(change_points(&small, &lower).iter().map(|c| c.index).collect::<Vec<_>>(), [2]);
        // 15% inside runs whose intervals are +-30% wide: the noise could make it.
        let noisy = series(&[1.0, 1.0, 1.15, 1.15, 1.15], 0.3);
        assert!(change_points(&noisy, &ChangeOptions::default()).is_empty());
    }

    #[test]
    fn two_steps_and_a_step_at_either_end_are_found() {
        let s = series(&[1.0, 1.0, 1.2, 1.2, 1.2, 0.9, 0.9], 0.01);
        let at: Vec<usize> =
            change_points(&s, &ChangeOptions::default()).iter().map(|c| c.index).collect();
        assert_eq!(at, [2, 5]);
        let last = series(&[1.0, 1.0, 1.0, 1.0, 1.3], 0.01);
        let at: Vec<usize> =
            change_points(&last, &ChangeOptions::default()).iter().map(|c| c.index).collect();
        assert_eq!(at, [4], "one run at a new level is a change when it is far beyond its noise");
        assert!(change_points(&series(&[1.0], 0.01), &ChangeOptions::default()).is_empty());
    }
}
