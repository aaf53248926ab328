//! PyTorch FSDP's sharding strategies over any [`Comm`], driven stage by stage (tch has no
//! module hooks, so the loop below plays the part of FSDP's pre/post forward and backward
//! hooks). Each unit is one flat parameter, padded to a multiple of the shard group; each rank
//! keeps fp32 master weights and AdamW moments for its contiguous shard only, and the shard's
//! gradient from its reduction to the optimizer step.
//!
//! | strategy | shard group S | after forward | gradient reduction |
//! |---|---|---|---|
//! | no_shard | 1 | kept | all-reduce over the world |
//! | full_shard | world | freed (root kept), gathered again for backward | reduce-scatter |
//! | shard_grad_op | world | kept until after backward | reduce-scatter |
//! | hybrid_shard | chosen | freed (root kept) | reduce-scatter in the group, all-reduce of the shard across groups |
//! | hybrid_shard_zero2 | chosen | kept until after backward | as hybrid_shard |
//!
//! Prefetching all-gathers are non-blocking: in forward the next block's gather starts before
//! this stage computes, in backward as `backward_prefetch` says (`pre`: before this unit's
//! gradient compute; `post`: after it, before its reduction; `none`: when the next unit's
//! backward starts, blocking). Whether a started gather progresses during compute is up to the
//! backend (the records' `wait_s` shows what was exposed; c10d runs gathers on its own threads
//! or streams). In forward the host issues gathers as far ahead as it may: every later block
//! at once without `limit_all_gathers`, at most two in flight with it (PyTorch's rate limiter,
//! which caps unsharded parameters at two units; here the host computes synchronously, so the
//! cap falls on gathers in flight). The records' `in_flight` shows which held.

use tch::{Kind, Tensor};

use super::adamw::AdamW;
use super::backward::{backward_with, take_grad};
use super::memory::MemoryAccount;
use crate::comm::{Comm, CommError};
use crate::metrics::{Clock, Collectives, InFlight, Mark, Timeline};
use crate::model::{init_unit, Mae, Masked, Stage};
use crate::plan::{BackwardPrefetch, Dtype, ParallelSpec, Strategy};
use crate::records::CollectiveKind::{AllGather, AllReduce, ReduceScatter};
use crate::records::UnitRecord;

/// FSDP divides gradients by f before the reduction and by world/f after it, to keep low
/// precision sums in range; f is the largest power of two with world % f == 0 and world/f > f
/// (torch.distributed.fsdp `_get_gradient_predivide_factor`, with world = shard group x
/// replicas for the hybrid strategies).
pub fn predivide_factor(world: usize) -> f64 {
    let mut factor = 1;
    while world.is_multiple_of(factor) && world / factor > factor {
        factor *= 2;
    }
    factor as f64
}

pub fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::Fp32 => Kind::Float,
        Dtype::Bf16 => Kind::BFloat16,
    }
}

/// One unit's flat parameter on this rank.
struct FlatUnit {
    /// Elements of the unit before padding.
    numel: i64,
    /// This rank's chunk of the padded fp32 master parameters (updated in place only: the
    /// optimizer holds views of it).
    shard: Tensor,
    /// Averaged fp32 gradient of the shard from this step's reduction; none from the optimizer
    /// step to the next reduction, as PyTorch's `zero_grad(set_to_none=True)` leaves it, so it
    /// takes no memory while forward's activations do.
    grad: Option<Tensor>,
    /// The whole padded unit in `param_dtype`, a leaf that collects gradients, while gathered.
    gathered: Option<Tensor>,
    /// Gradients summed over micro-batches whose reduction was skipped (accumulation).
    unsharded_grad: Option<Tensor>,
}

/// Unit, the phase's field of its record, and the interval.
type UnitTiming = (usize, fn(&mut UnitRecord) -> &mut f64, Mark, Mark);

