//! The experiment file: which axes to sweep and the settings every point shares.
//!
//! ```toml
//! name = "local-smoke"
//! [axes]
//! model = ["vit-tiny"]
//! strategy = ["no_shard"]
//! nodes = [1]
//! ranks_per_node = [1, 2]
//! micro_batch = [8, 4]
//! zip = [["ranks_per_node", "micro_batch"]]   # vary together instead of crossing
//! [[exclude]]                                  # drop points matching every key
//! model = "vit-tiny"
//! micro_batch = 8
//! [settings]
//! steps = 10
//! warmup_steps = 2
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::problems::{deserialize_all, ExperimentError, Problem};
use crate::model;

/// Names of the sweepable axes, in the order points are expanded and named.
pub const AXES: [&str; 5] = ["model", "strategy", "nodes", "ranks_per_node", "micro_batch"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    NoShard,
    FullShard,
    ShardGradOp,
    HybridShard,
    HybridShardZero2,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::NoShard => "no_shard",
            Strategy::FullShard => "full_shard",
            Strategy::ShardGradOp => "shard_grad_op",
            Strategy::HybridShard => "hybrid_shard",
            Strategy::HybridShardZero2 => "hybrid_shard_zero2",
        }
    }

    /// Strategies this version can run; the others are planned but rejected with a reason.
    pub fn implemented(self) -> bool {
        matches!(self, Strategy::NoShard)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// fp32 parameters, compute and reductions.
    #[default]
    Fp32,
    /// bf16 compute from fp32 master weights; gradients reach the fp32 weights through autograd
    /// and are reduced in fp32.
    Bf16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// Images and masks generated from (seed, global sample index).
    #[default]
    Synthetic,
}

/// Where each rank computes. ROCm builds of libtorch expose AMD GPUs as `cuda` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axes {
    pub model: Vec<String>,
    pub strategy: Vec<Strategy>,
    pub nodes: Vec<u32>,
    pub ranks_per_node: Vec<u32>,
    pub micro_batch: Vec<u32>,
}

impl Axes {
    pub fn len(&self, axis: &str) -> usize {
        match axis {
            "model" => self.model.len(),
            "strategy" => self.strategy.len(),
            "nodes" => self.nodes.len(),
            "ranks_per_node" => self.ranks_per_node.len(),
            "micro_batch" => self.micro_batch.len(),
            _ => 0,
        }
    }

    /// The `index`-th value of `axis` as TOML, for matching exclude rules and naming points.
    pub fn value(&self, axis: &str, index: usize) -> toml::Value {
        match axis {
            "model" => toml::Value::String(self.model[index].clone()),
            "strategy" => toml::Value::String(self.strategy[index].name().into()),
            "nodes" => toml::Value::Integer(self.nodes[index].into()),
            "ranks_per_node" => toml::Value::Integer(self.ranks_per_node[index].into()),
            "micro_batch" => toml::Value::Integer(self.micro_batch[index].into()),
            other => unreachable!("unknown axis {other}"),
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
    pub precision: Precision,
    #[serde(default)]
    pub data: DataSource,
    #[serde(default)]
    pub device: DeviceKind,
    /// libtorch intra-op threads per rank (ranks of one machine share its cores).
    #[serde(default = "one")]
    pub threads_per_rank: u32,
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
        Self { base_lr: 1.5e-4, weight_decay: 0.05, beta1: 0.9, beta2: 0.95, eps: 1e-8, lr_warmup_steps: 0 }
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

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub description: String,
    pub axes: Axes,
    /// Groups of axes that advance together (equal lengths) instead of crossing.
    pub zip: Vec<Vec<String>>,
    /// Each rule drops the points whose axes equal every listed value (a list means any of).
    pub exclude: Vec<toml::Table>,
    pub settings: Settings,
    pub optimizer: OptimizerSettings,
    pub launch: LaunchSettings,
}

/// An optional section: its default when absent, `None` if present but invalid.
fn optional<T: serde::de::DeserializeOwned + Default>(table: &toml::Table, key: &str, problems: &mut Vec<Problem>) -> Option<T> {
    match table.get(key) {
        Some(value) => deserialize_all(key, value.clone(), problems),
        None => Some(T::default()),
    }
}

const TOP_LEVEL: [&str; 8] = ["name", "description", "axes", "zip", "exclude", "settings", "optimizer", "launch"];

impl Experiment {
    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ExperimentError::new(path, vec![Problem::new("(file)", None, format!("cannot read: {e}"))]))?;
        Self::parse(&text, path)
    }

