//! What the performance model needs to know of a system's hardware: the `[performance]` table
//! of a system profile (`slurm/<name>.toml`). Every figure is a public default that calibration
//! may replace; the profile names the source of each.

use serde::{Deserialize, Serialize};

use crate::plan::Dtype;

/// Hardware figures of one system (all bandwidths in bytes/s, latencies in seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Sustained compute of one rank's device on the widest transformer blocks, FLOP/s
    /// (before calibration: a fraction of the datasheet peak, see `compute_half_width`).
    pub compute_flop_per_s: f64,
    /// Block width at which a block reaches half of `compute_flop_per_s`: narrow blocks run
    /// small GEMMs at lower efficiency. F(width) = compute_flop_per_s * w / (w + half_width).
    pub compute_half_width: f64,
    /// Backward time over forward time of a unit: 2 for matmul-bound blocks (a gradient for
    /// the input and one for the weights per matmul; fsdp-frontier-vit section 4.3); higher on
    /// CPUs, where autograd's bookkeeping weighs on small blocks. Calibrated from records.
    #[serde(default = "two")]
    pub backward_to_forward: f64,
    /// Whether collectives run beside compute (RCCL/NCCL streams) or block it (the MPI backend
    /// on host memory: every collective is exposed).
    #[serde(default = "yes")]
    pub overlap: bool,
    /// Cores that all ranks of a run share (one machine simulating every node); compute slows
    /// by cores / (ranks x threads per rank) when they are oversubscribed. None: each rank
    /// has its own device.
    #[serde(default)]
    pub shared_cores: Option<f64>,
    /// Device memory bandwidth for the (memory-bound) AdamW update, bytes/s.
    pub memory_bytes_per_s: f64,
    /// Bus bandwidth of a ring over the ranks of one node (all-gather/reduce-scatter busbw).
    pub intra_node_bytes_per_s: f64,
    /// Bus bandwidth between the two ranks of a pair sharing a package (e.g. MI250X GCDs).
    pub pair_bytes_per_s: f64,
    /// Latency of one ring step inside a node.
    pub intra_step_s: f64,
    /// Network bandwidth of one NIC and how many ranks share it.
    pub nic_bytes_per_s: f64,
    pub ranks_per_nic: u32,
    /// Latency of one ring step that crosses the network, at two nodes.
    pub net_ring_step_s: f64,
    /// Latency of one tree step (all-reduce) across the network.
    pub net_tree_step_s: f64,
    /// Fixed start-up of a collective call (kernel launch, protocol set-up).
    pub collective_base_s: f64,
    /// Congestion of long rings: a ring step over N nodes takes 1 + (N - 2) / this as long as
    /// over two (a step waits for the slowest of its hops, and more hops through more switches
    /// and NIC queues make that slowest hop slower; RCCL's all-gather and reduce-scatter are
    /// rings only).
    pub ring_congestion_nodes: f64,
    /// Host-side input time per image pixel (channels counted; synthetic images are made on
    /// the host, pixel by pixel), seconds.
    #[serde(default)]
    pub data_s_per_pixel: f64,
    /// Extra memory over the model's own categories, as a fraction (allocator rounding, comm
    /// buffers, workspace).
    pub memory_overhead_fraction: f64,
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
            measurement_defaults: MeasurementDefaults::default(),
        }
    }

    /// Sustained FLOP/s of a block of this width (before any per-model calibration).
    pub fn block_flop_per_s(&self, width: f64) -> f64 {
        self.compute_flop_per_s * width / (width + self.compute_half_width)
    }
}