/// A forward stage awaiting its backward.
struct Saved {
    stage: Stage,
    /// The stage's input, cut from the previous stage's graph (a leaf that collects gradients).
    input: Option<Tensor>,
    /// Output with its graph, or `None` if the stage was checkpointed (recomputed in backward).
    output: Option<Tensor>,
    /// The parameters the forward used (kept by the graph when not checkpointed).
    params: Option<Tensor>,
    /// What the memory account counts for `input` and `output`.
    bytes: usize,
}

pub struct Sharded<'m> {
    model: &'m Mae,
    clock: &'m Clock,
    strategy: Strategy,
    knobs: ParallelSpec,
    shard_group: Box<dyn Comm>,
    replicas: Box<dyn Comm>,
    world: usize,
    units: Vec<FlatUnit>,
    /// AdamW over every unit's shard.
    optimizer: AdamW,
    saved: Vec<Saved>,
    batch: Option<Masked>,
    /// Per-unit compute intervals of the step so far: unit, phase, start, end.
    timings: Vec<UnitTiming>,
    memory: MemoryAccount,
    /// Gather buffers no tensor in use refers to any more, reused by the next gather of the
    /// same size (what PyTorch's caching allocator does for FSDP's freed parameters).
    free_buffers: Vec<Tensor>,
    /// Gathers started ahead of the stages that need them, oldest first.
    prefetch: std::collections::VecDeque<Prefetch>,
    /// Gradient reductions in flight: started at a unit's post-backward, completed at the next
    /// unit's (or at the end of backward).
    reductions: Vec<Reduction>,
}

/// A unit's gradient reduction in flight, overlapping the backward of the unit before it (as
/// FSDP's reduce-scatter runs on its own stream while the next unit's gradients are computed).
struct Reduction {
    unit: usize,
    in_flight: InFlight,
    /// Where the reduction lands, in `reduce_dtype`.
    output: Tensor,
    /// The hybrid strategies' second step: all-reduce `output` across the replicas once the
    /// reduce-scatter is done.
    then_all_reduce: bool,
}

/// An all-gather started ahead of the stage that needs it.
struct Prefetch {
    unit: usize,
    in_flight: InFlight,
    /// Where the gather lands.
    output: Tensor,
    /// The parameters a forward graph still holds, whose memory `output` is; `None` when
    /// `output` is a buffer that becomes the unit's new leaf.
    used: Option<Tensor>,
}

impl<'m> Sharded<'m> {
    /// Initialises every unit in order from the global generator (seed it first), so all ranks
    /// start from the same weights without a broadcast, then keeps this rank's shard of each.
    pub fn new(
        model: &'m Mae,
        clock: &'m Clock,
        comm: &dyn Comm,
        strategy: Strategy,
        knobs: ParallelSpec,
        device: tch::Device,
        settings: &crate::plan::OptimizerSettings,
    ) -> Self {
        let (rank, world, s) = (comm.rank(), comm.size(), knobs.shard_group as usize);
        assert!(
            s >= 1 && world % s == 0,
            "shard group {s} must divide world {world} (checked at plan time)"
        );
        // Consecutive ranks shard together; ranks with the same position across groups replicate.
        let shard_group = comm.split((rank / s) as u32, rank as u32);
        let replicas = comm.split((rank % s) as u32, rank as u32);
        let position = shard_group.rank() as i64;
        let units = model
            .units()
            .iter()
            .map(|layout| {
                let numel = layout.numel();
                let chunk = (numel + s as i64 - 1) / s as i64;
                let pad = chunk * s as i64 - numel;
                let full = Tensor::cat(
                    &[init_unit(layout), Tensor::zeros([pad], (Kind::Float, tch::Device::Cpu))],
                    0,
                );
                let shard = full.narrow(0, position * chunk, chunk).contiguous().to_device(device);
                FlatUnit { numel, shard, grad: None, gathered: None, unsharded_grad: None }
            })
            .collect::<Vec<_>>();
        let shards: Vec<_> = units
            .iter()
            .zip(model.units())
            .map(|(unit, layout)| {
                let chunk = unit.shard.size()[0];
                (&unit.shard, layout.decay_ranges(position * chunk..(position + 1) * chunk))
            })
            .collect();
        let optimizer = AdamW::new(&shards, settings.clone());
        let memory = MemoryAccount::new(
            units.iter().map(|u| u.shard.numel()).sum::<usize>(),
            optimizer.state_bytes(),
        );
        Self {
            model,
            clock,
            strategy,
            knobs,
            shard_group,
            replicas,
            world,
            units,
            optimizer,
            saved: Vec::new(),
            batch: None,
            timings: Vec::new(),
            memory,
            free_buffers: Vec::new(),
            prefetch: std::collections::VecDeque::new(),
            reductions: Vec::new(),
        }
    }

