//! The experiment file: which axes to sweep and the settings every point shares.
//!
//! ```toml
//! name = "local-smoke"
//! zip = [["ranks_per_node", "micro_batch"]]   # vary together instead of crossing
//! [axes]
//! model = ["vit-tiny"]
//! strategy = ["no_shard"]
//! nodes = [1]
//! ranks_per_node = [1, 2]
//! micro_batch = [8, 4]
//! [[exclude]]                                  # drop points matching every key
//! model = "vit-tiny"
//! micro_batch = 8
//! [settings]
//! steps = 10
//! warmup_steps = 2
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::records::{BackwardPrefetch, Dtype, Strategy};

use super::models::{self, Models};
use super::problems::{deserialize_all, ExperimentError, Problem};
use super::validate::validate;

/// Names of the sweepable axes, in the order points are expanded and named. Of `micro_batch`
/// and `global_batch` a file sets exactly one.
pub const AXES: [&str; 15] = [
    "model",
    "strategy",
    "shard_group",
    "nodes",
    "ranks_per_node",
    "micro_batch",
    "global_batch",
    "accumulation",
    "activation_checkpointing",
    "backward_prefetch",
    "limit_all_gathers",
    "param_dtype",
    "reduce_dtype",
    "data",
    "loader_workers",
];

/// Where training images come from: written `"synthetic"` or the path of an HDF5 image set
/// (made by `shardsweep data import`). Masks are synthetic either way.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum DataSource {
    /// Images and masks generated from (seed, global sample index).
    #[default]
    Synthetic,
    /// An image set file; sample i of the run is a seeded permutation of its train split,
    /// augmented as in MAE (random resized crop, horizontal flip) seeded by i.
    File(std::path::PathBuf),
}

impl DataSource {
    pub fn is_synthetic(&self) -> bool {
        *self == DataSource::Synthetic
    }

    pub fn name(&self) -> String {
        String::from(self.clone())
    }
}

impl From<String> for DataSource {
    fn from(text: String) -> Self {
        match text.as_str() {
            "synthetic" => DataSource::Synthetic,
            _ => DataSource::File(text.into()),
        }
    }
}

impl From<DataSource> for String {
    fn from(source: DataSource) -> Self {
        match source {
            DataSource::Synthetic => "synthetic".into(),
            DataSource::File(path) => path.display().to_string(),
        }
    }
}

/// Where each rank computes. ROCm builds of libtorch expose AMD GPUs as `cuda` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
}

/// Which library carries the collectives (`settings.backend`; absent: [`Backend::default_for`]
/// the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// MPI on host memory (device tensors staged through the host).
    Mpi,
    /// libtorch's c10d ProcessGroupGloo (CPU tensors; CUDA ones through the host).
    Gloo,
    /// libtorch's c10d ProcessGroupNCCL (RCCL in ROCm builds): GPUs only.
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Mpi => "mpi",
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// What PyTorch users run on each device: NCCL on GPUs; on CPUs MPI, this harness's
    /// original backend (records without a backend field were made with it).
    pub fn default_for(device: DeviceKind) -> Self {
        match device {
            DeviceKind::Cpu => Backend::Mpi,
            DeviceKind::Cuda => Backend::Nccl,
        }
    }
}

/// The swept dimensions. `model`, `strategy`, `nodes`, `ranks_per_node` and one of
/// `micro_batch` / `global_batch` are required; the FSDP knobs default to PyTorch's defaults
/// (one value each), so a file names them only to change or sweep them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axes {
    pub model: Vec<String>,
    pub strategy: Vec<Strategy>,
    /// Ranks per shard group of the hybrid strategies; 0 means one simulated node
    /// (ranks_per_node), FSDP's default. Other strategies ignore it.
    #[serde(default = "zero")]
    pub shard_group: Vec<u32>,
    pub nodes: Vec<u32>,
    pub ranks_per_node: Vec<u32>,
    /// Images per rank per forward pass.
    #[serde(default)]
    pub micro_batch: Vec<u32>,
    /// Images per optimizer step over all ranks, instead of `micro_batch`: each point's
    /// micro-batch is global_batch / (world size x accumulation), where that divides.
    #[serde(default)]
    pub global_batch: Vec<u32>,
    /// Micro-batches per optimizer step (gradient accumulation without communication).
    #[serde(default = "one_u32")]
    pub accumulation: Vec<u32>,
    /// Recompute each transformer block in backward instead of storing its activations.
    #[serde(default = "no")]
    pub activation_checkpointing: Vec<bool>,
    #[serde(default = "pre")]
    pub backward_prefetch: Vec<BackwardPrefetch>,
    /// At most two units' gathered parameters in flight (PyTorch's rate limiter).
    #[serde(default = "yes")]
    pub limit_all_gathers: Vec<bool>,
    #[serde(default = "fp32")]
    pub param_dtype: Vec<Dtype>,
    #[serde(default = "fp32")]
    pub reduce_dtype: Vec<Dtype>,
    /// `"synthetic"` or the path of an image set file (relative to the working directory when
    /// planned). Checked where the ranks open it, not at plan time: a sweep may be planned on a
    /// machine that does not hold the file.
    #[serde(default = "synthetic")]
    pub data: Vec<DataSource>,
    /// Threads that prepare micro-batches ahead of the step (0: prepared when asked for).
    #[serde(default = "one_u32")]
    pub loader_workers: Vec<u32>,
}

