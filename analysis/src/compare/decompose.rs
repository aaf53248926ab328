//! Where a point's step-time change went: the change of the mean steady step of the slowest
//! rank, split into the critical path's components (see [`breakdown`](crate::breakdown)):
//! compute (forward, backward, recompute), the exposed waits for each collective kind, data,
//! the optimizer, and time in no phase. Means, not medians, because means add up: the parts
//! sum to the step's change exactly.

use crate::summary::PointSummary;

/// One component's change, in seconds, as a share of the step's change, and in points of the
/// step before (`delta_s / step_before_s`, so 0.05 is "5 points of the step").
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Part {
    pub component: String,
    pub before_s: f64,
    pub after_s: f64,
    pub delta_s: f64,
    pub share_of_change: f64,
    pub points_of_step: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decomposition {
    pub point: String,
    pub step_before_s: f64,
    pub step_after_s: f64,
    pub parts: Vec<Part>,
}

impl Decomposition {
    /// The relative change of the mean step (0.07: 7% slower).
    pub fn step_change(&self) -> f64 {
        self.step_after_s / self.step_before_s - 1.0
    }

    /// The part that moved most in the step's direction.
    pub fn largest(&self) -> Option<&Part> {
        let sign = (self.step_after_s - self.step_before_s).signum();
        self.parts.iter().max_by(|a, b| (a.delta_s * sign).total_cmp(&(b.delta_s * sign)))
    }
}

/// Compute is one component here: forward, backward and recompute move together when the
/// device or its libraries change.
fn grouped(summary: &PointSummary) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (name, value) in &summary.breakdown.critical_path {
        let name = match name.as_str() {
            "forward" | "backward" | "recompute" => "compute".to_string(),
            other => other.to_string(),
        };
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v += value,
            None => out.push((name, *value)),
        }
    }
    out
}

/// The decomposition of `after`'s change from `before`; `None` where a side has no steady step.
pub fn decompose(before: &PointSummary, after: &PointSummary) -> Option<Decomposition> {
    let (b, a) = (before.breakdown.step_s_mean, after.breakdown.step_s_mean);
    if !(b.is_finite() && a.is_finite()) || b <= 0.0 {
        return None;
    }
    let (parts_b, parts_a) = (grouped(before), grouped(after));
    let mut names: Vec<String> = parts_b.iter().map(|p| p.0.clone()).collect();
    names
        .extend(parts_a.iter().map(|p| p.0.clone()).filter(|n| !parts_b.iter().any(|p| p.0 == *n)));
    let value = |parts: &[(String, f64)], name: &str| {
        parts.iter().find(|p| p.0 == name).map_or(0.0, |p| p.1)
    };
    let parts = names
        .into_iter()
        .map(|component| {
            let (before_s, after_s) = (value(&parts_b, &component), value(&parts_a, &component));
            let delta_s = after_s - before_s;
            Part {
                share_of_change: delta_s / (a - b),
                points_of_step: delta_s / b,
                component,
                before_s,
                after_s,
                delta_s,
            }
        })
        .collect();
    Some(Decomposition {
        point: before.meta.point.clone(),
        step_before_s: b,
        step_after_s: a,
        parts,
    })
}