    fn param_kind(&self) -> Kind {
        kind_of(self.knobs.param_dtype)
    }

    fn is_block(stage: Stage) -> bool {
        matches!(stage, Stage::Encoder(_) | Stage::Decoder(_))
    }

    /// The gathered parameters of `unit` (a leaf collecting gradients), gathering them if
    /// needed: FSDP's unshard. `used`: the parameters a not-checkpointed forward graph still
    /// holds, into whose memory a backward gather writes (autograd's saved copy is the same
    /// memory and the same values).
    fn unshard(
        &mut self,
        unit: usize,
        used: Option<Tensor>,
        collectives: &mut Collectives,
    ) -> Result<Tensor, CommError> {
        if let Some(leaf) = &self.units[unit].gathered {
            return Ok(leaf.shallow_clone());
        }
        if self.shard_group.size() == 1 {
            // One rank holds the whole unit: compute reads the fp32 shard itself (or its cast),
            // or the tensor a forward graph still holds.
            let leaf = used.unwrap_or_else(|| {
                self.units[unit].shard.detach().to_kind(self.param_kind()).set_requires_grad(true)
            });
            self.memory.gathered(unit, leaf.numel() * leaf.kind().elt_size_in_bytes());
            self.units[unit].gathered = Some(leaf);
        } else {
            if !self.prefetch.iter().any(|p| p.unit == unit) {
                // At the limit, the oldest gather completes first to make room.
                if self.prefetch.len() >= self.max_in_flight() {
                    let oldest = self.prefetch[0].unit;
                    self.complete_prefetch(oldest, collectives);
                }
                self.start_prefetch(unit, used, collectives)?;
            }
            self.complete_prefetch(unit, collectives);
        }
        Ok(self.units[unit].gathered.as_ref().expect("gathered above").shallow_clone())
    }

    /// Starts gathering `unit` (into the memory of `used`, if given) unless it is gathered,
    /// being gathered, or held whole by this rank.
    fn start_prefetch(
        &mut self,
        unit: usize,
        used: Option<Tensor>,
        collectives: &mut Collectives,
    ) -> Result<(), CommError> {
        if self.units[unit].gathered.is_some()
            || self.prefetch.iter().any(|p| p.unit == unit)
            || self.prefetch.len() >= self.max_in_flight()
            || self.shard_group.size() == 1
        {
            return Ok(());
        }
        let low = self.units[unit].shard.detach().to_kind(self.param_kind());
        let output = match used.as_ref() {
            Some(used) => used.data(),
            None => self.free_buffer(unit),
        };
        let in_flight =
            collectives.start(AllGather, self.shard_group.as_ref(), unit, &low, &output)?;
        self.prefetch.push_back(Prefetch { unit, in_flight, output, used });
        Ok(())
    }

    /// All-gathers allowed in flight at once: two under `limit_all_gathers` (PyTorch's rate
    /// limiter, `_FreeEventQueue` of two), else no limit.
    fn max_in_flight(&self) -> usize {
        if self.knobs.limit_all_gathers {
            2
        } else {
            usize::MAX
        }
    }