fn synthetic() -> Vec<DataSource> {
    vec![DataSource::Synthetic]
}

fn zero() -> Vec<u32> {
    vec![0]
}
fn one_u32() -> Vec<u32> {
    vec![1]
}
fn no() -> Vec<bool> {
    vec![false]
}
fn yes() -> Vec<bool> {
    vec![true]
}
fn pre() -> Vec<BackwardPrefetch> {
    vec![BackwardPrefetch::Pre]
}
fn fp32() -> Vec<Dtype> {
    vec![Dtype::Fp32]
}

impl Axes {
    pub fn len(&self, axis: &str) -> usize {
        match axis {
            "model" => self.model.len(),
            "strategy" => self.strategy.len(),
            "shard_group" => self.shard_group.len(),
            "nodes" => self.nodes.len(),
            "ranks_per_node" => self.ranks_per_node.len(),
            "micro_batch" => self.micro_batch.len(),
            "global_batch" => self.global_batch.len(),
            "accumulation" => self.accumulation.len(),
            "activation_checkpointing" => self.activation_checkpointing.len(),
            "backward_prefetch" => self.backward_prefetch.len(),
            "limit_all_gathers" => self.limit_all_gathers.len(),
            "param_dtype" => self.param_dtype.len(),
            "reduce_dtype" => self.reduce_dtype.len(),
            "data" => self.data.len(),
            "loader_workers" => self.loader_workers.len(),
            _ => 0,
        }
    }

    /// The `index`-th value of `axis` as TOML, for matching exclude rules and naming points.
    pub fn value(&self, axis: &str, index: usize) -> toml::Value {
        use toml::Value::{Boolean, Integer, String};
        match axis {
            "model" => String(self.model[index].clone()),
            "strategy" => String(self.strategy[index].name().into()),
            "shard_group" => Integer(self.shard_group[index].into()),
            "nodes" => Integer(self.nodes[index].into()),
            "ranks_per_node" => Integer(self.ranks_per_node[index].into()),
            "micro_batch" => Integer(self.micro_batch[index].into()),
            "global_batch" => Integer(self.global_batch[index].into()),
            "accumulation" => Integer(self.accumulation[index].into()),
            "activation_checkpointing" => Boolean(self.activation_checkpointing[index]),
            "backward_prefetch" => String(self.backward_prefetch[index].name().into()),
            "limit_all_gathers" => Boolean(self.limit_all_gathers[index]),
            "param_dtype" => String(self.param_dtype[index].name().into()),
            "reduce_dtype" => String(self.reduce_dtype[index].name().into()),
            "data" => String(self.data[index].name()),
            "loader_workers" => Integer(self.loader_workers[index].into()),
            other => unreachable!("unknown axis {other}"),
        }
    }

    /// The batch axis the file sets (`global_batch` if it has values, else `micro_batch`).
    pub fn batch_axis(&self) -> &'static str {
        if self.global_batch.is_empty() {
            "micro_batch"
        } else {
            "global_batch"
        }
    }

    /// The batch axis the file leaves empty: it takes no part in the product.
    pub fn unused_batch_axis(&self) -> &'static str {
        match self.batch_axis() {
            "micro_batch" => "global_batch",
            _ => "micro_batch",
        }
    }
}

