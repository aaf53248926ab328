//! What the performance model needs to know of a system's hardware: the `[performance]` table
//! of a system profile (`slurm/<name>.toml`). Every figure is a public default that calibration
//! may replace; the profile names the source of each.

use serde::{de::Error, Deserialize, Deserializer, Serialize};

use crate::plan::Dtype;

/// Hardware figures of one system (all bandwidths in bytes/s, latencies in seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Sustained compute of one rank's device on the widest transformer blocks, FLOP/s
    /// (before calibration: a fraction of the datasheet peak, see `compute_half_width`).
    #[serde(deserialize_with = "positive")]
    pub compute_flop_per_s: f64,
    /// Block width at which a block reaches half of `compute_flop_per_s`: narrow blocks run
    /// small GEMMs at lower efficiency. F(width) = compute_flop_per_s * w / (w + half_width).
    #[serde(deserialize_with = "non_negative")]
    pub compute_half_width: f64,
    /// Backward time over forward time of a unit: 2 for matmul-bound blocks (a gradient for
    /// the input and one for the weights per matmul; fsdp-frontier-vit section 4.3); higher on
    /// CPUs, where autograd's bookkeeping weighs on small blocks. Calibrated from records.
    #[serde(default = "two", deserialize_with = "positive")]
    pub backward_to_forward: f64,
    /// Whether collectives run beside compute (RCCL/NCCL streams) or block it (the MPI backend
    /// on host memory: every collective is exposed).
    #[serde(default = "yes")]
    pub overlap: bool,
    /// Cores that all ranks of a run share (one machine simulating every node); compute slows
    /// by cores / (ranks x threads per rank) when they are oversubscribed. None: each rank
    /// has its own device.
    #[serde(default, deserialize_with = "positive_or_none")]
    pub shared_cores: Option<f64>,
    /// Device memory bandwidth for the (memory-bound) AdamW update, bytes/s.
    #[serde(deserialize_with = "positive")]
    pub memory_bytes_per_s: f64,
    /// Bus bandwidth of a ring over the ranks of one node (all-gather/reduce-scatter busbw).
    #[serde(deserialize_with = "positive")]
    pub intra_node_bytes_per_s: f64,
    /// Bus bandwidth between the two ranks of a pair sharing a package (e.g. MI250X GCDs).
    #[serde(deserialize_with = "positive")]
    pub pair_bytes_per_s: f64,
    /// Latency of one ring step inside a node.
    #[serde(deserialize_with = "non_negative")]
    pub intra_step_s: f64,
    /// Network bandwidth of one NIC and how many ranks share it.
    #[serde(deserialize_with = "positive")]
    pub nic_bytes_per_s: f64,
    pub ranks_per_nic: u32,
    /// Latency of one ring step that crosses the network, at two nodes.
    #[serde(deserialize_with = "non_negative")]
    pub net_ring_step_s: f64,
    /// Latency of one tree step (all-reduce) across the network.
    #[serde(deserialize_with = "non_negative")]
    pub net_tree_step_s: f64,
    /// Fixed start-up of a collective call (kernel launch, protocol set-up).
    #[serde(deserialize_with = "non_negative")]
    pub collective_base_s: f64,
    /// Congestion of long rings: a ring step over N nodes takes 1 + (N - 2) / this as long as
    /// over two (a step waits for the slowest of its hops, and more hops through more switches
    /// and NIC queues make that slowest hop slower; RCCL's all-gather and reduce-scatter are
    /// rings only).
    #[serde(deserialize_with = "positive")]
    pub ring_congestion_nodes: f64,
    /// Host-side input time per image pixel (channels counted; synthetic images are made on
    /// the host, pixel by pixel), seconds.
    #[serde(default, deserialize_with = "non_negative")]
    pub data_s_per_pixel: f64,
    /// Extra memory over the model's own categories, as a fraction (allocator rounding, comm
    /// buffers, workspace).
    #[serde(deserialize_with = "non_negative")]
    pub memory_overhead_fraction: f64,
    /// What the caching allocator holds reserved at the peak beyond what is allocated, as a
    /// fraction of the allocated peak (its rounding of blocks and the fragmentation between
    /// them); calibrated from records' `/device_memory` peaks.
    #[serde(default = "default_reserved_fraction", deserialize_with = "non_negative")]
    pub memory_reserved_fraction: f64,
    /// Knobs of measurement-table rows that do not state them (the table's columns are only
    /// model, strategy, shard group, layout and micro-batch).
    #[serde(default)]
    pub measurement_defaults: MeasurementDefaults,
}

