//! Checks that need more than types: known names, positive sizes, consistent groups. Each runs
//! on whatever sections parsed, so one pass reports every problem it can see.

use super::experiment::{Axes, Axis, Fault, LaunchSettings, OptimizerSettings, Settings};
use super::models::{self, Models};
use super::problems::Problem;
use super::safe_name;
use crate::model;

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

pub(super) fn validate(name: Option<&str>, parts: &Parts, problems: &mut Vec<Problem>) {
    let mut problem = |key: String, value: toml::Value, message: String| {
        problems.push(Problem::new(key, Some(&value), message))
    };
    if let Some(name) = name {
        if !safe_name(name) {
            problem(
                "name".into(),
                name.into(),
                "use letters, digits, '.', '_' and '-' only, not first '.' or '-' (it names a folder and reaches command lines)"
                    .into(),
            );
        }
    }
    for (name, shape) in parts.models.iter().flatten() {
        for (field, value, message) in models::problems(name, shape) {
            let key = match field {
                "" => format!("models.{name}"),
                field => format!("models.{name}.{field}"),
            };
            problem(key, value, message);
        }
    }
    if let Some(axes) = &parts.axes {
        let zipped: Vec<&str> = parts.zip.iter().flatten().flatten().map(String::as_str).collect();
        validate_axes(
            axes,
            parts.models.as_ref(),
            &zipped,
            parts.settings.as_ref().and_then(|s| s.image_size),
            &mut problem,
        );
    }
    if let Some(s) = &parts.settings {
        if s.steps == 0 {
            problem("settings.steps".into(), 0.into(), "must be at least 1".into());
        }
        if s.warmup_steps >= s.steps {
            problem(
                "settings.warmup_steps".into(),
                i64::from(s.warmup_steps).into(),
                format!(
                    "must be less than settings.steps ({}) to leave steady-state steps",
                    s.steps
                ),
            );
        }
        if let Some(scale) = s.crop_min_scale.filter(|s| !(*s > 0.0 && *s <= 1.0)) {
            problem(
                "settings.crop_min_scale".into(),
                scale.into(),
                "must be above 0 and at most 1 (a fraction of the image's area)".into(),
            );
        }
        if s.threads_per_rank == 0 {
            problem("settings.threads_per_rank".into(), 0.into(), "must be at least 1".into());
        }
    }
    if let Some(o) = &parts.optimizer {
        for (key, value, ok) in [
            ("base_lr", o.base_lr, o.base_lr > 0.0),
            ("weight_decay", o.weight_decay, o.weight_decay >= 0.0),
            ("beta1", o.beta1, (0.0..1.0).contains(&o.beta1)),
            ("beta2", o.beta2, (0.0..1.0).contains(&o.beta2)),
            ("eps", o.eps, o.eps > 0.0),
        ] {
            if !ok || !value.is_finite() {
                problem(
                    format!("optimizer.{key}"),
                    value.into(),
                    "out of range (base_lr and eps > 0, weight_decay >= 0, betas in [0, 1))".into(),
                );
            }
        }
    }
    if parts.launch.as_ref().is_some_and(|l| l.timeout_s == 0) {
        problem("launch.timeout_s".into(), 0.into(), "must be at least 1".into());
    }
    for (g, group) in parts.zip.iter().flatten().enumerate() {
        validate_zip_group(
            g,
            group,
            parts.zip.as_deref().unwrap_or_default(),
            parts.axes.as_ref(),
            &mut problem,
        );
    }
    for (r, rule) in parts.exclude.iter().flatten().enumerate() {
        let key = format!("exclude[{r}]");
        if rule.is_empty() {
            problem(
                key.clone(),
                toml::Value::Table(rule.clone()),
                "an empty rule would exclude every point".into(),
            );
        }
        validate_rule(&key, rule, parts.axes.as_ref(), &mut problem);
    }
    for (r, rule) in parts.fault.iter().flatten().enumerate() {
        let key = format!("fault[{r}]");
        match Fault::from_rule(rule) {
            Ok(_) => validate_rule(&key, &Fault::matchers(rule), parts.axes.as_ref(), &mut problem),
            Err((field, message)) => problem(
                format!("{key}.{field}"),
                rule.get(field).cloned().unwrap_or(toml::Value::Table(rule.clone())),
                message,
            ),
        }
    }
}

