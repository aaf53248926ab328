//! Can a point run on the machine it is planned for? Memory is estimated by formula before
//! anything is allocated, so a 15B model is rejected in milliseconds, not after an OOM.

use super::experiment::Precision;
use super::point::PointSpec;

const GIB: f64 = (1u64 << 30) as f64;

/// What the planner knows of the machine the points run on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    /// Memory all ranks of the run share (on one machine, every simulated node shares it).
    pub memory_bytes: u64,
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
        Self { memory_bytes: total_kib * 1024 }
    }
}

/// Bytes one rank holds for a point: fp32 parameters, gradients and two AdamW moments for the
/// whole model (NO_SHARD replicates everything, 16 B/param), plus stored activations.
pub fn rank_memory_bytes(point: &PointSpec) -> f64 {
    let m = &point.model;
    let model_states = 16.0 * m.trainable_params() as f64;
    // Activations per block after Korthikanti et al. (2022): s*b*h*(34 + 5*a*s/h) bytes in
    // 16-bit; doubled for fp32.
    let bytes_per_value = match point.settings.precision {
        Precision::Fp32 => 2.0,
        Precision::Bf16 => 1.0,
    };
    let block = |tokens: i64, width: i64, heads: i64| {
        let (s, h, a, b) = (tokens as f64, width as f64, heads as f64, f64::from(point.micro_batch));
        s * b * h * (34.0 + 5.0 * a * s / h) * bytes_per_value
    };
    let activations = m.depth as f64 * block(m.visible_patches() + 1, m.width, m.heads)
        + m.decoder_depth as f64 * block(m.patches() + 1, m.decoder_width, m.decoder_heads);
    model_states + activations
}

/// `Ok` if `point` can run on `machine`, else the reason it cannot.
pub fn check(point: &PointSpec, machine: &Machine) -> Result<(), String> {
    if !point.strategy.implemented() {
        return Err(format!("strategy {} is not implemented in this version (only no_shard runs)", point.strategy.name()));
    }
    let needed = rank_memory_bytes(point);
    let available = machine.memory_bytes as f64 / f64::from(point.world_size());
    if needed > available {
        return Err(format!(
            "does not fit: needs ~{:.1} GiB per rank ({} ranks, {} parameters x 16 B + activations), {:.1} GiB available per rank",
            needed / GIB,
            point.world_size(),
            point.model.trainable_params(),
            available / GIB
        ));
    }
    Ok(())
}
