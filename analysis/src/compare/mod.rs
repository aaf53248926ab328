//! Before and after: the same points run twice, a system upgrade between them (a new ROCm,
//! RCCL, libfabric plugin, driver, PyTorch). Points are matched by id and configuration
//! digest. A comparison says, in order:
//!
//! 1. **what changed** in the environment ([`environment`]): declared changes, anything else
//!    that changed (refused unless allowed), and where the points ran;
//! 2. **a verdict per point and metric** ([`verdict`]): regressed, improved,
//!    indistinguishable or insufficient evidence, with the false-discovery rate controlled
//!    over the whole comparison;
//! 3. **where the change is** ([`decompose`]): each point's step change split into compute,
//!    exposed collectives, data and optimizer, and its collectives' bus bandwidth against
//!    message size ([`busbw`]);
//! 4. **what it does to the decision** ([`decision`]): the best configuration per (model,
//!    nodes), and points that finished before and not after.

pub mod busbw;
pub mod decision;
pub mod decompose;
pub mod environment;
pub mod verdict;

use std::collections::BTreeMap;

use shardsweep_records::Outcome;

pub use busbw::BandwidthChange;
pub use decision::{BestChange, OutcomeChange};
pub use decompose::Decomposition;
pub use environment::{
    environment, environment_diff, sweep_environment, Change, EnvDifference, BEHAVIOUR_ENV,
};
pub use verdict::{PhaseChange, Verdict};

use crate::stats::{median, Interval};
use crate::summary::PointSummary;
use crate::AnalysisError;

#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Fields allowed to differ: `torch_version`, `comm_library`, `git_commit`,
    /// `binary_version`, `library <name>`, `driver <name>`, `modules`, or an environment
    /// variable (a trailing `*` matches a prefix).
    pub declared: Vec<String>,
    /// Compare anyway, with undeclared differences flagged in the report.
    pub allow_undeclared: bool,
    /// The false-discovery rate controlled over every test of the comparison.
    pub fdr: f64,
    /// Smallest relative change of a metric given a verdict of change (0.05 = 5%).
    pub min_effect: f64,
    /// Smallest change of a phase, as a share of its point's step time, given such a verdict:
    /// a phase of 0.1% of the step that doubles is not a regression of the point.
    pub min_step_share: f64,
    /// Fewest steady steps a side needs for any verdict but "insufficient evidence".
    pub min_steps: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            declared: Vec::new(),
            allow_undeclared: false,
            fdr: 0.05,
            min_effect: 0.05,
            min_step_share: 0.01,
            min_steps: 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Comparison {
    pub environment: Vec<EnvDifference>,
    pub changes: Vec<PhaseChange>,
    pub decompositions: Vec<Decomposition>,
    pub bandwidth: Vec<BandwidthChange>,
    pub best: Vec<BestChange>,
    pub outcomes: Vec<OutcomeChange>,
    /// One sentence per point whose step changed: how much, and where.
    pub findings: Vec<String>,
    /// Points not compared, each with the reason: in only one set, configurations that
    /// differ, neither side finished, or no steady-state step on a side.
    pub unmatched: Vec<(String, String)>,
}

impl Comparison {
    /// How many metrics got each verdict, in [`Verdict`]'s order.
    pub fn counts(&self) -> [(Verdict, usize); 4] {
        [
            Verdict::Regressed,
            Verdict::Improved,
            Verdict::Indistinguishable,
            Verdict::InsufficientEvidence,
        ]
        .map(|v| (v, self.changes.iter().filter(|c| c.verdict == v).count()))
    }

    pub fn regressed(&self) -> bool {
        self.changes.iter().any(|c| c.verdict == Verdict::Regressed)
    }

    /// Each compared point's verdict on its step: its `step` change, or its `outcome` change
    /// for a point that finished on one side only (a point has one or the other).
    pub fn step_verdicts(&self) -> BTreeMap<&str, &PhaseChange> {
        self.changes
            .iter()
            .filter(|x| x.phase == "step" || x.phase == "outcome")
            .map(|x| (x.point.as_str(), x))
            .collect()
    }
}

