use tch::Tensor;

use super::Clock;
use crate::comm::{Comm, CommError, Pending};
use crate::records::{CollectiveKind, CollectiveRecord};

/// The collectives of one step, each call timed and logged with its size and group. A group of
/// one rank moves nothing: such calls copy input to output and are not logged.
pub struct Collectives<'a> {
    clock: &'a Clock,
    step_start_s: f64,
    log: Vec<CollectiveRecord>,
    /// All-gathers started and not yet finished.
    gathers_in_flight: u32,
}

impl<'a> Collectives<'a> {
    pub fn new(clock: &'a Clock, step_start_s: f64) -> Self {
        Self { clock, step_start_s, log: Vec::new(), gathers_in_flight: 0 }
    }

    /// Sum of `input` over `group` into `output`, on behalf of model unit `unit`.
    pub fn all_reduce_sum(
        &mut self,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<(), CommError> {
        self.timed(CollectiveKind::AllReduce, group, unit, input, output, 1, || {
            group.all_reduce_sum(input, output)
        })
    }

    /// Every rank's `shard` of unit `unit`, concatenated into `output`.
    pub fn all_gather(
        &mut self,
        group: &dyn Comm,
        unit: usize,
        shard: &Tensor,
        output: &Tensor,
    ) -> Result<(), CommError> {
        self.timed(CollectiveKind::AllGather, group, unit, shard, output, group.size(), || {
            group.all_gather(shard, output)
        })
    }

    /// Starts `kind` on `input` into `output` without waiting (as [`Collectives::all_gather`],
    /// [`Collectives::reduce_scatter_sum`] or [`Collectives::all_reduce_sum`] would run it);
    /// [`Collectives::finish`] waits.
    pub fn start(
        &mut self,
        kind: CollectiveKind,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<InFlight, CommError> {
        let gather = kind == CollectiveKind::AllGather;
        let factor = if gather { group.size() } else { 1 };
        let record = self.record(kind, group, unit, input, factor);
        let start_s = self.clock.now_s();
        let counted = gather && group.size() > 1;
        let pending = if group.size() == 1 {
            tch::no_grad(|| output.shallow_clone().copy_(input));
            Box::new(crate::comm::Completed)
        } else {
            match kind {
                CollectiveKind::AllGather => group.start_all_gather(input, output)?,
                CollectiveKind::ReduceScatter => group.start_reduce_scatter_sum(input, output)?,
                CollectiveKind::AllReduce => group.start_all_reduce_sum(input, output)?,
            }
        };
        self.gathers_in_flight += u32::from(counted);
        Ok(InFlight {
            pending,
            record: (group.size() > 1 && self.clock.enabled()).then_some(CollectiveRecord {
                start_s: start_s - self.step_start_s,
                in_flight: self.gathers_in_flight,
                ..record
            }),
            counted,
        })
    }

    /// Waits for a collective started earlier; the wait is its exposed time.
    pub fn finish(&mut self, in_flight: InFlight) {
        let wait_start = self.clock.now_s();
        in_flight.pending.wait();
        if in_flight.counted {
            self.gathers_in_flight -= 1;
        }
        let end_s = self.clock.now_s() - self.step_start_s;
        if let Some(record) = in_flight.record {
            self.log.push(CollectiveRecord {
                end_s,
                wait_s: end_s - (wait_start - self.step_start_s),
                ..record
            });
        }
    }

    /// This rank's chunk of the sum of `input` over `group`, into `output`.
    pub fn reduce_scatter_sum(
        &mut self,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<(), CommError> {
        self.timed(CollectiveKind::ReduceScatter, group, unit, input, output, 1, || {
            group.reduce_scatter_sum(input, output)
        })
    }

    /// Runs `op`, logging it with a payload of `input`'s size times `factor` (the full buffer).
    #[allow(clippy::too_many_arguments)]
    fn timed(
        &mut self,
        kind: CollectiveKind,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        output: &Tensor,
        factor: usize,
        op: impl FnOnce() -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        if group.size() == 1 {
            tch::no_grad(|| output.shallow_clone().copy_(input));
            return Ok(());
        }
        if !self.clock.enabled() {
            return op();
        }
        let gathering = u32::from(kind == CollectiveKind::AllGather);
        let record = CollectiveRecord {
            in_flight: self.gathers_in_flight + gathering,
            ..self.record(kind, group, unit, input, factor)
        };
        let start_s = self.clock.now_s() - self.step_start_s;
        op()?;
        let end_s = self.clock.now_s() - self.step_start_s;
        self.log.push(CollectiveRecord { start_s, end_s, wait_s: end_s - start_s, ..record });
        Ok(())
    }

    /// A record of a call with a payload of `input`'s size times `factor` (the full buffer),
    /// its times still to be filled in.
    fn record(
        &self,
        kind: CollectiveKind,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        factor: usize,
    ) -> CollectiveRecord {
        CollectiveRecord {
            kind,
            unit: unit as u32,
            payload_bytes: (input.numel() * factor * input.kind().elt_size_in_bytes()) as u64,
            dtype: dtype_name(input.kind()).into(),
            group_size: group.size() as u32,
            start_s: 0.0,
            end_s: 0.0,
            wait_s: 0.0,
            in_flight: 0,
        }
    }

    /// Time compute has waited for collectives so far (exposed communication).
    pub fn waited_s(&self) -> f64 {
        self.log.iter().map(|c| c.wait_s).sum()
    }

    pub fn into_records(self) -> Vec<CollectiveRecord> {
        self.log
    }
}

/// A collective started by one of the `Collectives::start_*` calls, to be passed to
/// [`Collectives::finish`].
pub struct InFlight {
    pending: Box<dyn Pending>,
    record: Option<CollectiveRecord>,
    /// Whether it counts among the gathers in flight (reductions and a one-rank group's copy
    /// do not).
    counted: bool,
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
