//! `shardsweep bench`: what the harness itself costs, measured on this machine, against bare
//! MPI calls and against training with instrumentation switched off. It runs as MPI ranks
//! (`bench-worker`); rank 0 prints the report.
//!
//! - Collectives: for each unit size of a model, the harness's all-gather, reduce-scatter and
//!   all-reduce (tensor in, tensor out, timed and logged) against `MPI_Allgather`,
//!   `MPI_Reduce_scatter_block` and `MPI_Allreduce` on preallocated buffers of the same size.
//! - Steps: full_shard training steps with the clock, collective log, per-unit timers and the
//!   spool line, against the same steps with a clock that measures nothing.
//! - [`sweep`]: collectives over message and group sizes, for calibrating a model of them.

pub mod sweep;

pub mod peak;

use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};
use tch::{Device, Kind, Tensor};

use crate::comm::{Comm, CommError};
use crate::data::SyntheticImages;
use crate::metrics::{Clock, Collectives};
use crate::model::{preset, Mae};
use crate::plan::{BackwardPrefetch, Dtype, OptimizerSettings, ParallelSpec, Strategy};
use crate::records::{SpoolLine, StepRecord};
use crate::train::Sharded;

/// One comparison: the harness's median against the bare median.
pub struct Comparison {
    pub what: String,
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

/// The slowest rank's time of `op`, all ranks starting together.
fn time_once(world: &SimpleCommunicator, op: &mut dyn FnMut()) -> f64 {
    world.barrier();
    let start = Instant::now();
    op();
    let mut slowest = 0.0;
    world.all_reduce_into(&start.elapsed().as_secs_f64(), &mut slowest, SystemOperation::max());
    slowest
}

/// Medians of `harness` and `bare` over `repeats`, alternating them so that drift and noise
/// from the rest of the machine fall on both alike.
fn compare(
    world: &SimpleCommunicator,
    repeats: usize,
    harness: &mut dyn FnMut(),
    bare: &mut dyn FnMut(),
) -> (f64, f64) {
    let (mut h, mut b) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        h.push(time_once(world, harness));
        b.push(time_once(world, bare));
    }
    (median(h), median(b))
}