    /// Waits for the gather of `unit` in flight, if any, and makes its result the unit's
    /// parameters.
    fn complete_prefetch(&mut self, unit: usize, collectives: &mut Collectives) {
        let Some(position) = self.prefetch.iter().position(|p| p.unit == unit) else { return };
        let Prefetch { unit, in_flight, output, used } =
            self.prefetch.remove(position).expect("found above");
        collectives.finish(in_flight);
        let leaf = used.unwrap_or_else(|| output.detach().set_requires_grad(true));
        self.memory.gathered(unit, leaf.numel() * leaf.kind().elt_size_in_bytes());
        self.units[unit].gathered = Some(leaf);
    }

    /// A buffer for the whole of `unit`: a free one of its size, else a new one.
    fn free_buffer(&mut self, unit: usize) -> Tensor {
        let numel = self.units[unit].shard.numel() * self.shard_group.size();
        let kind = self.param_kind();
        match self.free_buffers.iter().position(|b| b.numel() == numel && b.kind() == kind) {
            Some(i) => self.free_buffers.swap_remove(i),
            None => Tensor::empty([numel as i64], (kind, self.units[unit].shard.device())),
        }
    }

    /// FSDP's reshard: the gathered parameters are released. Their buffer is reused only if
    /// no autograd graph still reads it (`reusable`).
    fn reshard(&mut self, unit: usize, reusable: bool) {
        if let Some(leaf) = self.units[unit].gathered.take() {
            self.memory.released(unit);
            if reusable && self.shard_group.size() > 1 {
                self.free_buffers.push(leaf.detach());
            }
        }
    }

    /// Before a stage's backward: its parameters, gathered again if they were freed.
    fn regather(&mut self, index: usize, collectives: &mut Collectives) -> Result<(), CommError> {
        let unit = self.model.unit_of(self.saved[index].stage);
        let used = self.saved[index].params.as_ref().map(Tensor::shallow_clone);
        self.unshard(unit, used, collectives).map(|_| ())
    }

    /// FSDP's post-backward for `unit`: reduce its gradient (or keep accumulating it), then
    /// reshard.
    fn post_backward(
        &mut self,
        unit: usize,
        sync: bool,
        collectives: &mut Collectives,
    ) -> Result<(), CommError> {
        let mut leaf = self.units[unit]
            .gathered
            .as_ref()
            .expect("a unit is gathered during its backward")
            .shallow_clone();
        let local = take_grad(&mut leaf).expect("a unit's backward gives it a gradient");
        let bytes = |t: &Tensor| t.numel() * t.kind().elt_size_in_bytes();
        let total = match self.units[unit].unsharded_grad.take() {
            Some(mut earlier) => {
                // Autograd's new gradient is held beside the accumulated one until added.
                self.memory.unsharded_grad(unit, bytes(&earlier) + bytes(&local));
                let _ = earlier.g_add_(&local);
                drop(local);
                earlier
            }
            None => local,
        };
        if sync {
            // `total` is this unit's own (taken from the leaf), so it (or its cast to
            // reduce_dtype) is scaled in place.
            let mut scaled = total.to_kind(kind_of(self.knobs.reduce_dtype));
            let factor = predivide_factor(self.world);
            if factor != 1.0 {
                let _ = scaled.g_div_scalar_(factor);
            }
            // The unreduced gradient stays allocated until its reduction completes; a cast to
            // reduce_dtype is a second tensor beside autograd's until this returns (the same
            // tensor when the dtypes agree).
            let cast = if scaled.kind() == total.kind() { 0 } else { bytes(&total) };
            self.memory.unsharded_grad(unit, bytes(&scaled) + cast);
            let (shard_group, replicas) = (self.shard_group.as_ref(), self.replicas.as_ref());
            let reduction = if self.world == 1 {
                // Nothing to reduce: the scaled gradient is the shard's.
                self.units[unit].grad = Some(scaled.to_kind(Kind::Float));
                self.memory.unsharded_grad(unit, 0);
                None
            } else {
                let hybrid = shard_group.size() > 1 && replicas.size() > 1;
                let (in_flight, output) = if shard_group.size() > 1 {
                    // The reduction's output is allocated now, in the reduction's dtype, as
                    // FSDP allocates the sharded gradient (cast to fp32 once reduced).
                    let shape = self.units[unit].shard.size();
                    let output = Tensor::empty(shape.as_slice(), (scaled.kind(), scaled.device()));
                    (collectives.start(ReduceScatter, shard_group, unit, &scaled, &output)?, output)
                } else {
                    // The whole unit is the shard: reduced in place where the library can.
                    let output = replicas.all_reduce_output(&scaled);
                    (collectives.start(AllReduce, replicas, unit, &scaled, &output)?, output)
                };
                Some(Reduction { unit, in_flight, output, then_all_reduce: hybrid })
            };
            // At most one unit's reduction overlaps the next unit's backward: the earlier one
            // completes now, so unreduced gradients are held for two units (the one in flight
            // and this one, as in FSDP), not the model.
            self.reap_reductions(collectives)?;
            if reduction.is_some() {
                drop(total);
                self.memory.unsharded_grad(unit, bytes(&scaled));
            }
            self.reductions.extend(reduction);
        } else {
            self.memory.unsharded_grad(unit, bytes(&total));
            self.units[unit].unsharded_grad = Some(total);
        }
        // Without a reduction, strategies that keep parameters after forward keep them for the
        // next micro-batch too (no_sync); otherwise they are freed after backward.
        if sync || self.strategy.reshards_after_forward() {
            self.reshard(unit, true);
        }
        Ok(())
    }

