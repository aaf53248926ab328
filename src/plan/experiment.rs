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

use serde::{Deserialize, Serialize};

pub use crate::records::{Axis, Backend, BackwardPrefetch, DeviceKind, Dtype, Strategy, Timing};

use super::models::{self, Models};

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
    pub fn len(&self, axis: Axis) -> usize {
        match axis {
            Axis::Model => self.model.len(),
            Axis::Strategy => self.strategy.len(),
            Axis::ShardGroup => self.shard_group.len(),
            Axis::Nodes => self.nodes.len(),
            Axis::RanksPerNode => self.ranks_per_node.len(),
            Axis::MicroBatch => self.micro_batch.len(),
            Axis::GlobalBatch => self.global_batch.len(),
            Axis::Accumulation => self.accumulation.len(),
            Axis::ActivationCheckpointing => self.activation_checkpointing.len(),
            Axis::BackwardPrefetch => self.backward_prefetch.len(),
            Axis::LimitAllGathers => self.limit_all_gathers.len(),
            Axis::ParamDtype => self.param_dtype.len(),
            Axis::ReduceDtype => self.reduce_dtype.len(),
            Axis::Data => self.data.len(),
            Axis::LoaderWorkers => self.loader_workers.len(),
        }
    }

    /// The `index`-th value of `axis` as TOML, for matching exclude rules and naming points.
    pub fn value(&self, axis: Axis, index: usize) -> toml::Value {
        use toml::Value::{Boolean, Integer, String};
        match axis {
            Axis::Model => String(self.model[index].clone()),
            Axis::Strategy => String(self.strategy[index].name().into()),
            Axis::ShardGroup => Integer(self.shard_group[index].into()),
            Axis::Nodes => Integer(self.nodes[index].into()),
            Axis::RanksPerNode => Integer(self.ranks_per_node[index].into()),
            Axis::MicroBatch => Integer(self.micro_batch[index].into()),
            Axis::GlobalBatch => Integer(self.global_batch[index].into()),
            Axis::Accumulation => Integer(self.accumulation[index].into()),
            Axis::ActivationCheckpointing => Boolean(self.activation_checkpointing[index]),
            Axis::BackwardPrefetch => String(self.backward_prefetch[index].name().into()),
            Axis::LimitAllGathers => Boolean(self.limit_all_gathers[index]),
            Axis::ParamDtype => String(self.param_dtype[index].name().into()),
            Axis::ReduceDtype => String(self.reduce_dtype[index].name().into()),
            Axis::Data => String(self.data[index].name()),
            Axis::LoaderWorkers => Integer(self.loader_workers[index].into()),
        }
    }

    /// The batch axis the file sets (`global_batch` if it has values, else `micro_batch`).
    pub fn batch_axis(&self) -> Axis {
        if self.global_batch.is_empty() {
            Axis::MicroBatch
        } else {
            Axis::GlobalBatch
        }
    }

    /// The batch axis the file leaves empty: it takes no part in the product.
    pub fn unused_batch_axis(&self) -> Axis {
        match self.batch_axis() {
            Axis::MicroBatch => Axis::GlobalBatch,
            _ => Axis::MicroBatch,
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
    /// How steps are timed; absent means [`Timing::default_for`] the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
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
    /// The smallest random crop of an image set's images, as a fraction of the image's area
    /// (absent: MAE's 0.2). Images much smaller than the model's input lose what they show in
    /// small crops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_min_scale: Option<f64>,
}

/// MAE's smallest crop, as a fraction of the image's area (He et al. 2022, "Masked
/// Autoencoders Are Scalable Vision Learners": `RandomResizedCrop(scale=(0.2, 1.0))`), the
/// default of `settings.crop_min_scale`.
pub const MAE_CROP_MIN_SCALE: f64 = 0.2;

impl Settings {
    pub fn crop_min_scale(&self) -> f64 {
        self.crop_min_scale.unwrap_or(MAE_CROP_MIN_SCALE)
    }
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
    pub zip: Vec<Vec<Axis>>,
    /// Each rule drops the points it selects.
    pub exclude: Vec<Rule>,
    /// `[[fault]]` rules: a fault and the points it strikes.
    pub fault: Vec<(Fault, Rule)>,
    pub settings: Settings,
    pub optimizer: OptimizerSettings,
    pub launch: LaunchSettings,
}

/// Points selected by axis values: a point matches when, on every listed axis, its value is
/// one of the listed ones (an `exclude` rule, a fault's target).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule(pub Vec<(Axis, Vec<toml::Value>)>);

impl Rule {
    /// A rule from a checked table: every key an axis, each value one value or a list of any.
    pub(super) fn from_table(table: &toml::Table) -> Self {
        Rule(
            table
                .iter()
                .map(|(key, wanted)| {
                    let axis = Axis::from_name(key).expect("a checked rule names axes only");
                    let any = match wanted {
                        toml::Value::Array(values) => values.clone(),
                        single => vec![single.clone()],
                    };
                    (axis, any)
                })
                .collect(),
        )
    }

    /// Whether a point whose value on each axis is `value(axis)` is selected.
    pub fn matches(&self, value: impl Fn(Axis) -> toml::Value) -> bool {
        self.0.iter().all(|(axis, any)| any.contains(&value(*axis)))
    }
}

impl Experiment {
    /// The configuration of model `name`: the file's own `[models.NAME]`, else a preset.
    pub fn model(&self, name: &str) -> Option<crate::model::ModelConfig> {
        models::resolve(&self.models, name)
    }
}