/// Collectives on every distinct unit size of `model`, sharded over the whole world.
pub fn collectives(
    world: &SimpleCommunicator,
    comm: &dyn Comm,
    model: &str,
    repeats: usize,
) -> Result<Vec<Comparison>, CommError> {
    let size = world.size() as usize;
    let mae = Mae::new(preset(model).expect("a known model"), Device::Cpu);
    let mut sizes: Vec<usize> =
        mae.units().iter().map(|u| (u.numel() as usize).div_ceil(size) * size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let clock = Clock::new(Device::Cpu);
    let mut out = Vec::new();
    for full in sizes {
        let shard = full / size;
        let (shard_tensor, full_tensor) = (
            Tensor::rand([shard as i64], (Kind::Float, Device::Cpu)),
            Tensor::rand([full as i64], (Kind::Float, Device::Cpu)),
        );
        // As in training, outputs are buffers kept from call to call.
        let (shard_out, full_out) = (shard_tensor.empty_like(), full_tensor.empty_like());
        let (send_shard, send_full) = (vec![1.0f32; shard], vec![1.0f32; full]);
        let (mut recv_shard, mut recv_full) = (vec![0.0f32; shard], vec![0.0f32; full]);
        let mut log = Collectives::new(&clock, 0.0);
        let mut failure = None;
        let mut check = |result: Result<(), CommError>| {
            if let Err(e) = result {
                failure = Some(e);
            }
        };
        let detail = format!("{} bytes fp32 over {size} ranks", 4 * full);
        let (h, b) = compare(
            world,
            repeats,
            &mut || check(log.all_gather(comm, 0, &shard_tensor, &full_out)),
            &mut || world.all_gather_into(&send_shard[..], &mut recv_full[..]),
        );
        out.push(Comparison {
            what: "all_gather".into(),
            detail: detail.clone(),
            harness_s: h,
            bare_s: b,
        });
        let (h, b) = compare(
            world,
            repeats,
            &mut || check(log.reduce_scatter_sum(comm, 0, &full_tensor, &shard_out)),
            &mut || {
                world.reduce_scatter_block_into(
                    &send_full[..],
                    &mut recv_shard[..],
                    SystemOperation::sum(),
                )
            },
        );
        out.push(Comparison {
            what: "reduce_scatter".into(),
            detail: detail.clone(),
            harness_s: h,
            bare_s: b,
        });
        let (h, b) = compare(
            world,
            repeats,
            &mut || check(log.all_reduce_sum(comm, 0, &full_tensor, &full_out)),
            &mut || {
                world.all_reduce_into(&send_full[..], &mut recv_full[..], SystemOperation::sum())
            },
        );
        out.push(Comparison { what: "all_reduce".into(), detail, harness_s: h, bare_s: b });
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(out)
}

/// Median step time of full_shard training with and without instrumentation, alternating
/// blocks of steps so that drift affects both alike.
pub fn instrumentation(
    world: &SimpleCommunicator,
    comm: &dyn Comm,
    model: &str,
    micro_batch: u64,
    steps: usize,
) -> Result<Comparison, CommError> {
    tch::manual_seed(0);
    let mae = Mae::new(preset(model).expect("a known model"), Device::Cpu);
    let knobs = ParallelSpec {
        shard_group: world.size() as u32,
        accumulation: 1,
        activation_checkpointing: false,
        backward_prefetch: BackwardPrefetch::Pre,
        limit_all_gathers: true,
        param_dtype: Dtype::Fp32,
        reduce_dtype: Dtype::Fp32,
    };
    let (on, off) = (Clock::new(Device::Cpu), Clock::off());
    let mut engines = [&on, &off].map(|clock| {
        Sharded::new(
            &mae,
            clock,
            comm,
            Strategy::FullShard,
            knobs.clone(),
            Device::Cpu,
            &OptimizerSettings::default(),
        )
    });
    let data = SyntheticImages { seed: 0, image_size: mae.config.image_size, channels: 3 };
    let first = comm.rank() as u64 * micro_batch;
    let (images, noise) = (
        data.images(first..first + micro_batch),
        data.mask_noise(first..first + micro_batch, mae.config.patches()),
    );
    let mut sink = std::io::sink();
    let mut samples = [Vec::new(), Vec::new()];
    for block in 0..samples_per_side(steps) / 5 * 2 {
        let which = block % 2;
        let clock = if which == 0 { &on } else { &off };
        for _ in 0..5 {
            world.barrier();
            let start = Instant::now();
            let step_start = clock.now_s();
            let mut log = Collectives::new(clock, step_start);
            let engine = &mut engines[which];
            let loss = engine.forward(&images, &noise, &mut log)?;
            engine.backward(1.0, true, &mut log)?;
            engine.optimizer_step(1e-4);
            if clock.enabled() {
                let record = StepRecord {
                    step: 0,
                    loss: loss.double_value(&[]),
                    phases: Default::default(),
                    peak_rss_bytes: crate::metrics::peak_rss_bytes(),
                    memory: engine.memory().take_record(),
                    loader: Default::default(),
                    units: engine.take_unit_records(),
                    collectives: log.into_records(),
                };
                serde_json::to_writer(&mut sink, &SpoolLine::Step(record))
                    .expect("a record serialises");
            }
            let mut slowest = 0.0;
            world.all_reduce_into(
                &start.elapsed().as_secs_f64(),
                &mut slowest,
                SystemOperation::max(),
            );
            samples[which].push(slowest);
        }
    }
    let [with, without] = samples;
    let detail = format!(
        "{model}, {micro_batch} images x {} ranks, {} steps each",
        world.size(),
        samples_per_side(steps)
    );
    Ok(Comparison {
        what: "training step".into(),
        detail,
        harness_s: median(with),
        bare_s: median(without),
    })
}

fn samples_per_side(steps: usize) -> usize {
    steps.div_ceil(5) * 5
}
