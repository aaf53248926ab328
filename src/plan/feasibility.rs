//! Can a point run on the machine it is planned for? Memory is estimated by formula before
//! anything is allocated, so a 15B model is rejected in milliseconds, not after an OOM.

use super::experiment::{Backend, DeviceKind, Dtype, Strategy};
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

/// Bytes one rank holds for a point: its shard of fp32 parameters, gradients and two AdamW
/// moments (16 B/param over the shard group), the gathered parameters of two units (current and
/// prefetched; every unit for strategies that keep them), and stored activations.
pub fn rank_memory_bytes(point: &PointSpec) -> f64 {
    let m = &point.model;
    let k = &point.parallel;
    let params = m.trainable_params() as f64;
    let model_states = 16.0 * params / f64::from(k.shard_group);
    let param_bytes = match k.param_dtype {
        Dtype::Fp32 => 4.0,
        Dtype::Bf16 => 2.0,
    };
    let block_params = 12.0 * (m.width * m.width) as f64;
    let gathered = match point.strategy {
        Strategy::NoShard => 0.0,
        Strategy::FullShard | Strategy::HybridShard => 2.0 * block_params * param_bytes,
        Strategy::ShardGradOp | Strategy::HybridShardZero2 => params * param_bytes,
    };
    // Activations per block after Korthikanti et al. (2022): s*b*h*(34 + 5*a*s/h) bytes in
    // 16-bit; doubled for fp32. Checkpointing keeps block inputs plus one block's worth.
    let bytes_per_value = param_bytes / 2.0;
    let block = |tokens: i64, width: i64, heads: i64| {
        let (s, h, a, b) =
            (tokens as f64, width as f64, heads as f64, f64::from(point.micro_batch));
        s * b * h * (34.0 + 5.0 * a * s / h) * bytes_per_value
    };
    let encoder = block(m.visible_patches() + 1, m.width, m.heads);
    let decoder = block(m.patches() + 1, m.decoder_width, m.decoder_heads);
    let activations = if k.activation_checkpointing {
        let inputs = |tokens: i64, width: i64, depth: i64| {
            (tokens * width * depth) as f64 * f64::from(point.micro_batch) * 2.0 * bytes_per_value
        };
        inputs(m.visible_patches() + 1, m.width, m.depth)
            + inputs(m.patches() + 1, m.decoder_width, m.decoder_depth)
            + encoder.max(decoder)
    } else {
        m.depth as f64 * encoder + m.decoder_depth as f64 * decoder
    };
    model_states + gathered + activations
}

/// Whether the point's backend works on its device and honours its knobs. (Whether this build
/// has it is the worker's question: plans are made for other machines' builds too.)
fn check_backend(point: &PointSpec) -> Result<(), String> {
    let backend = point.backend();
    if backend == Backend::Nccl && point.settings.device == DeviceKind::Cpu {
        return Err("backend nccl needs device = \"cuda\": NCCL moves GPU memory only".into());
    }
    match (point.parallel.reduce_dtype, backend) {
        (Dtype::Bf16, Backend::Mpi) => {
            Err("reduce_dtype bf16 needs a backend that sums bf16; MPI reduces fp32 only".into())
        }
        // Gloo's bf16 sums are not covered by this harness's equality tests.
        (Dtype::Bf16, Backend::Gloo) => {
            Err("reduce_dtype bf16 is not supported on gloo here (tested in fp32 only); use nccl"
                .into())
        }
        _ => Ok(()),
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
            "does not fit: needs ~{:.1} GiB per rank ({} ranks, {} parameters x 16 B / shard group + gathered parameters + activations), {:.1} GiB available per rank",
            needed / GIB,
            point.world_size(),
            point.model.trainable_params(),
            available / GIB
        ));
    }
    Ok(())
}
