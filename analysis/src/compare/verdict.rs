//! The verdict on one metric of one point, in four outcomes a CI can act on. The change is the
//! ratio of medians over steady steps (after / before) with a 95% circular-block-bootstrap
//! interval ([`block_bootstrap_ratio`]); the p-values of every test of a comparison are
//! adjusted together (Benjamini-Hochberg), so that the expected share of false "regressed" or
//! "improved" verdicts among all of them stays below the chosen false-discovery rate.
//!
//! - **regressed / improved**: the adjusted p-value is at most the rate, and the change is at
//!   least `min_effect` of the metric and `min_step_share` of the point's step.
//! - **indistinguishable**: the interval rules out any change that large.
//! - **insufficient evidence**: too few steady steps on a side, or an interval too wide to
//!   rule such a change in or out.

use crate::stats::{block_bootstrap_ratio, median, Interval};

use super::CompareOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regressed,
    Improved,
    Indistinguishable,
    InsufficientEvidence,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Indistinguishable => "indistinguishable",
            Verdict::InsufficientEvidence => "insufficient evidence",
        }
    }

    /// A verdict of a change (regressed or improved).
    pub fn is_change(self) -> bool {
        matches!(self, Verdict::Regressed | Verdict::Improved)
    }
}

/// One metric of one point compared. Metrics are phase times in seconds (`step`, `forward`,
/// `comm.reduce_scatter`, ...: the slowest rank's, per steady step) and `outcome`, whose
/// "regressed" means a point that finished before and did not after.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseChange {
    pub point: String,
    pub phase: String,
    /// Medians over steady steps (NaN where a side has none).
    pub before_s: f64,
    pub after_s: f64,
    /// after / before, with its 95% interval.
    pub ratio: Interval,
    pub p_value: f64,
    /// The p-value adjusted over the whole comparison (Benjamini-Hochberg).
    pub q_value: f64,
    /// Steady steps on each side.
    pub steps: (usize, usize),
    pub verdict: Verdict,
    /// Why, for every verdict but a plain change.
    pub reason: String,
}

/// The test of one phase, its verdict still to be given by [`give_verdicts`].
pub(crate) fn test(
    point: &str,
    phase: &str,
    before: &[f64],
    after: &[f64],
    step_before_s: f64,
) -> (PhaseChange, f64) {
    let test = block_bootstrap_ratio(before, after);
    let change = PhaseChange {
        point: point.into(),
        phase: phase.into(),
        before_s: median(before),
        after_s: median(after),
        ratio: test.ratio,
        p_value: test.p_value,
        q_value: f64::NAN,
        steps: (before.len(), after.len()),
        verdict: Verdict::InsufficientEvidence,
        reason: String::new(),
    };
    (change, step_before_s)
}

/// Adjusts the p-values of every tested change together and gives each its verdict. `tests`
/// pairs each change with its point's median step time before (the scale of `min_step_share`).
pub(crate) fn give_verdicts(
    tests: Vec<(PhaseChange, f64)>,
    options: &CompareOptions,
) -> Vec<PhaseChange> {
    let enough = |c: &PhaseChange| c.steps.0 >= options.min_steps && c.steps.1 >= options.min_steps;
    let tested: Vec<usize> = (0..tests.len()).filter(|&i| enough(&tests[i].0)).collect();
    let p: Vec<f64> = tested.iter().map(|&i| tests[i].0.p_value).collect();
    let q = if p.is_empty() {
        Vec::new()
    } else {
        adjustp::adjust(&p, adjustp::Procedure::BenjaminiHochberg)
    };
    let mut q_of = vec![f64::NAN; tests.len()];
    for (&i, q) in tested.iter().zip(q) {
        q_of[i] = q;
    }
    tests
        .into_iter()
        .zip(q_of)
        .map(|((mut c, step_s), q)| {
            c.q_value = q;
            (c.verdict, c.reason) = verdict(&c, step_s, options);
            c
        })
        .collect()
}

fn verdict(c: &PhaseChange, step_before_s: f64, o: &CompareOptions) -> (Verdict, String) {
    if c.steps.0 < o.min_steps || c.steps.1 < o.min_steps {
        let why = format!(
            "{} and {} steady steps; at least {} a side",
            c.steps.0, c.steps.1, o.min_steps
        );
        return (Verdict::InsufficientEvidence, why);
    }
    let r = c.ratio;
    // A change matters when it is large for the phase and for the step it is part of.
    let matters = |ratio: f64| {
        (ratio - 1.0).abs() >= o.min_effect
            && (ratio - 1.0).abs() * c.before_s >= o.min_step_share * step_before_s
    };
    if c.q_value <= o.fdr && matters(r.estimate) {
        let verdict = if r.estimate > 1.0 { Verdict::Regressed } else { Verdict::Improved };
        return (verdict, String::new());
    }
    let interval = format!("95% interval {:.3}-{:.3}", r.low, r.high);
    if !matters(r.low) && !matters(r.high) {
        let why = if c.q_value <= o.fdr {
            format!("a change smaller than the minimum effect ({interval})")
        } else {
            format!("no change of the minimum effect ({interval}, q = {:.2})", c.q_value)
        };
        return (Verdict::Indistinguishable, why);
    }
    let why = format!(
        "the {interval} can neither show nor rule out a change of {:.0}% (q = {:.2})",
        o.min_effect * 100.0,
        c.q_value
    );
    (Verdict::InsufficientEvidence, why)
}
