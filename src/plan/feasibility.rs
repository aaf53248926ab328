//! Can a point run on the machine it is planned for? Memory is estimated by formula before
//! anything is allocated, so a 15B model is rejected in milliseconds, not after an OOM.

use super::experiment::{Backend, DeviceKind, Dtype, Timing};
use super::point::PointSpec;

const GIB: f64 = (1u64 << 30) as f64;

/// What the planner knows of the machine the points run on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    pub memory_bytes: u64,
    /// Whether each rank has `memory_bytes` to itself (a GPU) or all ranks of a run share it
    /// (this machine, where every simulated node lives).
    pub per_rank: bool,
}

impl Machine {
    /// This machine, from /proc/meminfo.
    pub fn local() -> Self {
        let total_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        Self { memory_bytes: total_kib * 1024, per_rank: false }
    }
}

/// Bytes one rank holds for a point at its peak: the memory formula the performance model uses
/// too ([`crate::memory::peak`]) without allocator overhead. Parameter shards and AdamW's
/// moments are 12 B/param over the shard group; gathered parameters, one unit's unsharded
/// gradients and the larger of stored activations and gradient shards (4 B/param over the
/// group, held only from backward to the optimizer step; an approximation) come on top.
pub fn rank_memory_bytes(point: &PointSpec) -> f64 {
    crate::memory::peak(point, 0.0).peak
}

/// A point as the memory formula takes it.
impl<'a> From<&'a PointSpec> for crate::memory::Inputs<'a> {
    fn from(point: &'a PointSpec) -> Self {
        Self {
            model: &point.model,
            strategy: point.strategy,
            parallel: &point.parallel,
            world_size: point.world_size(),
            shard_ranks: point.shard_ranks(),
            micro_batch: point.micro_batch,
        }
    }
}

/// Whether the point's backend works on its device and honours its knobs. (Whether this build
/// has it is the worker's question: plans are made for other machines' builds too.)
fn check_backend(point: &PointSpec) -> Result<(), String> {
    let backend = point.backend();
    if backend == Backend::Nccl && point.settings.device == DeviceKind::Cpu {
        return Err("backend nccl needs device = \"cuda\": NCCL moves GPU memory only".into());
    }
    if point.timing() == Timing::DeviceEvents && point.settings.device == DeviceKind::Cpu {
        return Err("timing device_events needs device = \"cuda\": a CPU has no device timeline; \
             use timing = \"host\""
            .into());
    }
    match (point.parallel.reduce_dtype, backend) {
        (Dtype::Bf16, Backend::Mpi) => {
            Err("reduce_dtype bf16 needs a backend that sums bf16; MPI reduces fp32 only".into())
        }
        (Dtype::Fp32, Backend::Mpi)
        | (Dtype::Fp32 | Dtype::Bf16, Backend::Gloo | Backend::Nccl) => Ok(()),
    }
}

/// `Ok` if `point` can run on `machine`, else the reason it cannot.
pub fn check(point: &PointSpec, machine: &Machine) -> Result<(), String> {
    let (world, group) = (point.world_size(), point.parallel.shard_group);
    if group == 0 || group > world || world % group != 0 {
        return Err(format!(
            "shard group of {group} ranks does not divide the world of {world} ranks"
        ));
    }
    check_backend(point)?;
    let needed = rank_memory_bytes(point);
    let available = if machine.per_rank {
        machine.memory_bytes as f64
    } else {
        machine.memory_bytes as f64 / f64::from(point.world_size())
    };
    if needed > available {
        return Err(format!(
            "does not fit: needs ~{:.1} GiB per rank ({} ranks, {} parameters x 12 B / shard group + gathered parameters + unsharded gradients + the larger of activations and gradient shards), {:.1} GiB available per rank",
            needed / GIB,
            point.world_size(),
            point.model.trainable_params(),
            available / GIB
        ));
    }
    Ok(())
}