/// Knobs assumed for measurement rows without columns for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementDefaults {
    pub activation_checkpointing: bool,
    pub param_dtype: Dtype,
    pub reduce_dtype: Dtype,
}

/// Reserved over allocated at the peak with no records to calibrate it: PyTorch's caching
/// allocator rounds large blocks up to 2 MiB and keeps freed blocks for reuse; 10% is the scale
/// of `max_memory_reserved / max_memory_allocated` in steady training loops.
fn default_reserved_fraction() -> f64 {
    0.10
}

/// A figure of the profile that must be finite and above 0 (a bandwidth, a rate): `inf`,
/// `nan` and `1e999` are refused, and the TOML error names the line, the key and the value.
fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(D::Error::custom(format!("{v} is not a finite number above 0")))
    }
}

/// A figure that must be finite and at least 0 (a latency, a fraction).
fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(D::Error::custom(format!("{v} is not a finite number of at least 0")))
    }
}

fn positive_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        Some(v) if !(v.is_finite() && v > 0.0) => {
            Err(D::Error::custom(format!("{v} is not a finite number above 0")))
        }
        v => Ok(v),
    }
}

fn two() -> f64 {
    2.0
}

fn yes() -> bool {
    true
}

impl Default for MeasurementDefaults {
    fn default() -> Self {
        Self {
            activation_checkpointing: false,
            param_dtype: Dtype::Fp32,
            reduce_dtype: Dtype::Fp32,
        }
    }
}

impl Hardware {
    /// A stand-in for systems whose profile has no `[performance]` table: this machine, whose
    /// cores every rank shares, ranks talking through shared memory. Calibrate before trusting
    /// its numbers.
    pub fn fallback() -> Self {
        Self {
            compute_flop_per_s: 2e10,
            compute_half_width: 64.0,
            backward_to_forward: 2.0,
            overlap: false,
            shared_cores: std::thread::available_parallelism().ok().map(|n| n.get() as f64),
            memory_bytes_per_s: 1e10,
            intra_node_bytes_per_s: 2e9,
            pair_bytes_per_s: 2e9,
            intra_step_s: 5e-6,
            nic_bytes_per_s: 2e9,
            ranks_per_nic: 1,
            net_ring_step_s: 5e-6,
            net_tree_step_s: 5e-6,
            collective_base_s: 1e-5,
            ring_congestion_nodes: 1e9,
            data_s_per_pixel: 0.0,
            memory_overhead_fraction: 0.0,
            memory_reserved_fraction: default_reserved_fraction(),
            measurement_defaults: MeasurementDefaults::default(),
        }
    }

    /// Sustained FLOP/s of a block of this width (before any per-model calibration).
    pub fn block_flop_per_s(&self, width: f64) -> f64 {
        self.compute_flop_per_s * width / (width + self.compute_half_width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback profile as TOML with `key`'s line replaced by `key = value`.
    fn with(key: &str, value: &str) -> String {
        let text = toml::to_string(&Hardware::fallback()).unwrap();
        let replaced: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} =")) {
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        replaced.join("\n")
    }

    #[test]
    fn a_profile_figure_that_is_not_finite_or_in_range_is_refused_naming_line_and_key() {
        assert_eq!(
            toml::from_str::<Hardware>(&with("nic_bytes_per_s", "1e9")).unwrap().nic_bytes_per_s,
            1e9
        );
        for (key, value) in [
            ("compute_flop_per_s", "inf"),
            ("nic_bytes_per_s", "1e999"),
            ("memory_bytes_per_s", "nan"),
            ("intra_step_s", "-1e-6"),
            ("ring_congestion_nodes", "0.0"),
            ("memory_overhead_fraction", "-inf"),
        ] {
            let text = with(key, value);
            let line = text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
            let error = toml::from_str::<Hardware>(&text).unwrap_err().to_string();
            assert!(
                error.contains(&format!("line {line}"))
                    && error.contains(key)
                    && (error.contains("is not a finite number")
                        // toml refuses 1e999 itself, with the line shown the same way.
                        || value == "1e999" && error.contains("overflowed")),
                "{key} = {value}: {error}"
            );
        }
    }
}