/// Compares two summarised result sets.
///
/// # Errors
/// [`AnalysisError::EnvironmentDiffers`] if fields changed that were not declared (and
/// `allow_undeclared` is off); [`AnalysisError::NothingCompared`] if no point matched;
/// record errors of a point's collectives.
pub fn compare(
    before: &[PointSummary],
    after: &[PointSummary],
    options: &CompareOptions,
) -> Result<Comparison, AnalysisError> {
    let env = |s: &[PointSummary]| sweep_environment(s.iter().map(|p| &p.meta));
    let environment = environment_diff(&env(before), &env(after), &options.declared);
    if !options.allow_undeclared && environment.iter().any(|d| d.change == Change::Undeclared) {
        return Err(AnalysisError::EnvironmentDiffers(
            environment
                .iter()
                .filter(|d| d.change == Change::Undeclared)
                .map(|d| format!("{}: {:?} -> {:?}", d.field, d.before, d.after))
                .collect(),
        ));
    }
    let after_by_id: BTreeMap<&str, &PointSummary> =
        after.iter().map(|p| (p.meta.point.as_str(), p)).collect();
    let mut comparison = Comparison {
        environment,
        changes: Vec::new(),
        decompositions: Vec::new(),
        bandwidth: Vec::new(),
        best: decision::best_changes(before, after),
        outcomes: Vec::new(),
        findings: Vec::new(),
        unmatched: Vec::new(),
    };
    let mut tests = Vec::new();
    for b in before {
        let point = b.meta.point.clone();
        let Some(a) = after_by_id.get(point.as_str()).copied() else {
            comparison.unmatched.push((point, "only in BEFORE".into()));
            continue;
        };
        if a.meta.digest != b.meta.digest {
            comparison.unmatched.push((point, "configuration differs".into()));
            continue;
        }
        let (ok_before, ok_after) = (b.meta.outcome == Outcome::Ok, a.meta.outcome == Outcome::Ok);
        if ok_before != ok_after {
            comparison.outcomes.push(OutcomeChange {
                point: point.clone(),
                before: b.meta.outcome,
                after: a.meta.outcome,
            });
            comparison.changes.push(outcome_change(&point, b.meta.outcome, a.meta.outcome));
            continue;
        }
        if !ok_before {
            let why = format!("outcome {} before, {} after", b.meta.outcome, a.meta.outcome);
            comparison.unmatched.push((point, why));
            continue;
        }
        // A side without a steady step has no sample to compare (its medians would be NaN).
        let without: Vec<String> = [("before", b), ("after", a)]
            .iter()
            .filter_map(|(side, p)| Some(format!("{side}: {}", p.no_figures_reason()?)))
            .collect();
        if !without.is_empty() {
            comparison.unmatched.push((point, without.join("; ")));
            continue;
        }
        let step_before_s = median(&b.step_s);
        for (phase, xs) in &b.phase_s {
            let Some(ys) = a.phase_s.get(phase) else { continue };
            if xs.is_empty() || ys.is_empty() || median(xs) <= 0.0 {
                continue;
            }
            tests.push(verdict::test(&point, phase, xs, ys, step_before_s));
        }
        comparison.decompositions.extend(decompose::decompose(b, a));
        let (bw_b, bw_a) = (
            busbw::bandwidths(&b.meta.dir, b.steady_from)?,
            busbw::bandwidths(&a.meta.dir, a.steady_from)?,
        );
        comparison.bandwidth.extend(busbw::pair(&point, &bw_b, &bw_a));
    }
    let before_by_id: BTreeMap<&str, &PointSummary> =
        before.iter().map(|p| (p.meta.point.as_str(), p)).collect();
    for a in after.iter().filter(|a| !before_by_id.contains_key(a.meta.point.as_str())) {
        comparison.unmatched.push((a.meta.point.clone(), "only in AFTER".into()));
    }
    comparison.changes.extend(verdict::give_verdicts(tests, options));
    if comparison.changes.is_empty() {
        return Err(AnalysisError::NothingCompared(
            comparison.unmatched.iter().map(|(point, why)| format!("{point}: {why}")).collect(),
        ));
    }
    comparison.findings = findings(&comparison, &before_by_id, options);
    Ok(comparison)
}

/// A point that finished on one side only: its outcome regressed or improved, on evidence
/// (both manifests), with no interval to give.
fn outcome_change(point: &str, before: Outcome, after: Outcome) -> PhaseChange {
    let regressed = before == Outcome::Ok;
    PhaseChange {
        point: point.into(),
        phase: "outcome".into(),
        before_s: f64::NAN,
        after_s: f64::NAN,
        ratio: Interval { estimate: f64::NAN, low: f64::NAN, high: f64::NAN },
        p_value: f64::NAN,
        q_value: f64::NAN,
        steps: (0, 0),
        verdict: if regressed { Verdict::Regressed } else { Verdict::Improved },
        reason: format!("{} before, {} after", before.name(), after.name()),
    }
}

/// "AFTER is 7.0% slower at 2 nodes (p1); 5.1 points of it are exposed reduce_scatter, at
/// 64 MiB-256 MiB, where bus bandwidth fell 18%."
fn findings(
    c: &Comparison,
    before: &BTreeMap<&str, &PointSummary>,
    options: &CompareOptions,
) -> Vec<String> {
    let verdicts = c.step_verdicts();
    let changed = |point: &str| {
        verdicts.get(point).is_some_and(|x| x.phase == "step" && x.verdict.is_change())
    };
    c.decompositions
        .iter()
        .filter(|d| changed(&d.point))
        .map(|d| {
            let nodes = before.get(d.point.as_str()).map_or(0, |p| p.meta.nodes);
            let change = d.step_change();
            let size = if change.abs() >= 1.0 {
                format!("{:.1}x", d.step_after_s / d.step_before_s)
            } else {
                format!("{:.1}%", change.abs() * 100.0)
            };
            let mut line = format!(
                "AFTER is {size} {} at {nodes} node{} ({})",
                if change > 0.0 { "slower" } else { "faster" },
                if nodes == 1 { "" } else { "s" },
                d.point
            );
            if let Some(part) = d.largest() {
                line += &format!(
                    "; {:.1} points of it are {}",
                    part.points_of_step.abs() * 100.0,
                    part.component
                );
                let kind = part.component.strip_prefix("exposed ").unwrap_or_default();
                let of_point: Vec<BandwidthChange> =
                    c.bandwidth.iter().filter(|b| b.point == d.point).cloned().collect();
                if let Some((low, high, ratio)) = busbw::band(&of_point, kind, options.min_effect) {
                    let sizes = if low == high {
                        busbw::size(low)
                    } else {
                        format!("{}-{}", busbw::size(low), busbw::size(high))
                    };
                    line += &format!(
                        ", at {sizes}, where bus bandwidth {} {:.0}%",
                        if ratio < 1.0 { "fell" } else { "rose" },
                        (ratio - 1.0).abs() * 100.0
                    );
                }
            }
            line + "."
        })
        .collect()
}
