//! `shardsweep bench`: what the harness itself costs, measured on this machine, against bare
//! MPI calls and against training with instrumentation switched off. It runs as MPI ranks
//! (`bench-worker`); rank 0 prints the report. The collective sweep (`sweep`) runs over any
//! backend, as MPI ranks or as ranks of a c10d group that torchrun or srun started.
//!
//! - Collectives: for each unit size of a model, the harness's all-gather, reduce-scatter and
//!   all-reduce (tensor in, tensor out, timed and logged) against `MPI_Allgather`,
//!   `MPI_Reduce_scatter_block` and `MPI_Allreduce` on preallocated buffers of the same size.
//! - Steps: full_shard training steps of the training loop itself with the clock, collective
//!   log, per-unit timers and the spool line, against the same steps with a clock that measures
//!   nothing.
//! - [`sweep`]: collectives over message and group sizes, for calibrating a model of them.

#[cfg(feature = "mpi")]
mod overhead;
pub mod peak;
pub mod pytorch_fsdp;
pub mod sweep;

#[cfg(feature = "mpi")]
pub use overhead::{collectives, instrumentation};

use crate::model::preset;
use crate::plan::{
    BackwardPrefetch, DataSource, DeviceKind, Dtype, OptimizerSettings, ParallelSpec, PointSpec,
    Settings, Strategy,
};

/// One comparison: the harness's median against the bare median.
pub struct Comparison {
    pub what: String,
    /// The collective library the harness side ran on.
    pub backend: String,
    pub detail: String,
    pub harness_s: f64,
    pub bare_s: f64,
}

impl Comparison {
    pub fn ratio(&self) -> f64 {
        self.harness_s / self.bare_s
    }
}

/// The median as the analysis computes it (statrs: the mean of the middle two for even counts).
fn median(samples: Vec<f64>) -> f64 {
    sweep::quantile(&samples, 0.5)
}

/// A full_shard point of `model` over `world` ranks on one node, on synthetic data.
pub fn bench_point(model: &str, world: u32, micro_batch: u32, steps: usize) -> PointSpec {
    PointSpec {
        sweep: "bench".into(),
        id: format!("bench-{model}"),
        model: preset(model).expect("a known model"),
        strategy: Strategy::FullShard,
        parallel: ParallelSpec {
            shard_group: world,
            accumulation: 1,
            activation_checkpointing: false,
            backward_prefetch: BackwardPrefetch::Pre,
            limit_all_gathers: true,
            param_dtype: Dtype::Fp32,
            reduce_dtype: Dtype::Fp32,
        },
        nodes: 1,
        ranks_per_node: world,
        micro_batch,
        data: DataSource::Synthetic,
        loader_workers: 1,
        settings: Settings {
            steps: steps as u32,
            warmup_steps: 0,
            image_size: None,
            seed: 0,
            device: DeviceKind::Cpu,
            backend: None,
            timing: None,
            threads_per_rank: 1,
            rank_memory_limit_bytes: None,
            save_parameters: false,
            crop_min_scale: None,
        },
        optimizer: OptimizerSettings::default(),
        fault: None,
        system: None,
    }
}