    /// The next block to be gathered for backward after the stage at `index`, if it was freed.
    fn prefetch_target(&self, index: usize) -> Option<usize> {
        (0..index)
            .rev()
            .find(|&j| Self::is_block(self.saved[j].stage))
            .filter(|&j| self.units[self.model.unit_of(self.saved[j].stage)].gathered.is_none())
    }

    /// Starts the backward gather of the stage at `index` (into the parameters its forward
    /// graph holds, if it was not checkpointed).
    fn prefetch_for_backward(
        &mut self,
        index: usize,
        collectives: &mut Collectives,
    ) -> Result<(), CommError> {
        let unit = self.model.unit_of(self.saved[index].stage);
        let used = self.saved[index].params.as_ref().map(Tensor::shallow_clone);
        self.start_prefetch(unit, used, collectives)
    }

    /// Notes that unit `unit` spent from `start` to now in the phase `field` picks.
    fn time_unit(&mut self, unit: usize, start: Mark, field: fn(&mut UnitRecord) -> &mut f64) {
        if self.clock.enabled() {
            self.timings.push((unit, field, start, self.clock.mark()));
        }
    }
}

impl Sharded<'_> {
    /// This rank's loss on its images; keeps what backward needs.
    pub fn forward(
        &mut self,
        images: &Tensor,
        noise: &Tensor,
        collectives: &mut Collectives,
    ) -> Result<Tensor, CommError> {
        let batch = self.model.mask(images, noise);
        let mut x: Option<Tensor> = None;
        let stages = self.model.stages();
        for (i, &stage) in stages.iter().enumerate() {
            let unit = self.model.unit_of(stage);
            let params = self.unshard(unit, None, collectives)?;
            // FSDP's forward prefetch: later blocks' gathers run while this stage computes, as
            // many as the limit allows.
            for &next in stages[i + 1..].iter().filter(|s| Self::is_block(**s)) {
                if self.prefetch.len() >= self.max_in_flight() {
                    break;
                }
                self.start_prefetch(self.model.unit_of(next), None, collectives)?;
            }
            let start = self.clock.mark();
            let input = x.map(|t| t.detach().set_requires_grad(true));
            // The padded unit goes whole: the model's views skip the padding in the same split
            // that cuts the parameters, where a narrow first would add a backward pass that
            // zero-fills and copies the whole unit.
            let checkpointed = self.knobs.activation_checkpointing && Self::is_block(stage);
            let output = if checkpointed {
                tch::no_grad(|| self.model.run(stage, &params, input.as_ref(), &batch))
            } else {
                self.model.run(stage, &params, input.as_ref(), &batch)
            };
            let bytes = input.as_ref().map_or(0, |t| t.numel() * t.kind().elt_size_in_bytes())
                + if checkpointed { 0 } else { output.numel() * output.kind().elt_size_in_bytes() };
            self.memory.activations(bytes);
            self.saved.push(Saved {
                stage,
                bytes,
                input,
                output: (!checkpointed).then(|| output.shallow_clone()),
                params: (!checkpointed).then_some(params),
            });
            if Self::is_block(stage) && self.strategy.reshards_after_forward() {
                // Without checkpointing the forward graph still reads these parameters.
                self.reshard(unit, checkpointed);
            }
            self.time_unit(unit, start, |t| &mut t.forward_s);
            x = Some(output);
        }
        self.batch = Some(batch);
        Ok(x.expect("a model has stages"))
    }

    /// Backward through every stage in reverse, scaling the loss by `loss_scale`; each unit's
    /// gradient is reduced at its post-backward if `sync`, else accumulated (no_sync).
    pub fn backward(
        &mut self,
        loss_scale: f64,
        sync: bool,
        collectives: &mut Collectives,
    ) -> Result<(), CommError> {
        let batch = self.batch.take().expect("forward runs before backward");
        let mut upstream: Option<Tensor> = None;
        for index in (0..self.saved.len()).rev() {
            let stage = self.saved[index].stage;
            let unit = self.model.unit_of(stage);
            self.regather(index, collectives)?;
            let next = if Self::is_block(stage) { self.prefetch_target(index) } else { None };
            if let (Some(j), BackwardPrefetch::Pre) = (next, self.knobs.backward_prefetch) {
                self.prefetch_for_backward(j, collectives)?;
            }
            let start = self.clock.mark();
            let input = self.saved[index].input.as_ref().map(Tensor::shallow_clone);
            let output = match self.saved[index].output.as_ref().map(Tensor::shallow_clone) {
                Some(output) => output,
                None => {
                    let params = self.units[unit]
                        .gathered
                        .as_ref()
                        .expect("gathered for backward")
                        .shallow_clone();
                    let recomputed = self.model.run(stage, &params, input.as_ref(), &batch);
                    self.time_unit(unit, start, |t| &mut t.recompute_s);
                    recomputed
                }
            };
            let start_backward = self.clock.mark();
            match upstream.take() {
                None => (output * loss_scale).backward(),
                Some(gradient) => backward_with(&output, &gradient),
            }
            upstream = input.map(|input| input.grad().detach());
            // Autograd freed the stage's graph; its input, output and parameters go too, as an
            // eager backward frees activations while it makes gradients.
            let done = &mut self.saved[index];
            (done.input, done.output, done.params) = (None, None, None);
            self.memory.activations_freed(done.bytes);
            self.time_unit(unit, start_backward, |t| &mut t.backward_s);
            if let (Some(j), BackwardPrefetch::Post) = (next, self.knobs.backward_prefetch) {
                self.prefetch_for_backward(j, collectives)?;
            }
            // A unit's post-backward runs when its earliest forward stage has had its backward.
            let last_use = !(0..index).any(|j| self.model.unit_of(self.saved[j].stage) == unit);
            if last_use {
                self.post_backward(unit, sync, collectives)?;
            }
        }
        // Each stage freed its tensors (and its share of the account) above.
        self.saved.clear();
        self.finish_reductions(collectives)
    }

    /// Completes the reductions in flight: each overlapped the backward of the unit after it.
    /// A hybrid strategy's completed reduce-scatter frees its unreduced gradient and starts the
    /// all-reduce across replicas at once (FSDP issues it right after the reduce-scatter), to be
    /// completed at the next call; a completed reduction is divided by what the pre-division
    /// left, in `reduce_dtype` as FSDP divides it, then cast to the fp32 gradient shard.
    fn reap_reductions(&mut self, collectives: &mut Collectives) -> Result<(), CommError> {
        let post = self.world as f64 / predivide_factor(self.world);
        let mut next = Vec::new();
        for reduction in std::mem::take(&mut self.reductions) {
            let unit = reduction.unit;
            collectives.finish(reduction.in_flight);
            self.memory.unsharded_grad(unit, 0);
            if reduction.then_all_reduce {
                let replicas = self.replicas.as_ref();
                // In place where the library reduces in place (FSDP all-reduces the
                // reduce-scatter's output itself); a second buffer for MPI.
                let input = &reduction.output;
                let output = replicas.all_reduce_output(input);
                let in_flight = collectives.start(AllReduce, replicas, unit, input, &output)?;
                next.push(Reduction { unit, in_flight, output, then_all_reduce: false });
            } else {
                let mut reduced = reduction.output;
                if post != 1.0 {
                    let _ = tch::no_grad(|| reduced.g_div_scalar_(post));
                }
                // In fp32 (the output itself when reduced in fp32).
                self.units[unit].grad = Some(reduced.to_kind(Kind::Float));
            }
        }
        self.reductions = next;
        Ok(())
    }

    /// FSDP's post-backward final callback: waits for every gradient reduction still in flight.
    fn finish_reductions(&mut self, collectives: &mut Collectives) -> Result<(), CommError> {
        while !self.reductions.is_empty() {
            self.reap_reductions(collectives)?;
        }
        Ok(())
    }

    /// AdamW on every shard, locally (no collective), one fused kernel call per parameter
    /// group; the gradients are released after it.
    pub fn optimizer_step(&mut self, lr: f64) {
        let grads: Vec<Tensor> = self
            .units
            .iter_mut()
            .map(|u| u.grad.take().expect("every unit's gradient is reduced before the step"))
            .collect();
        self.optimizer.step(&grads.iter().collect::<Vec<_>>(), lr);
    }

    /// The whole model's fp32 parameters, one flat tensor per unit (a collective: for checks,
    /// outside timed steps).
    pub fn full_parameters(&self) -> Result<Vec<Tensor>, CommError> {
        self.units
            .iter()
            .map(|u| {
                let full = Tensor::empty(
                    [u.shard.numel() as i64 * self.shard_group.size() as i64],
                    (Kind::Float, u.shard.device()),
                );
                self.shard_group.all_gather(&u.shard, &full)?;
                Ok(full.narrow(0, 0, u.numel))
            })
            .collect()
    }

    /// Per-unit times since the last call, from `timeline` (the step's, once over).
    pub fn take_unit_records(&mut self, timeline: &Timeline) -> Vec<UnitRecord> {
        let mut records: Vec<UnitRecord> = (0..self.units.len())
            .map(|u| UnitRecord { unit: u as u32, ..Default::default() })
            .collect();
        for (unit, field, start, end) in self.timings.drain(..) {
            *field(&mut records[unit]) += timeline.between(start, end);
        }
        records
    }

    pub fn memory(&mut self) -> &mut MemoryAccount {
        &mut self.memory
    }
}

#[cfg(test)]
mod tests {
    use super::predivide_factor;

    #[test]
    fn predivide_factor_matches_pytorch() {
        // Values of torch.distributed.fsdp's _get_gradient_predivide_factor.
        for (world, factor) in [
            (1, 1.0),
            (2, 2.0),
            (4, 2.0),
            (8, 4.0),
            (16, 4.0),
            (64, 8.0),
            (1024, 32.0),
            (6, 4.0),
            (12, 4.0),
        ] {
            assert_eq!(predivide_factor(world), factor, "world {world}");
        }
    }
}
