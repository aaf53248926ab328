use tch::Tensor;

use super::Clock;
use crate::comm::{Comm, CommError};
use crate::records::{CollectiveKind, CollectiveRecord};

/// The collectives of one step, each call timed and logged with its size and group. A group of
/// one rank moves nothing: such calls copy input to output and are not logged.
pub struct Collectives<'a> {
    clock: &'a Clock,
    step_start_s: f64,
    log: Vec<CollectiveRecord>,
}

impl<'a> Collectives<'a> {
    pub fn new(clock: &'a Clock, step_start_s: f64) -> Self {
        Self { clock, step_start_s, log: Vec::new() }
    }

    /// Sum of `input` over `group` into `output`, on behalf of model unit `unit`.
    pub fn all_reduce_sum(&mut self, group: &dyn Comm, unit: usize, input: &Tensor, output: &Tensor) -> Result<(), CommError> {
        self.timed(CollectiveKind::AllReduce, group, unit, input, output, 1, || group.all_reduce_sum(input, output))
    }

    /// Every rank's `shard` of unit `unit`, concatenated into `output`.
    pub fn all_gather(&mut self, group: &dyn Comm, unit: usize, shard: &Tensor, output: &Tensor) -> Result<(), CommError> {
        self.timed(CollectiveKind::AllGather, group, unit, shard, output, group.size(), || group.all_gather(shard, output))
    }

    /// This rank's chunk of the sum of `input` over `group`, into `output`.
    pub fn reduce_scatter_sum(&mut self, group: &dyn Comm, unit: usize, input: &Tensor, output: &Tensor) -> Result<(), CommError> {
        self.timed(CollectiveKind::ReduceScatter, group, unit, input, output, 1, || group.reduce_scatter_sum(input, output))
    }

    /// Runs `op`, logging it with a payload of `input`'s size times `factor` (the full buffer).
    #[allow(clippy::too_many_arguments)]
    fn timed(&mut self, kind: CollectiveKind, group: &dyn Comm, unit: usize, input: &Tensor, output: &Tensor, factor: usize, op: impl FnOnce() -> Result<(), CommError>) -> Result<(), CommError> {
        if group.size() == 1 {
            tch::no_grad(|| output.shallow_clone().copy_(input));
            return Ok(());
        }
        if !self.clock.enabled() {
            return op();
        }
        let start_s = self.clock.now_s();
        op()?;
        let end_s = self.clock.now_s();
        self.log.push(CollectiveRecord {
            kind,
            unit: unit as u32,
            payload_bytes: (input.numel() * factor * input.kind().elt_size_in_bytes()) as u64,
            dtype: dtype_name(input.kind()).into(),
            group_size: group.size() as u32,
            start_s: start_s - self.step_start_s,
            end_s: end_s - self.step_start_s,
        });
        Ok(())
    }

    /// Total time spent in collective calls so far.
    pub fn total_s(&self) -> f64 {
        self.log.iter().map(|c| c.end_s - c.start_s).sum()
    }

    pub fn into_records(self) -> Vec<CollectiveRecord> {
        self.log
    }
}

/// Conventional names of element types, as NCCL and PyTorch print them.
pub fn dtype_name(kind: tch::Kind) -> &'static str {
    match kind {
        tch::Kind::Float => "float32",
        tch::Kind::BFloat16 => "bfloat16",
        tch::Kind::Half => "float16",
        tch::Kind::Double => "float64",
        _ => "other",
    }
}
