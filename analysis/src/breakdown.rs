//! Where a step's time goes: compute (forward, backward, recompute), communication that compute
//! waited for (by collective kind), data loading, the optimizer, and the rest.
//!
//! Two views, each the mean over steady steps (a point without a steady step has every
//! component NaN, no figure, which the tables write as empty and the report as "n/a", never 0):
//! - **critical path**: the phases of the rank whose step was longest, step by step. They add
//!   up to that rank's step time exactly (`other` is its time in no phase).
//! - **max over ranks**: each component's largest time over ranks (Megatron's timers' max). An
//!   upper bound per component; the components need not add up to a step.

use std::collections::BTreeMap;

use crate::stats::mean;

/// Components in display order, each in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Breakdown {
    pub critical_path: Vec<(String, f64)>,
    pub max_over_ranks: Vec<(String, f64)>,
    /// Mean steady step time of the slowest rank: what the critical path adds up to.
    pub step_s_mean: f64,
}

/// Components from per-phase series (phase -> time in each steady step). Without a steady
/// step (no `step` series, or an empty one) every component is NaN: a mean over no step is no
/// figure, not 0 s.
pub fn breakdown(
    critical: &BTreeMap<String, Vec<f64>>,
    max_over_ranks: &BTreeMap<String, Vec<f64>>,
) -> Breakdown {
    let steady = critical.get("step").is_some_and(|s| !s.is_empty());
    let step_s_mean = if steady { mean(&critical["step"]) } else { f64::NAN };
    let view = |phases, with_other| {
        let mut parts = components(phases, with_other);
        if !steady {
            parts.iter_mut().for_each(|(_, v)| *v = f64::NAN);
        }
        parts
    };
    Breakdown {
        critical_path: view(critical, true),
        max_over_ranks: view(max_over_ranks, false),
        step_s_mean,
    }
}

fn components(phases: &BTreeMap<String, Vec<f64>>, with_other: bool) -> Vec<(String, f64)> {
    let m = |name: &str| phases.get(name).filter(|s| !s.is_empty()).map_or(0.0, |s| mean(s));
    let recompute = m("recompute");
    let mut out = vec![
        ("data".to_string(), m("data")),
        ("forward".to_string(), m("forward")),
        // Recomputation happens inside backward; shown on its own.
        ("backward".to_string(), (m("backward") - recompute).max(0.0)),
        ("recompute".to_string(), recompute),
    ];
    let kinds: Vec<&String> = phases.keys().filter(|p| p.starts_with("comm.")).collect();
    let by_kind: f64 = kinds.iter().map(|k| m(k)).sum();
    out.extend(kinds.iter().map(|k| (format!("exposed {}", k.trim_start_matches("comm.")), m(k))));
    // Waits not attributed to a kind (records without per-collective rows).
    let unattributed = m("comm") - by_kind;
    if unattributed.abs() > 1e-12 {
        out.push(("exposed comm (other)".to_string(), unattributed.max(0.0)));
    }
    out.push(("optimizer".to_string(), m("optimizer")));
    if with_other {
        let accounted: f64 = out.iter().map(|c| c.1).sum();
        out.push(("other".to_string(), m("step") - accounted));
    }
    out
}
