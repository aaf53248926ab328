//! Training on one rank: each step draws this rank's share of the global batch, runs forward
//! and backward under the point's FSDP strategy (which gathers parameters and reduces
//! gradients), steps the optimizer on this rank's shards, and appends what it measured to the
//! rank's spool.

mod adamw;
mod backward;
mod memory;
mod sharded;

pub use adamw::{learning_rate, point_learning_rate, AdamW};
pub use memory::MemoryAccount;
pub use sharded::{kind_of, predivide_factor, Sharded};

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::comm::{Comm, CommError};
use crate::data::{rank_loader, DataError, Loader, LoaderFigures};
use crate::metrics::timestamp;
use crate::metrics::{device_memory, peak_rss_bytes, reset_device_memory, Clock, Collectives};
use crate::model::Mae;
use crate::plan::{DeviceKind, FaultKind, PointSpec};
use crate::records::{
    write_parameters, DeviceMemoryRecord, Phases, RankInfo, RecordError, SpoolLine, SpoolWriter,
    StepRecord, PARAMETERS_FILE,
};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("device {0:?} is not available in this build of libtorch")]
    NoDevice(DeviceKind),
    /// libtorch reports errors (out of memory among them) as panics in tch.
    #[error("{0}")]
    Panic(String),
    #[error("{0}")]
    Setup(String),
    #[error("loss is {loss} at step {step}: training diverged")]
    NonFiniteLoss { step: u32, loss: f64 },
}

/// Where this rank sits: ranks are grouped into (possibly simulated) nodes of `ranks_per_node`.
pub fn rank_placement(rank: usize, ranks_per_node: u32) -> (u32, u32) {
    let rpn = ranks_per_node.max(1) as usize;
    ((rank / rpn) as u32, (rank % rpn) as u32)
}

pub fn device_for(kind: DeviceKind, local_rank: u32) -> Result<Device, TrainError> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda if tch::Cuda::is_available() => {
            Ok(Device::Cuda(local_rank as usize % tch::Cuda::device_count().max(1) as usize))
        }
        DeviceKind::Cuda => Err(TrainError::NoDevice(kind)),
    }
}

/// What `train` returns besides its spool: this rank's loss at each step and, if asked for,
/// the final parameters (whole units, gathered, with their units' names).
pub struct TrainOutcome {
    pub losses: Vec<f64>,
    pub parameters: Option<Vec<(String, Tensor)>>,
}

/// One rank's training loop for a point: the sharded engine, the loader with this rank's
/// micro-batches, and the clock that times the phases. `train` runs it; `bench` runs it with
/// its clock on and off to measure what instrumentation costs.
pub struct Trainer<'a> {
    point: &'a PointSpec,
    engine: Sharded<'a>,
    loader: Loader,
    clock: &'a Clock,
    device: Device,
}

impl<'a> Trainer<'a> {
    /// Errors: the point's data cannot be opened.
    pub fn new(
        point: &'a PointSpec,
        model: &'a Mae,
        clock: &'a Clock,
        comm: &'a dyn Comm,
        device: Device,
    ) -> Result<Self, TrainError> {
        let engine = Sharded::new(
            model,
            clock,
            comm,
            point.strategy,
            point.parallel.clone(),
            device,
            &point.optimizer,
        );
        let loader = rank_loader(point, comm.rank(), point.loader_workers as usize)?;
        if let Device::Cuda(index) = device {
            // The first step's peaks start from the model's shards, not their initialisation.
            let _ = reset_device_memory(index);
        }
        Ok(Self { point, engine, loader, clock, device })
    }

