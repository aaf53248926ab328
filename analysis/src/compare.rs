//! Before and after: the same points run twice (a system upgrade between them). Points are
//! matched by id and configuration digest; every phase gets the ratio of medians (after /
//! before) with a bootstrap interval and a Mann-Whitney p-value, and a verdict only when the
//! change is clear: the interval excludes 1, p < alpha, and the change is at least
//! `min_effect`. Overlapping noise is "no significant change", never "faster".
//!
//! Two result sets are comparable only if their environments (library versions, git commit,
//! environment variables that change behaviour) differ in declared fields alone: the upgrade
//! under study.

use shardsweep_records::Outcome;
use std::collections::{BTreeMap, BTreeSet};

use crate::load::PointRecords;
use crate::stats::{mann_whitney_p, median, median_ratio, Interval};
use crate::summary::PointSummary;
use crate::AnalysisError;

#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Fields allowed to differ: `torch_version`, `comm_library`, `git_commit`,
    /// `binary_version`, or an environment variable (a trailing `*` matches a prefix).
    pub declared: Vec<String>,
    /// Compare anyway, with undeclared differences flagged in the report.
    pub allow_undeclared: bool,
    pub alpha: f64,
    /// Smallest relative change given a verdict (0.01 = 1%).
    pub min_effect: f64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self { declared: Vec::new(), allow_undeclared: false, alpha: 0.01, min_effect: 0.01 }
    }
}

/// One difference between the two environments.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvDifference {
    pub field: String,
    pub before: String,
    pub after: String,
    pub declared: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Slower,
    Faster,
    NoSignificantChange,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Slower => "slower",
            Verdict::Faster => "faster",
            Verdict::NoSignificantChange => "no significant change",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PhaseChange {
    pub point: String,
    pub phase: String,
    pub before_s: f64,
    pub after_s: f64,
    /// after / before, with its 95% interval.
    pub ratio: Interval,
    pub p_value: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
pub struct Comparison {
    pub environment: Vec<EnvDifference>,
    pub changes: Vec<PhaseChange>,
    /// Points not compared, each with the reason: in only one set, configurations or outcomes
    /// that differ, or no steady-state step on a side.
    pub unmatched: Vec<(String, String)>,
}

/// Environment variables that change how a run behaves, by prefix: MPI transport, matching
/// and collective selections (Open MPI's MCA frameworks `btl`, `pml`, `mtl`, `coll`, `osc`,
/// `op`, `mpi_` settings, binding and mapping policies; Cray MPICH's `MPICH_`; UCX), NCCL and
/// RCCL, libfabric (`FI_`), thread counts (OpenMP, MKL, OpenBLAS and their runtimes), and the
/// PyTorch, CUDA and ROCm runtimes. Everything else a launcher sets is bookkeeping that differs
/// between any two runs (Open MPI's job ids, session folders, `OMPI_COMMAND`/`OMPI_ARGV`,
/// PMIx endpoints, Slurm's job ids and node lists) and is not compared.
pub const BEHAVIOUR_ENV: [&str; 31] = [
    "OMPI_MCA_btl",
    "OMPI_MCA_pml",
    "OMPI_MCA_mtl",
    "OMPI_MCA_coll",
    "OMPI_MCA_osc",
    "OMPI_MCA_op",
    "OMPI_MCA_mpi_",
    "OMPI_MCA_hwloc_base_binding_policy",
    "OMPI_MCA_rmaps_base_mapping_policy",
    "MPICH_",
    "UCX_",
    "NCCL_",
    "RCCL_",
    "FI_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "KMP_",
    "GOMP_",
    "TORCH_",
    "PYTORCH_",
    "CUDA_",
    "HIP_",
    "HSA_",
    "ROCR_",
    "MIOPEN_",
    "SLURM_CPUS_PER_TASK",
    "SLURM_CPU_BIND",
    "SLURM_THREADS_PER_CORE",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_GPUS_PER_TASK",
];

/// The environment of a result set, from one of its points' manifest, as field -> value:
/// versions and the variables of [`BEHAVIOUR_ENV`].
pub fn environment(point: &PointRecords) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let p = &point.provenance;
    for field in ["torch_version", "comm_library", "git_commit", "binary_version"] {
        env.insert(field.to_string(), p[field].as_str().unwrap_or_default().to_string());
    }
    for (k, v) in p["env"].as_object().into_iter().flatten() {
        if BEHAVIOUR_ENV.iter().any(|prefix| k.starts_with(prefix)) {
            env.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    env
}

pub fn environment_diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    declared: &[String],
) -> Vec<EnvDifference> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let is_declared = |k: &str| {
        declared.iter().any(|d| d.strip_suffix('*').map_or(d == k, |prefix| k.starts_with(prefix)))
    };
    keys.into_iter()
        .filter_map(|k| {
            let (b, a) = (
                before.get(k).cloned().unwrap_or_else(|| "(unset)".into()),
                after.get(k).cloned().unwrap_or_else(|| "(unset)".into()),
            );
            (b != a).then(|| EnvDifference {
                field: k.clone(),
                before: b,
                after: a,
                declared: is_declared(k),
            })
        })
        .collect()
}

