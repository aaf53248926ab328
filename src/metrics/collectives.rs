use tch::Tensor;

use super::Clock;
use crate::comm::{Comm, CommError};
use crate::records::{CollectiveKind, CollectiveRecord};

/// The collectives of one step, each call timed and logged with its size and group.
pub struct Collectives<'a> {
    comm: &'a dyn Comm,
    clock: &'a Clock,
    step_start_s: f64,
    log: Vec<CollectiveRecord>,
}

impl<'a> Collectives<'a> {
    pub fn new(comm: &'a dyn Comm, clock: &'a Clock, step_start_s: f64) -> Self {
        Self { comm, clock, step_start_s, log: Vec::new() }
    }

    pub fn group_size(&self) -> usize {
        self.comm.size()
    }

    /// Sum of `input` over the group, on behalf of model unit `unit`.
    pub fn all_reduce_sum(&mut self, unit: usize, input: &Tensor) -> Result<Tensor, CommError> {
        let start_s = self.clock.now_s();
        let output = self.comm.all_reduce_sum(input)?;
        let end_s = self.clock.now_s();
        self.log.push(CollectiveRecord {
            kind: CollectiveKind::AllReduce,
            unit: unit as u32,
            payload_bytes: (input.numel() * input.kind().elt_size_in_bytes()) as u64,
            dtype: dtype_name(input.kind()).into(),
            group_size: self.comm.size() as u32,
            start_s: start_s - self.step_start_s,
            end_s: end_s - self.step_start_s,
        });
        Ok(output)
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