    /// Runs optimizer step `step` (all its micro-batches) and returns what it measured; the
    /// loss is this rank's mean over its micro-batches. With a clock that is off, phases and
    /// collectives are empty.
    pub fn step(&mut self, step: u32) -> Result<StepRecord, TrainError> {
        let (clock, point) = (self.clock, self.point);
        let accumulation = point.parallel.accumulation;
        let start = clock.begin_step();
        let mut collectives = Collectives::new(clock);
        let mut figures = LoaderFigures::default();
        // Per micro-batch: marks before data, forward, backward and after, and how many
        // collectives had finished at the last three (the waits inside forward and backward).
        let mut windows = Vec::with_capacity(accumulation as usize);
        // Summed on the device and read once the step is over, so reading it waits for nothing
        // the clock does not.
        let mut loss_sum: Option<Tensor> = None;
        for micro in 0..accumulation {
            let t0 = clock.mark();
            let batch = self
                .loader
                .next_batch()
                .ok_or_else(|| TrainError::Setup("the loader ran out of batches".into()))??;
            let images = batch.images.to_device(self.device);
            let noise = batch.noise.to_device(self.device);
            if micro == 0 {
                figures = batch.figures;
            } else {
                figures.add(&batch.figures);
            }
            let (t1, c1) = (clock.mark(), collectives.finished());
            let loss = self.engine.forward(&images, &noise, &mut collectives)?;
            let (t2, c2) = (clock.mark(), collectives.finished());
            self.engine.backward(
                1.0 / f64::from(accumulation),
                micro + 1 == accumulation,
                &mut collectives,
            )?;
            let (t3, c3) = (clock.mark(), collectives.finished());
            let loss = loss.detach().to_kind(Kind::Double);
            loss_sum = Some(match loss_sum {
                Some(sum) => sum + loss,
                None => loss,
            });
            windows.push(([t0, t1, t2, t3], [c1, c2, c3]));
        }
        let optimizer_start = clock.mark();
        let lr = point_learning_rate(point, step);
        self.engine.optimizer_step(lr);
        let end = clock.mark();
        let timeline = clock.timeline(start).map_err(TrainError::Setup)?;
        let collectives = collectives.into_records(&timeline);
        // Folded from +0.0: an empty float sum is -0.0, which records would show.
        let waited = |from: usize, to: usize| -> f64 {
            collectives[from..to].iter().fold(0.0, |sum, c| sum + c.wait_s)
        };
        // Phases partition the step: waits for collectives inside forward and backward count
        // in comm_s only; data_s is the time the step waited for its batch.
        let mut phases = Phases::default();
        for ([t0, t1, t2, t3], [c1, c2, c3]) in windows {
            phases.data_s += timeline.between(t0, t1);
            phases.forward_s += timeline.between(t1, t2) - waited(c1, c2);
            phases.backward_s += timeline.between(t2, t3) - waited(c2, c3);
        }
        phases.optimizer_s = timeline.between(optimizer_start, end);
        phases.comm_s = waited(0, collectives.len());
        phases.step_s = timeline.between(start, end);
        let loss = loss_sum.map_or(f64::NAN, |sum| sum.double_value(&[]));
        Ok(StepRecord {
            step,
            loss: loss / f64::from(accumulation),
            phases,
            peak_rss_bytes: if clock.enabled() { peak_rss_bytes() } else { 0 },
            memory: self.engine.memory().take_record(),
            device_memory: self.device_memory(),
            loader: figures,
            units: self.engine.take_unit_records(&timeline),
            collectives,
        })
    }

    /// The caching allocator's figures for the step just done, on a GPU with the clock on;
    /// starts the next step's peaks. A failure to read them (a libtorch without the
    /// interface) leaves the step without them rather than failing it.
    fn device_memory(&self) -> Option<DeviceMemoryRecord> {
        let Device::Cuda(index) = self.device else { return None };
        if !self.clock.enabled() {
            return None;
        }
        let figures = device_memory(index)
            .inspect_err(|e| tracing::warn!("no device memory figures: {e}"))
            .ok()?;
        let _ = reset_device_memory(index);
        Some(figures)
    }

    /// The final parameters, whole units gathered from their shards.
    pub fn full_parameters(&mut self) -> Result<Vec<Tensor>, TrainError> {
        Ok(self.engine.full_parameters()?)
    }
}

/// Trains `point` on this rank, appending to `spool`. Steps already written stay written if
/// this returns an error.
pub fn train(
    point: &PointSpec,
    comm: &dyn Comm,
    spool: &mut SpoolWriter,
) -> Result<TrainOutcome, TrainError> {
    let (node, local_rank) = rank_placement(comm.rank(), point.ranks_per_node);
    crate::metrics::slow_collective().map_err(TrainError::Setup)?;
    let device = device_for(point.settings.device, local_rank)?;
    tch::set_num_threads(point.settings.threads_per_rank as i32);
    tch::manual_seed(point.settings.seed as i64);
    let model = Mae::new(point.model.clone(), device);
    // Written first, so a rank that hangs or fails while opening its data is known and named.
    spool.write(&SpoolLine::Start(rank_info(point, comm, node, local_rank, device)))?;
    let clock = Clock::new(device, point.timing()).map_err(TrainError::Setup)?;
    let mut trainer = Trainer::new(point, &model, &clock, comm, device)?;
    let mut losses = Vec::new();
    for step in 0..point.settings.steps {
        let mut record = trainer.step(step)?;
        if let Some(fault) = point.fault.filter(|f| f.at_step == step) {
            record.loss = strike(fault.kind, comm, record.loss);
        }
        let loss = record.loss;
        losses.push(loss);
        spool.write(&SpoolLine::Step(record))?;
        if step == 0 {
            // Communication libraries and their network plugins load at the first collective.
            let libraries = crate::records::Fingerprint::of_this_process().libraries;
            spool.write(&SpoolLine::Loaded { libraries })?;
        }
        tracing::debug!(rank = comm.rank(), step, loss, "step done");
        if !loss.is_finite() {
            return Err(TrainError::NonFiniteLoss { step, loss });
        }
    }
    let parameters = if point.settings.save_parameters {
        let names = model.units().iter().map(|u| u.name.clone());
        Some(names.zip(trainer.full_parameters()?).collect())
    } else {
        None
    };
    spool.write(&SpoolLine::End { ended_at: timestamp() })?;
    Ok(TrainOutcome { losses, parameters })
}