/// Compares two summarised result sets.
pub fn compare(
    before: &[PointSummary],
    after: &[PointSummary],
    options: &CompareOptions,
) -> Result<Comparison, AnalysisError> {
    let env = |s: &[PointSummary]| s.first().map(|p| environment(&p.meta)).unwrap_or_default();
    let environment = environment_diff(&env(before), &env(after), &options.declared);
    if !options.allow_undeclared && environment.iter().any(|d| !d.declared) {
        return Err(AnalysisError::EnvironmentDiffers(
            environment
                .iter()
                .filter(|d| !d.declared)
                .map(|d| format!("{}: {:?} -> {:?}", d.field, d.before, d.after))
                .collect(),
        ));
    }
    let after_by_id: BTreeMap<&str, &PointSummary> =
        after.iter().map(|p| (p.meta.point.as_str(), p)).collect();
    let mut changes = Vec::new();
    let mut unmatched = Vec::new();
    for b in before {
        let Some(a) = after_by_id.get(b.meta.point.as_str()) else {
            unmatched.push((b.meta.point.clone(), "only in BEFORE".into()));
            continue;
        };
        if a.meta.digest != b.meta.digest {
            unmatched.push((b.meta.point.clone(), "configuration differs".into()));
            continue;
        }
        if a.meta.outcome != Outcome::Ok || b.meta.outcome != Outcome::Ok {
            unmatched.push((
                b.meta.point.clone(),
                format!("outcome {} before, {} after", b.meta.outcome, a.meta.outcome),
            ));
            continue;
        }
        // A side without a steady step has no sample to compare (its medians would be NaN).
        let without: Vec<String> = [("before", b), ("after", *a)]
            .iter()
            .filter_map(|(side, p)| Some(format!("{side}: {}", p.no_figures_reason()?)))
            .collect();
        if !without.is_empty() {
            unmatched.push((b.meta.point.clone(), without.join("; ")));
            continue;
        }
        for (phase, xs) in &b.phase_s {
            let Some(ys) = a.phase_s.get(phase) else { continue };
            if xs.is_empty() || ys.is_empty() || median(xs) <= 0.0 {
                continue;
            }
            changes.push(judge(&b.meta.point, phase, xs, ys, options));
        }
    }
    let before_ids: BTreeSet<&str> = before.iter().map(|b| b.meta.point.as_str()).collect();
    for a in after.iter().filter(|a| !before_ids.contains(a.meta.point.as_str())) {
        unmatched.push((a.meta.point.clone(), "only in AFTER".into()));
    }
    if changes.is_empty() {
        return Err(AnalysisError::NothingCompared(
            unmatched.iter().map(|(point, why)| format!("{point}: {why}")).collect(),
        ));
    }
    Ok(Comparison { environment, changes, unmatched })
}

/// The verdict on one phase of one point.
pub fn judge(
    point: &str,
    phase: &str,
    before: &[f64],
    after: &[f64],
    options: &CompareOptions,
) -> PhaseChange {
    let ratio = median_ratio(before, after);
    let p_value = mann_whitney_p(before, after);
    let clear = p_value < options.alpha
        && !ratio.contains(1.0)
        && (ratio.estimate - 1.0).abs() >= options.min_effect;
    let verdict = match (clear, ratio.estimate > 1.0) {
        (false, _) => Verdict::NoSignificantChange,
        (true, true) => Verdict::Slower,
        (true, false) => Verdict::Faster,
    };
    PhaseChange {
        point: point.into(),
        phase: phase.into(),
        before_s: median(before),
        after_s: median(after),
        ratio,
        p_value,
        verdict,
    }
}
