//! A system profile: what the harness must know of a Slurm cluster to plan, pack and render
//! batch jobs for it. A system is two files in the systems folder (`slurm/` by default):
//! `<name>.toml` (this struct) and the batch-script template it names (`<name>.sh.j2`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SlurmError;
use crate::plan::{Machine, PointSpec, SystemSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    pub name: String,
    pub description: String,
    /// The batch-script template, beside this file (default `<name>.sh.j2`).
    #[serde(default)]
    pub template: Option<String>,
    /// Ranks (one per GPU, or per CPU slot) a node can take.
    pub ranks_per_node: u32,
    /// Largest allocation the system grants.
    pub max_nodes: u32,
    /// Memory each rank has to itself (a GPU's memory), for the plan's fit check.
    pub memory_per_rank_bytes: u64,
    /// Peak FLOP/s of one rank's device by compute type (`bf16`, `fp32`), for MFU; with the
    /// source of each figure in `peak_source`.
    #[serde(default)]
    pub peak_flop_per_s: BTreeMap<String, f64>,
    #[serde(default)]
    pub peak_source: String,
    /// Charged project (`#SBATCH --account`); `--account` on the command line overrides it.
    #[serde(default)]
    pub account: Option<String>,
    /// Submission refuses to go on without an account.
    #[serde(default)]
    pub account_required: bool,
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub qos: Option<String>,
    /// Walltime limits by job size: the first entry whose `max_nodes` covers a job applies.
    pub queue_limits: Vec<QueueLimit>,
    /// Start-up time each point adds to a job's walltime (launch, MPI and device init).
    #[serde(default)]
    pub point_overhead_s: u64,
    /// At most this many points in one job (none: as many as its walltime allows).
    #[serde(default)]
    pub max_points_per_job: Option<u32>,
    /// Arguments of every `srun` that starts a point's ranks (binding, MPI plugin).
    #[serde(default)]
    pub srun_args: Vec<String>,
    /// Extra `#SBATCH` options, one per entry (e.g. `--core-spec=8`).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    #[serde(default)]
    pub modules: Vec<String>,
    /// Exported in every job, in this order (values are quoted when rendered).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Where the libfabric network plugin for RCCL/NCCL lives (prepended to LD_LIBRARY_PATH).
    #[serde(default)]
    pub libfabric_plugin_path: Option<String>,
    /// Hardware figures for the performance model (`predict`, `calibrate`).
    #[serde(default)]
    pub performance: Option<crate::predict::Hardware>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueLimit {
    pub max_nodes: u32,
    pub max_walltime_s: u64,
}

/// Profiles that ship inside the binary, so `submit --system frontier` works from any folder.
const BUILT_IN: [(&str, &str, &str); 3] = [
    (
        "frontier",
        include_str!("../../../slurm/frontier.toml"),
        include_str!("../../../slurm/frontier.sh.j2"),
    ),
    (
        "generic",
        include_str!("../../../slurm/generic.toml"),
        include_str!("../../../slurm/generic.sh.j2"),
    ),
    (
        "local",
        include_str!("../../../slurm/local.toml"),
        include_str!("../../../slurm/local.sh.j2"),
    ),
];

impl System {
    /// Loads system `name` from `dir` (`<name>.toml` and its template), or a built-in profile
    /// if `dir` has none. Returns the profile and its template's text.
    pub fn load(name: &str, dir: &Path) -> Result<(System, String), SlurmError> {
        if !super::safe_name(name) {
            return Err(SlurmError::UnsafeName { what: "system", name: name.into() });
        }
        let path = dir.join(format!("{name}.toml"));
        let (system, template_text, template_path) = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let system = parse(&text, &path)?;
                let template = dir.join(system.template_file());
                let body = std::fs::read_to_string(&template).map_err(|e| SlurmError::Io {
                    path: template.display().to_string(),
                    source: e,
                })?;
                (system, body, template)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (_, text, template) =
                    BUILT_IN.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
                        SlurmError::UnknownSystem {
                            name: name.into(),
                            dir: dir.display().to_string(),
                            built_in: BUILT_IN
                                .iter()
                                .map(|(n, _, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", "),
                        }
                    })?;
                (
                    parse(text, &path)?,
                    template.to_string(),
                    PathBuf::from(format!("(built-in {name}.sh.j2)")),
                )
            }
            Err(e) => return Err(SlurmError::Io { path: path.display().to_string(), source: e }),
        };
        system.check(&path)?;
        tracing::debug!(system = name, template = %template_path.display(), "system profile loaded");
        Ok((system, template_text))
    }

    pub fn template_file(&self) -> String {
        self.template.clone().unwrap_or_else(|| format!("{}.sh.j2", self.name))
    }

    /// The walltime limit for a job of `nodes` nodes, if the system takes such a job.
    pub fn walltime_limit_s(&self, nodes: u32) -> Option<u64> {
        (nodes <= self.max_nodes)
            .then(|| {
                self.queue_limits.iter().find(|q| nodes <= q.max_nodes).map(|q| q.max_walltime_s)
            })
            .flatten()
    }

    /// What a point records of the system it ran on: its name and the peak for its compute type.
    pub fn spec_for(&self, point: &PointSpec) -> SystemSpec {
        SystemSpec {
            name: self.name.clone(),
            peak_flop_per_s: self.peak_flop_per_s.get(point.parallel.param_dtype.name()).copied(),
            peak_source: self.peak_source.clone(),
        }
    }

    /// The performance model's hardware figures: the profile's, or a CPU stand-in.
    pub fn hardware(&self) -> crate::predict::Hardware {
        self.performance.clone().unwrap_or_else(crate::predict::Hardware::fallback)
    }

    /// What the planner checks points against: each rank has its device's memory.
    pub fn machine(&self) -> Machine {
        Machine { memory_bytes: self.memory_per_rank_bytes, per_rank: true }
    }

    fn check(&self, path: &Path) -> Result<(), SlurmError> {
        let mut problems = Vec::new();
        if !super::safe_name(&self.name) {
            problems.push(format!("name {:?}: use letters, digits, '.', '_' and '-'", self.name));
        }
        if self.ranks_per_node == 0 || self.max_nodes == 0 {
            problems.push("ranks_per_node and max_nodes must be at least 1".into());
        }
        if self.queue_limits.is_empty()
            || self.queue_limits.windows(2).any(|w| w[0].max_nodes >= w[1].max_nodes)
        {
            problems.push("queue_limits: at least one, in increasing max_nodes".into());
        }
        for key in self.env.keys() {
            if key.is_empty()
                || key.starts_with(|c: char| c.is_ascii_digit())
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                problems.push(format!("env.{key}: not a shell variable name"));
            }
        }
        for (field, value) in
            [("account", &self.account), ("partition", &self.partition), ("qos", &self.qos)]
        {
            if value.as_deref().is_some_and(|v| !super::safe_name(v)) {
                problems.push(format!("{field} {value:?}: use letters, digits, '.', '_' and '-'"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SlurmError::BadSystem { path: path.display().to_string(), problems })
        }
    }
}

fn parse(text: &str, path: &Path) -> Result<System, SlurmError> {
    toml::from_str(text).map_err(|e| SlurmError::BadSystem {
        path: path.display().to_string(),
        problems: vec![e.to_string().trim_end().to_string()],
    })
}