    /// Parses and validates an experiment; `path` is only used to name the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ExperimentError> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| ExperimentError::new(path, vec![Problem::new("(syntax)", None, e.to_string().trim_end().to_string())]))?;
        let mut problems = Vec::new();
        for key in table.keys().filter(|k| !TOP_LEVEL.contains(&k.as_str())) {
            problems.push(Problem::new(key.clone(), table.get(key), format!("unknown key; expected one of {}", TOP_LEVEL.join(", "))));
        }
        let section = |key: &str| table.get(key).cloned();
        let name = match section("name") {
            Some(toml::Value::String(s)) => Some(s),
            Some(other) => {
                problems.push(Problem::new("name", Some(&other), "must be a string"));
                None
            }
            None => {
                problems.push(Problem::new("name", None, "missing; every sweep needs a name (it names its results folder)"));
                None
            }
        };
        let description = match section("description") {
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                problems.push(Problem::new("description", Some(&other), "must be a string"));
                String::new()
            }
            None => String::new(),
        };
        let required = |key: &str, problems: &mut Vec<Problem>| {
            let value = section(key);
            if value.is_none() {
                problems.push(Problem::new(key, None, format!("missing section [{key}]")));
            }
            value
        };
        let axes: Option<Axes> = required("axes", &mut problems).and_then(|v| deserialize_all("axes", v, &mut problems));
        let settings: Option<Settings> = required("settings", &mut problems).and_then(|v| deserialize_all("settings", v, &mut problems));
        let optimizer: Option<OptimizerSettings> = optional(&table, "optimizer", &mut problems);
        let launch: Option<LaunchSettings> = optional(&table, "launch", &mut problems);
        let zip: Option<Vec<Vec<String>>> = optional(&table, "zip", &mut problems);
        let exclude: Option<Vec<toml::Table>> = optional(&table, "exclude", &mut problems);

        match (name, axes, settings, optimizer, launch, zip, exclude) {
            (Some(name), Some(axes), Some(settings), Some(optimizer), Some(launch), Some(zip), Some(exclude)) => {
                let experiment = Experiment { name, description, axes, zip, exclude, settings, optimizer, launch };
                experiment.validate(&mut problems);
                if problems.is_empty() {
                    Ok(experiment)
                } else {
                    Err(ExperimentError::new(path, problems))
                }
            }
            _ => {
                // Report what can still be checked semantically? The typed parts failed, so
                // the problems found so far are what the user must fix first.
                Err(ExperimentError::new(path, problems))
            }
        }
    }

    /// Checks that need more than types: known names, positive sizes, consistent groups.
    fn validate(&self, problems: &mut Vec<Problem>) {
        let mut problem = |key: String, value: toml::Value, message: String| problems.push(Problem::new(key, Some(&value), message));
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) || self.name.starts_with('.') {
            problem("name".into(), self.name.clone().into(), "use letters, digits, '.', '_' and '-' only (it names a folder)".into());
        }
        for axis in AXES {
            if self.axes.len(axis) == 0 {
                problem(format!("axes.{axis}"), toml::Value::Array(vec![]), "an axis needs at least one value".into());
            }
            for i in 0..self.axes.len(axis) {
                let value = self.axes.value(axis, i);
                if (0..i).any(|j| self.axes.value(axis, j) == value) {
                    problem(format!("axes.{axis}[{i}]"), value.clone(), "duplicate value".into());
                }
                if value.as_integer() == Some(0) {
                    problem(format!("axes.{axis}[{i}]"), value, "must be at least 1".into());
                }
            }
        }
        for (i, name) in self.axes.model.iter().enumerate() {
            match model::preset(name) {
                None => problem(
                    format!("axes.model[{i}]"),
                    name.clone().into(),
                    format!("unknown model; known: {}", model::preset_names().collect::<Vec<_>>().join(", ")),
                ),
                Some(config) => {
                    if let Some(size) = self.settings.image_size {
                        if size <= 0 || size % config.patch != 0 {
                            problem("settings.image_size".into(), size.into(), format!("must be a positive multiple of {name}'s patch size {}", config.patch));
                        }
                    }
                }
            }
        }
        let s = &self.settings;
        if s.steps == 0 {
            problem("settings.steps".into(), 0.into(), "must be at least 1".into());
        }
        if s.warmup_steps >= s.steps {
            problem("settings.warmup_steps".into(), i64::from(s.warmup_steps).into(), format!("must be less than settings.steps ({}) to leave steady-state steps", s.steps));
        }
        if s.threads_per_rank == 0 {
            problem("settings.threads_per_rank".into(), 0.into(), "must be at least 1".into());
        }
        let o = &self.optimizer;
        for (key, value, ok) in [
            ("base_lr", o.base_lr, o.base_lr > 0.0),
            ("weight_decay", o.weight_decay, o.weight_decay >= 0.0),
            ("beta1", o.beta1, (0.0..1.0).contains(&o.beta1)),
            ("beta2", o.beta2, (0.0..1.0).contains(&o.beta2)),
            ("eps", o.eps, o.eps > 0.0),
        ] {
            if !ok || !value.is_finite() {
                problem(format!("optimizer.{key}"), value.into(), "out of range (lr and eps > 0, weight_decay >= 0, betas in [0, 1))".into());
            }
        }
        if self.launch.timeout_s == 0 {
            problem("launch.timeout_s".into(), 0.into(), "must be at least 1".into());
        }
        self.validate_zip(&mut problem);
        self.validate_exclude(&mut problem);
    }

    fn validate_zip(&self, problem: &mut impl FnMut(String, toml::Value, String)) {
        let mut seen: Vec<&str> = Vec::new();
        for (g, group) in self.zip.iter().enumerate() {
            let key = format!("zip[{g}]");
            let value = toml::Value::Array(group.iter().map(|a| a.clone().into()).collect());
            if group.len() < 2 {
                problem(key.clone(), value.clone(), "a zip group needs at least two axes".into());
            }
            for axis in group {
                if !AXES.contains(&axis.as_str()) {
                    problem(key.clone(), value.clone(), format!("unknown axis {axis:?}; axes are {}", AXES.join(", ")));
                } else if seen.contains(&axis.as_str()) {
                    problem(key.clone(), value.clone(), format!("axis {axis:?} is already in a zip group"));
                } else {
                    seen.push(axis);
                }
            }
            let lengths: Vec<String> = group.iter().filter(|a| AXES.contains(&a.as_str())).map(|a| format!("{a}: {}", self.axes.len(a))).collect();
            let first = group.iter().find(|a| AXES.contains(&a.as_str())).map(|a| self.axes.len(a));
            if group.iter().filter(|a| AXES.contains(&a.as_str())).any(|a| Some(self.axes.len(a)) != first) {
                problem(key, value, format!("zipped axes need equal lengths ({})", lengths.join(", ")));
            }
        }
    }

    fn validate_exclude(&self, problem: &mut impl FnMut(String, toml::Value, String)) {
        for (r, rule) in self.exclude.iter().enumerate() {
            if rule.is_empty() {
                problem(format!("exclude[{r}]"), toml::Value::Table(rule.clone()), "an empty rule would exclude every point".into());
            }
            for (axis, wanted) in rule {
                let key = format!("exclude[{r}].{axis}");
                if !AXES.contains(&axis.as_str()) {
                    problem(key, wanted.clone(), format!("unknown axis; axes are {}", AXES.join(", ")));
                    continue;
                }
                let candidates = match wanted {
                    toml::Value::Array(values) => values.clone(),
                    single => vec![single.clone()],
                };
                for candidate in candidates {
                    if !(0..self.axes.len(axis)).any(|i| self.axes.value(axis, i) == candidate) {
                        problem(key.clone(), candidate, format!("not a value of axes.{axis}, so this rule can never match"));
                    }
                }
            }
        }
    }
}
