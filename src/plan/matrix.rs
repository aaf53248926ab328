//! Expands an experiment into points: the cartesian product of its axes, zip groups advancing
//! together, exclude rules applied, and every point that cannot run rejected with a reason.

use std::collections::HashSet;

use serde::Serialize;

use super::experiment::{Axis, Backend, BackwardPrefetch, DataSource, Dtype, Experiment, Timing};
use super::feasibility::{check, Machine};
use super::point::{ParallelSpec, PointSpec};

/// A point that will not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub id: String,
    pub reason: String,
    pub kind: Rejection,
}

/// Whether the user left a point out or the point cannot run: only the second deserves a
/// warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// Matched one of the experiment's own `[[exclude]]` rules.
    Excluded,
    /// Cannot run here (layout, dtype, memory): see the reason.
    CannotRun,
    /// Predicted slower than the best of its (model, nodes) beyond the intervals, and the
    /// user asked for the candidates only (`--candidates`).
    NotACandidate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub sweep: String,
    pub points: Vec<PointSpec>,
    pub rejected: Vec<Rejected>,
}

/// Expands `experiment` for `machine`. Points are ordered by axis, the first axis slowest.
pub fn expand(experiment: &Experiment, machine: &Machine) -> Plan {
    let mut plan =
        Plan { sweep: experiment.name.clone(), points: Vec::new(), rejected: Vec::new() };
    let choices = combinations(experiment);
    plan.points.reserve(choices.len());
    // Ids seen so far: a set, so that a sweep of 1e5 points expands in linear time.
    let mut seen = HashSet::with_capacity(choices.len());
    for choice in choices {
        let index =
            |axis: Axis| choice[Axis::ALL.iter().position(|a| *a == axis).expect("an axis")];
        let axes = &experiment.axes;
        let strategy = axes.strategy[index(Axis::Strategy)];
        let mut model =
            experiment.model(&axes.model[index(Axis::Model)]).expect("validated model name");
        if let Some(size) = experiment.settings.image_size {
            model.image_size = size;
        }
        let (nodes, ranks_per_node) =
            (axes.nodes[index(Axis::Nodes)], axes.ranks_per_node[index(Axis::RanksPerNode)]);
        let shard_group = strategy.shard_group(
            nodes * ranks_per_node,
            ranks_per_node,
            axes.shard_group[index(Axis::ShardGroup)],
        );
        let parallel = ParallelSpec {
            shard_group,
            accumulation: axes.accumulation[index(Axis::Accumulation)],
            activation_checkpointing: axes.activation_checkpointing
                [index(Axis::ActivationCheckpointing)],
            backward_prefetch: axes.backward_prefetch[index(Axis::BackwardPrefetch)],
            limit_all_gathers: axes.limit_all_gathers[index(Axis::LimitAllGathers)],
            param_dtype: axes.param_dtype[index(Axis::ParamDtype)],
            reduce_dtype: axes.reduce_dtype[index(Axis::ReduceDtype)],
        };
        let point = PointSpec {
            sweep: experiment.name.clone(),
            id: String::new(),
            model,
            strategy,
            parallel,
            nodes,
            ranks_per_node,
            micro_batch: 0,
            data: match &axes.data[index(Axis::Data)] {
                // Ranks may start elsewhere (a batch job's directory): pin the file's path.
                DataSource::File(path) => {
                    DataSource::File(std::path::absolute(path).unwrap_or(path.clone()))
                }
                DataSource::Synthetic => DataSource::Synthetic,
            },
            loader_workers: axes.loader_workers[index(Axis::LoaderWorkers)],
            settings: experiment.settings.clone(),
            optimizer: experiment.optimizer.clone(),
            fault: None,
            system: None,
        };
        let batch = match axes.batch_axis() {
            Axis::GlobalBatch => micro_batch(axes.global_batch[index(Axis::GlobalBatch)], &point),
            _ => Ok(axes.micro_batch[index(Axis::MicroBatch)]),
        };
        let point = match batch {
            Ok(micro_batch) => PointSpec { micro_batch, ..point },
            Err(_) => point,
        };
        let id = match batch {
            Ok(_) => point_id(&point),
            Err(_) => {
                id_with_batch(&point, &format!("gb{}", axes.global_batch[index(Axis::GlobalBatch)]))
            }
        };
        let point = PointSpec { id, ..point };
        // shard_group only applies to the hybrid strategies: other strategies would repeat.
        if !seen.insert(point.id.clone()) {
            continue;
        }
        let value = |axis: Axis| axes.value(axis, index(axis));
        let excluded_by = experiment.exclude.iter().position(|rule| rule.matches(value));
        let fault = experiment.fault.iter().find(|(_, rule)| rule.matches(value)).map(|(f, _)| *f);
        let point = PointSpec { fault, ..point };
        let rejection = match (excluded_by, batch) {
            (Some(r), _) => Some((format!("excluded by rule exclude[{r}]"), Rejection::Excluded)),
            (None, Err(reason)) => Some((reason, Rejection::CannotRun)),
            (None, Ok(_)) => {
                check(&point, machine).err().map(|reason| (reason, Rejection::CannotRun))
            }
        };
        match rejection {
            Some((reason, kind)) => plan.rejected.push(Rejected { id: point.id, reason, kind }),
            None => plan.points.push(point),
        }
    }
    plan
}