/// Settings shared by every point of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Training steps per point, warm-up included.
    pub steps: u32,
    /// Leading steps excluded from steady-state statistics.
    pub warmup_steps: u32,
    /// Overrides the presets' image size (must be a multiple of each model's patch size).
    #[serde(default)]
    pub image_size: Option<i64>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub device: DeviceKind,
    /// Collective library; absent means [`Backend::default_for`] the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// libtorch intra-op threads per rank (ranks of one machine share its cores).
    #[serde(default = "one")]
    pub threads_per_rank: u32,
    /// Caps each rank's data memory (RLIMIT_DATA), so a point too big for the memory it is
    /// meant to have fails as `oom` instead of pushing the machine into swap or the OOM killer.
    #[serde(default)]
    pub rank_memory_limit_bytes: Option<u64>,
    /// Write the final parameters (whole units, fp32) to `parameters.h5` in the point's folder.
    #[serde(default)]
    pub save_parameters: bool,
}

/// AdamW as in the MAE reference: lr = base_lr x global batch / 256, betas (0.9, 0.95).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSettings {
    pub base_lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Linear learning-rate warm-up steps, then cosine decay to zero at the last step.
    pub lr_warmup_steps: u32,
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        Self {
            base_lr: 1.5e-4,
            weight_decay: 0.05,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            lr_warmup_steps: 0,
        }
    }
}

/// How points are started on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LaunchSettings {
    pub mpirun: String,
    /// Extra arguments for mpirun, before the program.
    pub mpirun_args: Vec<String>,
    /// A point still running after this long is stopped and recorded as timed out.
    pub timeout_s: u64,
}

impl Default for LaunchSettings {
    fn default() -> Self {
        Self { mpirun: "mpirun".into(), mpirun_args: Vec::new(), timeout_s: 900 }
    }
}

fn one() -> u32 {
    1
}

/// A failure planted on purpose in the points a `[[fault]]` rule selects, so the way the
/// harness records crashes and divergence can be tested end to end (locally and under Slurm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub kind: FaultKind,
    /// The step (from 0) at which it strikes.
    pub at_step: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The last rank aborts (SIGABRT), as a failed assertion in native code would.
    Crash,
    /// Every rank's loss becomes NaN, as in a diverged run.
    NanLoss,
    /// The last rank stops making progress (the others wait for it in the next collective),
    /// as in a hung network or a deadlock.
    Hang,
}

impl Fault {
    const FIELDS: [&'static str; 2] = ["kind", "at_step"];

    /// The fault of a rule, or the field that is wrong and why.
    pub fn from_rule(rule: &toml::Table) -> Result<Self, (&'static str, String)> {
        // The names are FaultKind's own (serde), so the two cannot drift apart.
        let kind = rule.get("kind").cloned().and_then(|v| v.try_into::<FaultKind>().ok());
        let kind =
            kind.ok_or(("kind", "must be \"crash\", \"nan_loss\" or \"hang\"".to_string()))?;
        let at_step =
            rule.get("at_step").and_then(|v| v.as_integer()).and_then(|n| u32::try_from(n).ok());
        let at_step =
            at_step.ok_or(("at_step", "must be a step number (0 or more)".to_string()))?;
        Ok(Self { kind, at_step })
    }

    /// The rule's axis keys: the points it applies to.
    pub fn matchers(rule: &toml::Table) -> toml::Table {
        rule.iter()
            .filter(|(k, _)| !Self::FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub description: String,
    /// `[models.NAME]`: shapes this file defines, usable in `axes.model` like presets.
    pub models: Models,
    pub axes: Axes,
    /// Groups of axes that advance together (equal lengths) instead of crossing.
    pub zip: Vec<Vec<String>>,
    /// Each rule drops the points whose axes equal every listed value (a list means any of).
    pub exclude: Vec<toml::Table>,
    /// `[[fault]]` rules: a fault (`kind`, `at_step`) and the axis values of the points it hits.
    pub fault: Vec<toml::Table>,
    pub settings: Settings,
    pub optimizer: OptimizerSettings,
    pub launch: LaunchSettings,
}

/// An optional section: its default when absent, `None` if present but invalid.
fn optional<T: serde::de::DeserializeOwned + Default>(
    table: &toml::Table,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match table.get(key) {
        Some(value) => deserialize_all(key, value.clone(), problems),
        None => Some(T::default()),
    }
}

/// A required section: `None` (with a problem) if absent or invalid.
fn required<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match table.get(key) {
        Some(value) => deserialize_all(key, value.clone(), problems),
        None => {
            problems.push(Problem::new(key, None, format!("missing section [{key}]")));
            None
        }
    }
}

const TOP_LEVEL: [&str; 10] = [
    "name",
    "description",
    "models",
    "axes",
    "zip",
    "exclude",
    "fault",
    "settings",
    "optimizer",
    "launch",
];

impl Experiment {
    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        Ok(Self::read(path)?.0)
    }

    /// The experiment in `path` and the text it was parsed from (kept beside the results), read
    /// once so the two always agree.
    pub fn read(path: &Path) -> Result<(Self, String), ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ExperimentError::new(
                path,
                vec![Problem::new("(file)", None, format!("cannot read: {e}"))],
            )
        })?;
        Ok((Self::parse(&text, path)?, text))
    }

    /// Parses and validates an experiment; `path` is only used to name the file in errors.
    /// Every problem is reported: unknown keys, wrong types, and the checks of
    /// [`validate`](super::validate) on every section that parsed.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ExperimentError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            ExperimentError::new(path, vec![Problem::new("(syntax)", None, syntax_error(text, &e))])
        })?;
        let mut problems = Vec::new();
        for key in table.keys().filter(|k| !TOP_LEVEL.contains(&k.as_str())) {
            problems.push(Problem::new(
                key.clone(),
                table.get(key),
                format!("unknown key; expected one of {}", TOP_LEVEL.join(", ")),
            ));
        }
        let name: Option<String> = required(&table, "name", &mut problems);
        let description: Option<String> = optional(&table, "description", &mut problems);
        let parts = Parts {
            models: optional(&table, "models", &mut problems),
            axes: required(&table, "axes", &mut problems),
            settings: required(&table, "settings", &mut problems),
            optimizer: optional(&table, "optimizer", &mut problems),
            launch: optional(&table, "launch", &mut problems),
            zip: optional(&table, "zip", &mut problems),
            exclude: optional(&table, "exclude", &mut problems),
            fault: optional(&table, "fault", &mut problems),
        };
        let mut checks = Vec::new();
        validate(name.as_deref(), &parts, &mut checks);
        // A key whose type was wrong is not judged again on the value left after pruning it.
        let reported: Vec<String> = problems.iter().map(|p| base_key(&p.key)).collect();
        problems.extend(checks.into_iter().filter(|c| !reported.contains(&base_key(&c.key))));
        match (name, description, parts) {
            (
                Some(name),
                Some(description),
                Parts {
                    models: Some(models),
                    axes: Some(axes),
                    settings: Some(settings),
                    optimizer: Some(optimizer),
                    launch: Some(launch),
                    zip: Some(zip),
                    exclude: Some(exclude),
                    fault: Some(fault),
                },
            ) if problems.is_empty() => Ok(Experiment {
                name,
                description,
                models,
                axes,
                zip,
                exclude,
                fault,
                settings,
                optimizer,
                launch,
            }),
            _ => Err(ExperimentError::new(path, problems)),
        }
    }
}

