//! The harness's own costs as MPI ranks (`bench-worker`): its collectives against bare MPI
//! calls, and its training step with instrumentation against the step without.

use std::cell::RefCell;
use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};
use tch::{Device, Kind, Tensor};

use super::{bench_point, median, Comparison};
use crate::comm::{Comm, CommError};
use crate::metrics::{Clock, Collectives};
use crate::model::{preset, Mae};
use crate::records::{CollectiveKind, SpoolLine};
use crate::train::{TrainError, Trainer};

/// The slowest rank's time of `op`, all ranks starting together.
fn time_once(world: &SimpleCommunicator, op: &mut dyn FnMut()) -> f64 {
    world.barrier();
    let start = Instant::now();
    op();
    let mut slowest = 0.0;
    world.all_reduce_into(&start.elapsed().as_secs_f64(), &mut slowest, SystemOperation::max());
    slowest
}

/// Medians of each of `sides` over `repeats`, taking them in turn so that drift and noise from
/// the rest of the machine fall on all alike.
fn compare(world: &SimpleCommunicator, repeats: usize, sides: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(repeats); sides.len()];
    for _ in 0..repeats {
        for (side, out) in sides.iter_mut().zip(&mut samples) {
            out.push(time_once(world, *side));
        }
    }
    samples.into_iter().map(median).collect()
}

/// The harness's all-gather, reduce-scatter and all-reduce through each of `comms` (a name
/// and a group over the whole world), against bare MPI calls on preallocated buffers of the
/// same size, on every distinct unit size of `model` sharded over the world.
pub fn collectives(
    world: &SimpleCommunicator,
    comms: &[(&str, &dyn Comm)],
    model: &str,
    repeats: usize,
) -> Result<Vec<Comparison>, CommError> {
    let size = world.size() as usize;
    let mae = Mae::new(preset(model).expect("a known model"), Device::Cpu);
    let mut sizes: Vec<usize> =
        mae.units().iter().map(|u| (u.numel() as usize).div_ceil(size) * size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let clock = Clock::host(Device::Cpu);
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
        // The harness's sides share the log, and one at a time they run.
        let log = RefCell::new(Collectives::new(&clock));
        let failure = RefCell::new(None);
        let detail = format!("{} bytes fp32 over {size} ranks", 4 * full);
        for kind in CollectiveKind::ALL {
            let mut harness: Vec<Box<dyn FnMut() + '_>> = comms
                .iter()
                .map(|&(_, comm)| {
                    let (log, failure) = (&log, &failure);
                    let (shard_tensor, full_tensor) = (&shard_tensor, &full_tensor);
                    let (shard_out, full_out) = (&shard_out, &full_out);
                    Box::new(move || {
                        let mut log = log.borrow_mut();
                        let result = match kind {
                            CollectiveKind::AllGather => {
                                log.all_gather(comm, 0, shard_tensor, full_out)
                            }
                            CollectiveKind::ReduceScatter => {
                                log.reduce_scatter_sum(comm, 0, full_tensor, shard_out)
                            }
                            CollectiveKind::AllReduce => {
                                log.all_reduce_sum(comm, 0, full_tensor, full_out)
                            }
                        };
                        if let Err(e) = result {
                            *failure.borrow_mut() = Some(e);
                        }
                    }) as Box<dyn FnMut()>
                })
                .collect();
            let mut bare = || match kind {
                CollectiveKind::AllGather => {
                    world.all_gather_into(&send_shard[..], &mut recv_full[..])
                }
                CollectiveKind::ReduceScatter => world.reduce_scatter_block_into(
                    &send_full[..],
                    &mut recv_shard[..],
                    SystemOperation::sum(),
                ),
                CollectiveKind::AllReduce => world.all_reduce_into(
                    &send_full[..],
                    &mut recv_full[..],
                    SystemOperation::sum(),
                ),
            };
            let mut sides: Vec<&mut dyn FnMut()> =
                harness.iter_mut().map(|h| &mut **h as &mut dyn FnMut()).collect();
            sides.push(&mut bare);
            let medians = compare(world, repeats, &mut sides);
            let bare_s = medians[comms.len()];
            for (&(backend, _), &harness_s) in comms.iter().zip(&medians) {
                out.push(Comparison {
                    what: kind.name().into(),
                    backend: backend.into(),
                    detail: detail.clone(),
                    harness_s,
                    bare_s,
                });
            }
        }
        if let Some(e) = failure.into_inner() {
            return Err(e);
        }
    }
    Ok(out)
}

/// Median step time of full_shard training with and without instrumentation, alternating
/// blocks of steps so that drift affects both alike. Both sides run the training loop itself
/// ([`Trainer::step`]); one has the clock, collective log, per-unit timers and the spool line
/// (serialised to nowhere), the other a clock that measures nothing.
pub fn instrumentation(
    world: &SimpleCommunicator,
    (backend, comm): (&str, &dyn Comm),
    model: &str,
    micro_batch: u32,
    steps: usize,
) -> Result<Comparison, TrainError> {
    let point = bench_point(model, comm.size() as u32, micro_batch, samples_per_side(steps));
    tch::manual_seed(0);
    let mae = Mae::new(point.model.clone(), Device::Cpu);
    let (on, off) = (Clock::host(Device::Cpu), Clock::off());
    let mut trainers = [
        Trainer::new(&point, &mae, &on, comm, Device::Cpu)?,
        Trainer::new(&point, &mae, &off, comm, Device::Cpu)?,
    ];
    let mut sink = std::io::sink();
    let mut samples = [Vec::new(), Vec::new()];
    for block in 0..samples_per_side(steps) / 5 * 2 {
        let which = block % 2;
        for _ in 0..5 {
            let step = samples[which].len() as u32;
            world.barrier();
            let start = Instant::now();
            let record = trainers[which].step(step)?;
            if which == 0 {
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
        backend: backend.into(),
        detail,
        harness_s: median(with),
        bare_s: median(without),
    })
}

fn samples_per_side(steps: usize) -> usize {
    steps.div_ceil(5) * 5
}