/// The micro-batch that makes `global_batch` images per step at `point`'s world size and
/// accumulation, or why there is none.
fn micro_batch(global_batch: u32, point: &PointSpec) -> Result<u32, String> {
    let (world, accumulation) = (point.world_size(), point.parallel.accumulation);
    let per_step = world * accumulation;
    if !global_batch.is_multiple_of(per_step) {
        return Err(format!(
            "global batch of {global_batch} images does not divide over {world} ranks x {accumulation} accumulation steps ({global_batch} / {per_step} = {:.2} images per micro-batch)",
            f64::from(global_batch) / f64::from(per_step)
        ));
    }
    Ok(global_batch / per_step)
}

/// A readable, unique, filesystem-safe name made of the point's axis values; knobs appear
/// only where they differ from their defaults (the backend and timing too, against the device's
/// defaults).
pub fn point_id(p: &PointSpec) -> String {
    id_with_batch(p, &format!("mb{}", p.micro_batch))
}

/// The id with `batch` in the micro-batch's place (a global batch that gives no micro-batch
/// names its point by itself).
fn id_with_batch(p: &PointSpec, batch: &str) -> String {
    use std::fmt::Write;
    let k = &p.parallel;
    let mut id = String::with_capacity(64);
    // Writing to a String cannot fail.
    let _ = write!(id, "{}-{}", p.model.name, p.strategy.name());
    if p.strategy.is_hybrid() {
        let _ = write!(id, "-sg{}", k.shard_group);
    }
    let _ = write!(id, "-n{}x{}-{batch}", p.nodes, p.ranks_per_node);
    if k.accumulation != 1 {
        let _ = write!(id, "-acc{}", k.accumulation);
    }
    if k.activation_checkpointing {
        id += "-ac";
    }
    if k.backward_prefetch != BackwardPrefetch::Pre {
        let _ = write!(id, "-bp{}", k.backward_prefetch.name());
    }
    if !k.limit_all_gathers {
        id += "-nolimit";
    }
    if k.param_dtype != Dtype::Fp32 {
        let _ = write!(id, "-p{}", k.param_dtype.name());
    }
    if k.reduce_dtype != Dtype::Fp32 {
        let _ = write!(id, "-r{}", k.reduce_dtype.name());
    }
    if let DataSource::File(path) = &p.data {
        let stem = path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
        let safe: String =
            stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        id += &format!("-d{safe}");
    }
    if p.loader_workers != 1 {
        id += &format!("-lw{}", p.loader_workers);
    }
    if p.backend() != Backend::default_for(p.settings.device) {
        id += &format!("-{}", p.backend().name());
    }
    if p.timing() != Timing::default_for(p.settings.device) {
        id += &format!("-t{}", p.timing().name());
    }
    id
}

/// Every combination of value indices, one index per axis in [`Axis::ALL`] order, the first axis
/// slowest. Axes in one zip group share an index; the product runs over the remaining axes and
/// the groups. Combinations are decoded from their position (mixed radix), not built up by
/// copying, so a 1e5-point sweep costs no allocation per point here.
fn combinations(
    experiment: &Experiment,
) -> impl ExactSizeIterator<Item = [usize; Axis::ALL.len()]> {
    // Factors: sets of axes that advance together, ordered by their first axis.
    let mut factors: Vec<Vec<usize>> = Vec::new();
    for (a, axis) in Axis::ALL.iter().enumerate() {
        if factors.iter().any(|f| f.contains(&a)) {
            continue;
        }
        let group = experiment.zip.iter().find(|g| g.contains(axis));
        factors.push(match group {
            Some(g) => Axis::ALL
                .iter()
                .enumerate()
                .filter(|(_, x)| g.contains(x))
                .map(|(i, _)| i)
                .collect(),
            None => vec![a],
        });
    }
    // The batch axis a file leaves empty takes one (unread) position.
    let lens: Vec<usize> =
        factors.iter().map(|f| experiment.axes.len(Axis::ALL[f[0]]).max(1)).collect();
    let total = lens.iter().product();
    (0..total).map(move |mut position| {
        let mut choice = [0; Axis::ALL.len()];
        for (factor, len) in factors.iter().zip(&lens).rev() {
            factor.iter().for_each(|&a| choice[a] = position % len);
            position /= len;
        }
        choice
    })
}