/// Repeated values would make repeated points; in zipped axes only whole repeated tuples do
/// (checked with the zip groups).
fn validate_axes(
    axes: &Axes,
    models: Option<&Models>,
    zipped: &[&str],
    image_size: Option<i64>,
    problem: &mut impl FnMut(String, toml::Value, String),
) {
    let batch = |values: &[u32]| toml::Value::Array(values.iter().map(|&v| v.into()).collect());
    match (axes.micro_batch.is_empty(), axes.global_batch.is_empty()) {
        (true, true) => problem(
            "axes.micro_batch".into(),
            batch(&[]),
            "set micro_batch (images per rank) or global_batch (images per step)".into(),
        ),
        (false, false) => problem(
            "axes.global_batch".into(),
            batch(&axes.global_batch),
            "set either micro_batch or global_batch, not both (one is derived from the other)"
                .into(),
        ),
        _ => {}
    }
    for axis in Axis::ALL {
        // The batch axes are checked together above.
        let batch_axis = matches!(axis, Axis::MicroBatch | Axis::GlobalBatch);
        if axes.len(axis) == 0 && !batch_axis {
            problem(
                format!("axes.{axis}"),
                toml::Value::Array(vec![]),
                "an axis needs at least one value".into(),
            );
        }
        for i in 0..axes.len(axis) {
            let value = axes.value(axis, i);
            if !zipped.contains(&axis.name()) && (0..i).any(|j| axes.value(axis, j) == value) {
                problem(format!("axes.{axis}[{i}]"), value.clone(), "duplicate value".into());
            }
            // shard_group 0 means "one node"; loader_workers 0 means "no prefetching".
            let zero_allowed = matches!(axis, Axis::ShardGroup | Axis::LoaderWorkers);
            if value.as_integer() == Some(0) && !zero_allowed {
                problem(format!("axes.{axis}[{i}]"), value, "must be at least 1".into());
            }
        }
    }
    // A [models] section that did not parse has been reported; its names cannot be judged.
    let Some(models) = models else { return };
    for (i, name) in axes.model.iter().enumerate() {
        match models::resolve(models, name) {
            None => problem(
                format!("axes.model[{i}]"),
                name.clone().into(),
                format!(
                    "unknown model; known: {} (or define [models.{name}])",
                    models
                        .keys()
                        .cloned()
                        .chain(model::preset_names().map(String::from))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(config) => {
                // A patch below 1 is reported with the model's shape.
                let fits = |size: i64| config.patch < 1 || (size > 0 && size % config.patch == 0);
                if let Some(size) = image_size.filter(|size| !fits(*size)) {
                    problem(
                        "settings.image_size".into(),
                        size.into(),
                        format!(
                            "must be a positive multiple of {name}'s patch size {}",
                            config.patch
                        ),
                    );
                }
            }
        }
    }
}

fn validate_zip_group(
    g: usize,
    group: &[String],
    all: &[Vec<String>],
    axes: Option<&Axes>,
    problem: &mut impl FnMut(String, toml::Value, String),
) {
    let key = format!("zip[{g}]");
    let value = toml::Value::Array(group.iter().map(|a| a.clone().into()).collect());
    if group.len() < 2 {
        problem(key.clone(), value.clone(), "a zip group needs at least two axes".into());
    }
    for (i, axis) in group.iter().enumerate() {
        let earlier = all[..g].iter().flatten().chain(&group[..i]).any(|a| a == axis);
        if Axis::from_name(axis).is_none() {
            problem(
                key.clone(),
                value.clone(),
                format!("unknown axis {axis:?}; axes are {}", Axis::names()),
            );
        } else if earlier {
            problem(key.clone(), value.clone(), format!("axis {axis:?} is already zipped"));
        }
    }
    if let Some(axes) = axes {
        let known: Vec<Axis> = group.iter().filter_map(|a| Axis::from_name(a)).collect();
        if known.windows(2).any(|w| axes.len(w[0]) != axes.len(w[1])) {
            let lengths: Vec<String> =
                known.iter().map(|&a| format!("{a} has {}", axes.len(a))).collect();
            problem(key, value, format!("zipped axes need equal lengths ({})", lengths.join(", ")));
        } else if let Some(first) = known.first() {
            let tuple = |i: usize| known.iter().map(|&a| axes.value(a, i)).collect::<Vec<_>>();
            for i in 0..axes.len(*first) {
                if (0..i).any(|j| tuple(j) == tuple(i)) {
                    problem(
                        key.clone(),
                        toml::Value::Array(tuple(i)),
                        format!("duplicate combination at position {i}"),
                    );
                }
            }
        }
    }
}

/// A rule that selects points by axis values (an exclude rule, a fault's target).
fn validate_rule(
    name: &str,
    rule: &toml::Table,
    axes: Option<&Axes>,
    problem: &mut impl FnMut(String, toml::Value, String),
) {
    for (axis, wanted) in rule {
        let key = format!("{name}.{axis}");
        let Some(axis) = Axis::from_name(axis) else {
            problem(key, wanted.clone(), format!("unknown axis; axes are {}", Axis::names()));
            continue;
        };
        let Some(axes) = axes else { continue };
        let candidates = match wanted {
            toml::Value::Array(values) => values.clone(),
            single => vec![single.clone()],
        };
        for candidate in candidates {
            if !(0..axes.len(axis)).any(|i| axes.value(axis, i) == candidate) {
                problem(
                    key.clone(),
                    candidate,
                    format!("not a value of axes.{axis}, so this rule can never match"),
                );
            }
        }
    }
}