/// A planted fault: the last rank aborts or hangs, or every rank's loss turns NaN.
fn strike(kind: FaultKind, comm: &dyn Comm, loss: f64) -> f64 {
    let last = comm.rank() + 1 == comm.size();
    match kind {
        FaultKind::Crash if last => std::process::abort(),
        FaultKind::Hang if last => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        FaultKind::Crash | FaultKind::Hang => loss,
        FaultKind::NanLoss => f64::NAN,
    }
}

/// Environment variables that change how training or communication behaves.
const ENV_PREFIXES: [&str; 24] = [
    "OMP_",
    "UCX_",
    "LOADEDMODULES",
    "OMPI_",
    "PMIX_",
    "NCCL_",
    "RCCL_",
    "MIOPEN_",
    "HIP_",
    "ROCR_",
    "HSA_",
    "CUDA_",
    "FI_",
    "MPICH_",
    "SLURM_",
    "TORCH_",
    "PYTORCH_",
    "MKL_",
    "OPENBLAS_",
    "KMP_",
    "GOMP_",
    "LD_LIBRARY_PATH",
    "RUST_LOG",
    "SHARDSWEEP_",
];

fn rank_info(
    point: &PointSpec,
    comm: &dyn Comm,
    node: u32,
    local_rank: u32,
    device: Device,
) -> RankInfo {
    let env: BTreeMap<String, String> =
        std::env::vars().filter(|(k, _)| ENV_PREFIXES.iter().any(|p| k.starts_with(p))).collect();
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
        fingerprint: crate::records::Fingerprint::of_this_process(),
    }
}

/// Runs `point` on this rank with its spool under `point_dir`, recording an error line if
/// training fails (libtorch errors surface as panics in tch) so the records say why.
pub fn run_rank(
    point: &PointSpec,
    point_dir: &Path,
    comm: &dyn Comm,
) -> Result<TrainOutcome, TrainError> {
    let mut spool = SpoolWriter::create(point_dir, comm.rank() as u32)?;
    if let Some(limit) = point.settings.rank_memory_limit_bytes {
        limit_data_memory(limit)?;
    }
    // Panics here are libtorch errors, caught and recorded below. The default hook would print
    // a backtrace, and at a memory limit that can deadlock: the allocation-failure handler waits
    // for the backtrace lock the printing panic holds.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train(point, comm, &mut spool)));
    std::panic::set_hook(default_hook);
    let result = caught
        .unwrap_or_else(|panic| Err(TrainError::Panic(panic_message(panic.as_ref()))))
        .and_then(|outcome| {
            if let (Some(parameters), 0) = (&outcome.parameters, comm.rank()) {
                let values: Vec<(String, Vec<f32>)> = parameters
                    .iter()
                    .map(|(name, unit)| {
                        let fp32 = unit.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float);
                        let values = Vec::try_from(fp32.contiguous()).expect("a 1-D fp32 tensor");
                        (name.clone(), values)
                    })
                    .collect();
                write_parameters(&point_dir.join(PARAMETERS_FILE), &values)?;
            }
            Ok(outcome)
        });
    if let Err(error) = &result {
        let _ = spool.write(&SpoolLine::Error { message: error.to_string() });
    }
    result
}

/// The panic's message without libtorch's native stack frames.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic without a message".into());
    // tch formats libtorch errors with Debug, so the frames follow an escaped newline.
    let text =
        text.lines().next().unwrap_or_default().split("\\nframe #").next().unwrap_or_default();
    text.chars().take(600).collect()
}

fn limit_data_memory(bytes: u64) -> Result<(), TrainError> {
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
        return Err(TrainError::Setup(format!(
            "cannot limit memory to {bytes} bytes: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
