//! What two result sets ran with, and what of it changed: versions, the libraries the ranks
//! loaded, drivers, environment modules and the environment variables that change behaviour,
//! each difference classed as declared (the upgrade under study), undeclared (refused unless
//! allowed) or informational (where the points ran: shown, never refused). Per-job
//! bookkeeping (job ids, PMIx endpoints, session folders) is not part of the environment.

use std::collections::{BTreeMap, BTreeSet};

use shardsweep_records::Fingerprint;

use crate::load::PointRecords;

/// Environment variables that change how a run behaves, by prefix: MPI transport, matching
/// and collective selections (Open MPI's MCA frameworks `btl`, `pml`, `mtl`, `coll`, `osc`,
/// `op`, `mpi_` settings, binding and mapping policies; Cray MPICH's `MPICH_`; UCX), NCCL and
/// RCCL, libfabric (`FI_`), thread counts (OpenMP, MKL, OpenBLAS and their runtimes), the
/// PyTorch, CUDA and ROCm runtimes, and the harness's planted slow network. Everything else a
/// launcher sets is bookkeeping that differs between any two runs (Open MPI's job ids, session
/// folders, `OMPI_COMMAND`/`OMPI_ARGV`, PMIx endpoints, Slurm's job ids and node lists) and is
/// not compared.
pub const BEHAVIOUR_ENV: [&str; 32] = [
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
    "SHARDSWEEP_SLOW_COLLECTIVE",
];

/// Fields that say where a point ran rather than with what: shown when they differ, never a
/// reason to refuse a comparison.
pub const INFORMATIONAL: [&str; 1] = ["nodes"];

/// How a difference counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Named in `--declared`: the change under study.
    Declared,
    /// Changed too, and not declared: the comparison is refused unless allowed.
    Undeclared,
    /// Where the points ran ([`INFORMATIONAL`]).
    Informational,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::Declared => "declared",
            Change::Undeclared => "NOT declared",
            Change::Informational => "informational",
        }
    }
}

/// One difference between the two environments.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvDifference {
    pub field: String,
    pub before: String,
    pub after: String,
    pub change: Change,
}

/// A point's environment as field -> value: `torch_version`, `comm_library`, `git_commit`,
/// `binary_version`; `library <name>` for every library rank 0 loaded (its version, or its
/// size where none is known, and its resolved path); `driver <name>`; `modules`; the
/// variables of [`BEHAVIOUR_ENV`]; and `nodes`, the sorted host names.
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
    let fingerprint: Fingerprint =
        serde_json::from_value(p["fingerprint"].clone()).unwrap_or_default();
    for library in &fingerprint.libraries {
        let version =
            library.version.clone().unwrap_or_else(|| format!("{} bytes", library.size_bytes));
        let value = format!("{version} ({})", library.path);
        env.entry(format!("library {}", library.name))
            .and_modify(|v: &mut String| *v = format!("{v}, {value}"))
            .or_insert(value);
    }
    for (driver, version) in &fingerprint.drivers {
        env.insert(format!("driver {driver}"), version.clone());
    }
    if !fingerprint.modules.is_empty() {
        env.insert("modules".into(), fingerprint.modules.join(" "));
    }
    let hosts: BTreeSet<&String> = point.hostnames.iter().filter(|h| !h.is_empty()).collect();
    env.insert("nodes".into(), hosts.into_iter().cloned().collect::<Vec<_>>().join(","));
    env
}

/// A result set's environment: each field's values over its points, joined with " | " where
/// the points differ among themselves (a sweep partly re-run after the upgrade shows it).
pub fn sweep_environment<'a>(
    points: impl IntoIterator<Item = &'a PointRecords>,
) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for point in points {
        for (k, v) in environment(point) {
            values.entry(k).or_default().insert(v);
        }
    }
    values.into_iter().map(|(k, v)| (k, v.into_iter().collect::<Vec<_>>().join(" | "))).collect()
}

/// The fields whose values differ, each classed; `declared` names fields (a trailing `*`
/// matches a prefix: `library libnccl*`, `NCCL_*`).
pub fn environment_diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    declared: &[String],
) -> Vec<EnvDifference> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let is_declared = |k: &str| {
        declared.iter().any(|d| d.strip_suffix('*').map_or(d == k, |prefix| k.starts_with(prefix)))
    };
    let unset = || "(unset)".to_string();
    keys.into_iter()
        .filter_map(|k| {
            let (b, a) = (
                before.get(k).cloned().unwrap_or_else(unset),
                after.get(k).cloned().unwrap_or_else(unset),
            );
            let change = if is_declared(k) {
                Change::Declared
            } else if INFORMATIONAL.contains(&k.as_str()) {
                Change::Informational
            } else {
                Change::Undeclared
            };
            (b != a).then(|| EnvDifference { field: k.clone(), before: b, after: a, change })
        })
        .collect()
}