impl Experiment {
    /// The configuration of model `name`: the file's own `[models.NAME]`, else a preset.
    pub fn model(&self, name: &str) -> Option<crate::model::ModelConfig> {
        models::resolve(&self.models, name)
    }
}

/// `axes.model[1]` -> `axes.model`.
fn base_key(key: &str) -> String {
    key.split('[').next().unwrap_or(key).to_string()
}

/// The sections of an experiment file that parsed (`None`: absent and required, or invalid).
pub(super) struct Parts {
    pub models: Option<Models>,
    pub axes: Option<Axes>,
    pub settings: Option<Settings>,
    pub optimizer: Option<OptimizerSettings>,
    pub launch: Option<LaunchSettings>,
    pub zip: Option<Vec<Vec<String>>>,
    pub exclude: Option<Vec<toml::Table>>,
    pub fault: Option<Vec<toml::Table>>,
}

/// Characters of the offending line shown on each side of a syntax error.
const SYNTAX_CONTEXT_CHARS: usize = 40;

/// A TOML syntax error as one short line: where it is, what is wrong, and at most
/// 2 x [`SYNTAX_CONTEXT_CHARS`] characters of the line around it (a generated file can hold a
/// line of thousands of characters, which the parser's own message would echo whole).
pub(crate) fn syntax_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().replace('\n', "; ");
    let Some(span) = error.span() else { return message.to_string() };
    let at = text.floor_char_boundary(span.start.min(text.len()));
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line_no = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let before: String = {
        let chars: Vec<char> = text[line_start..at].chars().collect();
        let cut = chars.len().saturating_sub(SYNTAX_CONTEXT_CHARS);
        (if cut > 0 { "..." } else { "" }).to_string() + &chars[cut..].iter().collect::<String>()
    };
    let after: String = {
        let rest = &text[at..line_end];
        let shown: String = rest.chars().take(SYNTAX_CONTEXT_CHARS).collect();
        if shown.len() < rest.len() {
            shown + "..."
        } else {
            shown
        }
    };
    format!("line {line_no}, column {column}: {message}; near `{before}{after}`")
}
