//! Training on one rank: each step draws this rank's share of the global batch, runs forward
//! and backward, reduces gradients through the chosen parallelism, steps the optimizer, and
//! appends what it measured to the rank's spool.

mod adamw;
mod replicated;

pub use adamw::{learning_rate, AdamW};
pub use replicated::{predivide_factor, Replicated};

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::comm::{Comm, CommError};
use crate::data::SyntheticImages;
use crate::metrics::{peak_rss_bytes, Clock, Collectives};
use crate::model::Mae;
use crate::plan::{DeviceKind, PointSpec, Precision, Strategy};
use crate::records::{timestamp, Phases, RankInfo, RecordError, SpoolLine, SpoolWriter, StepRecord};

/// How a model is spread over ranks: where parameters live, which collectives run when.
pub trait Parallelism {
    /// This rank's loss on its images.
    fn forward(&mut self, images: &Tensor, noise: &Tensor, collectives: &mut Collectives) -> Result<Tensor, CommError>;
    fn backward(&mut self, loss: &Tensor, collectives: &mut Collectives) -> Result<(), CommError>;
    /// Collectives left after backward so that every rank holds its averaged gradients.
    fn reduce_gradients(&mut self, collectives: &mut Collectives) -> Result<(), CommError>;
    fn optimizer_step(&mut self, lr: f64);
    /// The whole model's fp32 parameters, one flat tensor per unit (for checks, not hot paths).
    fn full_parameters(&self) -> Vec<Tensor>;
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("strategy {0} is not implemented in this version")]
    Unsupported(&'static str),
    #[error("device {0:?} is not available in this build of libtorch")]
    NoDevice(DeviceKind),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Where this rank sits: ranks are grouped into (possibly simulated) nodes of `ranks_per_node`.
pub fn rank_placement(rank: usize, ranks_per_node: u32) -> (u32, u32) {
    let rpn = ranks_per_node.max(1) as usize;
    ((rank / rpn) as u32, (rank % rpn) as u32)
}

pub fn device_for(kind: DeviceKind, local_rank: u32) -> Result<Device, TrainError> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(local_rank as usize % tch::Cuda::device_count().max(1) as usize)),
        DeviceKind::Cuda => Err(TrainError::NoDevice(kind)),
    }
}

/// Losses of every step on this rank, in order (what `train` returns besides its spool).
pub struct TrainOutcome {
    pub losses: Vec<f64>,
    pub parameters: Vec<Tensor>,
}

/// Trains `point` on this rank, appending to `spool`. Steps already written stay written if
/// this returns an error.
pub fn train(point: &PointSpec, comm: &dyn Comm, spool: &mut SpoolWriter) -> Result<TrainOutcome, TrainError> {
    let (node, local_rank) = rank_placement(comm.rank(), point.ranks_per_node);
    let device = device_for(point.settings.device, local_rank)?;
    tch::set_num_threads(point.settings.threads_per_rank as i32);
    tch::manual_seed(point.settings.seed as i64);
    let model = Mae::new(point.model.clone(), device);
    let compute_kind = match point.settings.precision {
        Precision::Fp32 => Kind::Float,
        Precision::Bf16 => Kind::BFloat16,
    };
    let mut parallel: Box<dyn Parallelism> = match point.strategy {
        Strategy::NoShard => Box::new(Replicated::new(&model, device, compute_kind, &point.optimizer)),
        other => return Err(TrainError::Unsupported(other.name())),
    };
    spool.write(&SpoolLine::Start(rank_info(point, comm, node, local_rank, device)))?;

    let data = SyntheticImages { seed: point.settings.seed, image_size: point.model.image_size, channels: point.model.channels };
    let clock = Clock::new(device);
    let (global_batch, micro_batch) = (u64::from(point.global_batch()), u64::from(point.micro_batch));
    let mut losses = Vec::new();
    for step in 0..point.settings.steps {
        let start = clock.now_s();
        let mut collectives = Collectives::new(comm, &clock, start);
        let first = u64::from(step) * global_batch + comm.rank() as u64 * micro_batch;
        let samples = first..first + micro_batch;
        let images = data.images(samples.clone()).to_device(device);
        let noise = data.mask_noise(samples, point.model.patches()).to_device(device);
        let data_done = clock.now_s();
        let loss = parallel.forward(&images, &noise, &mut collectives)?;
        let forward_done = clock.now_s();
        parallel.backward(&loss, &mut collectives)?;
        let backward_done = clock.now_s();
        parallel.reduce_gradients(&mut collectives)?;
        let reduce_done = clock.now_s();
        let lr = learning_rate(step, point.settings.steps, point.optimizer.lr_warmup_steps, point.peak_lr());
        parallel.optimizer_step(lr);
        let end = clock.now_s();
        let loss = loss.to_kind(Kind::Double).double_value(&[]);
        losses.push(loss);
        let phases = Phases {
            data_s: data_done - start,
            forward_s: forward_done - data_done,
            backward_s: backward_done - forward_done,
            comm_s: collectives.total_s(),
            optimizer_s: end - reduce_done,
            step_s: end - start,
        };
        let record = StepRecord { step, loss, phases, peak_rss_bytes: peak_rss_bytes(), collectives: collectives.into_records() };
        spool.write(&SpoolLine::Step(record))?;
        tracing::debug!(rank = comm.rank(), step, loss, "step done");
    }
    spool.write(&SpoolLine::End { ended_at: timestamp() })?;
    Ok(TrainOutcome { losses, parameters: parallel.full_parameters() })
}

/// Environment variables that change how training or communication behaves.
const ENV_PREFIXES: [&str; 22] = [
    "OMP_", "OMPI_", "PMIX_", "NCCL_", "RCCL_", "MIOPEN_", "HIP_", "ROCR_", "HSA_", "CUDA_", "FI_", "MPICH_", "SLURM_", "TORCH_",
    "PYTORCH_", "MKL_", "OPENBLAS_", "KMP_", "GOMP_", "LD_LIBRARY_PATH", "RUST_LOG", "SHARDSWEEP_",
];

fn rank_info(point: &PointSpec, comm: &dyn Comm, node: u32, local_rank: u32, device: Device) -> RankInfo {
    let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| ENV_PREFIXES.iter().any(|p| k.starts_with(p))).collect();
    RankInfo {
        rank: comm.rank() as u32,
        world_size: point.world_size(),
        node,
        local_rank,
        hostname: hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        pid: std::process::id(),
        device: format!("{device:?}").to_lowercase(),
        threads: tch::get_num_threads() as u32,
        torch_version: env!("SHARDSWEEP_LIBTORCH_VERSION").into(),
        comm_library: comm.library_version(),
        binary_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: env!("SHARDSWEEP_GIT_COMMIT").into(),
        env,
        started_at: timestamp(),
    }
}

/// Runs `point` on this rank with its spool under `point_dir`, recording an error line if
/// training fails so the finalised records say why.
pub fn run_rank(point: &PointSpec, point_dir: &Path, comm: &dyn Comm) -> Result<TrainOutcome, TrainError> {
    let mut spool = SpoolWriter::create(point_dir, comm.rank() as u32)?;
    let result = train(point, comm, &mut spool);
    if let Err(error) = &result {
        let _ = spool.write(&SpoolLine::Error { message: error.to_string() });
    }
    result
}
