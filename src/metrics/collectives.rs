//! Timing a step's collectives: each call's start, wait and end on the step's timeline, its size,
//! group and the all-gathers in flight, and the backend's own stream time where it keeps one.

use tch::Tensor;

use super::{Clock, Mark, Timeline};
use crate::comm::{Comm, CommError, Completed, Pending, StreamTime};
use crate::records::{CollectiveKind, CollectiveRecord};

/// The variable that plants a slower network for one collective kind (see [`slow_collective`]).
pub const SLOW_COLLECTIVE_VAR: &str = "SHARDSWEEP_SLOW_COLLECTIVE";

/// A slower network planted on purpose: `SHARDSWEEP_SLOW_COLLECTIVE=<kind>:<seconds>` (e.g.
/// `reduce_scatter:0.02`) lengthens every call of that kind by the delay, inside its timed
/// window (compute waits for it), as a degraded link or a slower collective algorithm would.
/// Before-and-after comparisons are tested with it; the variable is recorded with the run's
/// environment like any other that changes behaviour.
///
/// # Errors
/// The variable's value and what it must be, if it is set and malformed.
pub fn slow_collective() -> Result<Option<(CollectiveKind, std::time::Duration)>, String> {
    static PARSED: std::sync::OnceLock<
        Result<Option<(CollectiveKind, std::time::Duration)>, String>,
    > = std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            let Ok(value) = std::env::var(SLOW_COLLECTIVE_VAR) else { return Ok(None) };
            let parsed = value.split_once(':').and_then(|(kind, seconds)| {
                let kind = CollectiveKind::ALL.into_iter().find(|k| k.name() == kind)?;
                let seconds: f64 = seconds.parse().ok().filter(|s: &f64| s.is_finite() && *s >= 0.0)?;
                Some((kind, std::time::Duration::from_secs_f64(seconds)))
            });
            parsed.map(Some).ok_or_else(|| {
                format!("{SLOW_COLLECTIVE_VAR}={value:?}: must be <all_gather|reduce_scatter|all_reduce>:<seconds>, e.g. reduce_scatter:0.02")
            })
        })
        .clone()
}

fn slow_down(kind: CollectiveKind) {
    if let Ok(Some((slow, delay))) = slow_collective() {
        if slow == kind {
            std::thread::sleep(delay);
        }
    }
}

/// The collectives of one step, each call timed and logged with its size and group. A group of
/// one rank moves nothing: such calls copy input to output and are not logged.
pub struct Collectives<'a> {
    clock: &'a Clock,
    log: Vec<Logged>,
    /// All-gathers started and not yet finished.
    gathers_in_flight: u32,
}

/// A finished call, its times still marks on the step's timeline.
struct Logged {
    record: CollectiveRecord,
    start: Mark,
    /// When compute began waiting for it: its start for a backend that blocked in the start
    /// call, else when it was waited for.
    wait_start: Mark,
    end: Mark,
    /// The backend's own time for it on its stream, read once the step is over.
    stream: Option<Box<dyn StreamTime>>,
}

impl<'a> Collectives<'a> {
    pub fn new(clock: &'a Clock) -> Self {
        Self { clock, log: Vec::new(), gathers_in_flight: 0 }
    }

    /// Sum of `input` over `group` into `output`, on behalf of model unit `unit`.
    pub fn all_reduce_sum(
        &mut self,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<(), CommError> {
        self.blocking(CollectiveKind::AllReduce, group, unit, input, output)
    }

    /// Every rank's `shard` of unit `unit`, concatenated into `output`.
    pub fn all_gather(
        &mut self,
        group: &dyn Comm,
        unit: usize,
        shard: &Tensor,
        output: &Tensor,
    ) -> Result<(), CommError> {
        self.blocking(CollectiveKind::AllGather, group, unit, shard, output)
    }

    /// This rank's chunk of the sum of `input` over `group`, into `output`.
    pub fn reduce_scatter_sum(
        &mut self,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<(), CommError> {
        self.blocking(CollectiveKind::ReduceScatter, group, unit, input, output)
    }

    /// Runs `kind` with the backend's blocking call: compute waits for all of it.
    fn blocking(
        &mut self,
        kind: CollectiveKind,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<(), CommError> {
        let in_flight = self.launch(kind, group, unit, input, output, true)?;
        self.finish(in_flight);
        Ok(())
    }

    /// Starts `kind` on `input` into `output` without waiting (as [`Collectives::all_gather`],
    /// [`Collectives::reduce_scatter_sum`] or [`Collectives::all_reduce_sum`] would run it);
    /// [`Collectives::finish`] waits. A backend that cannot start without completing (no
    /// non-blocking form) blocks here: the call is logged here, all of it waited.
    pub fn start(
        &mut self,
        kind: CollectiveKind,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<InFlight, CommError> {
        self.launch(kind, group, unit, input, output, false)
    }

    /// Issues `kind` with the backend's blocking call if `block`, else its non-blocking start.
    fn launch(
        &mut self,
        kind: CollectiveKind,
        group: &dyn Comm,
        unit: usize,
        input: &Tensor,
        output: &Tensor,
        block: bool,
    ) -> Result<InFlight, CommError> {
        if group.size() == 1 {
            tch::no_grad(|| output.shallow_clone().copy_(input));
            let pending = Box::new(Completed);
            return Ok(InFlight { pending, started: None, counted: false, delayed: None });
        }
        let gather = kind == CollectiveKind::AllGather;
        let factor = if gather { group.size() } else { 1 };
        let record = self.record(kind, group, unit, input, factor);
        let start = self.clock.mark();
        let pending: Box<dyn Pending> = if block {
            match kind {
                CollectiveKind::AllGather => group.all_gather(input, output)?,
                CollectiveKind::ReduceScatter => group.reduce_scatter_sum(input, output)?,
                CollectiveKind::AllReduce => group.all_reduce_sum(input, output)?,
            }
            Box::new(Completed)
        } else {
            match kind {
                CollectiveKind::AllGather => group.start_all_gather(input, output)?,
                CollectiveKind::ReduceScatter => group.start_reduce_scatter_sum(input, output)?,
                CollectiveKind::AllReduce => group.start_all_reduce_sum(input, output)?,
            }
        };
        let record =
            CollectiveRecord { in_flight: self.gathers_in_flight + u32::from(gather), ..record };
        if pending.completed() {
            // The backend ran it to completion in the call: compute waited for all of it, then
            // and there, and it is in flight no longer.
            slow_down(kind);
            if self.clock.enabled() {
                let end = self.clock.mark();
                self.log.push(Logged { record, start, wait_start: start, end, stream: None });
            }
            return Ok(InFlight { pending, started: None, counted: false, delayed: None });
        }
        self.gathers_in_flight += u32::from(gather);
        let started = self.clock.enabled().then_some((record, start));
        Ok(InFlight { pending, started, counted: gather, delayed: Some(kind) })
    }

    /// Waits for a collective started earlier; the wait is its exposed time.
    pub fn finish(&mut self, in_flight: InFlight) {
        let InFlight { pending, started, counted, delayed } = in_flight;
        let wait_start = started.is_some().then(|| self.clock.mark());
        let stream = pending.wait();
        if let Some(kind) = delayed {
            slow_down(kind);
        }
        if counted {
            self.gathers_in_flight -= 1;
        }
        if let (Some((record, start)), Some(wait_start)) = (started, wait_start) {
            let end = self.clock.mark();
            self.log.push(Logged { record, start, wait_start, end, stream });
        }
    }

    /// How many calls have finished so far this step (marks windows of the step in the
    /// records [`Collectives::into_records`] returns, which are in finishing order).
    pub fn finished(&self) -> usize {
        self.log.len()
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
            stream_s: None,
        }
    }

    /// The step's calls in finishing order, with times from `timeline` (the step's, once over,
    /// so the device has run every call and their stream events can be read).
    pub fn into_records(self, timeline: &Timeline) -> Vec<CollectiveRecord> {
        self.log
            .into_iter()
            .map(|c| CollectiveRecord {
                start_s: timeline.at(c.start),
                end_s: timeline.at(c.end),
                wait_s: timeline.between(c.wait_start, c.end),
                stream_s: c.stream.and_then(|t| {
                    t.stream_s()
                        .inspect_err(|e| tracing::warn!("collective's stream time not read: {e}"))
                        .ok()
                }),
                ..c.record
            })
            .collect()
    }
}

/// A collective started by one of the `Collectives::start_*` calls, to be passed to
/// [`Collectives::finish`].
pub struct InFlight {
    pending: Box<dyn Pending>,
    /// Its record and start, if the clock measures.
    started: Option<(CollectiveRecord, Mark)>,
    /// Whether it counts among the gathers in flight (reductions and a one-rank group's copy
    /// do not).
    counted: bool,
    /// Its kind, for the planted delay ([`slow_collective`]) at its wait, whether the clock
    /// measures or not; `None` where the start completed it (and took the delay).
    delayed: Option<CollectiveKind>,
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

#[cfg(test)]
mod tests {
    use std::thread::sleep;
    use std::time::Duration;

    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::comm::{Comm, CommError, Pending, StreamTime};

    const CALL: Duration = Duration::from_millis(40);

    /// Two ranks whose collectives take `CALL`: blocking ones, and (if `deferred`) starts that
    /// return at once and take the time in their wait.
    struct Slow {
        deferred: bool,
    }

    struct Late;

    impl Pending for Late {
        fn wait(self: Box<Self>) -> Option<Box<dyn StreamTime>> {
            sleep(CALL);
            Some(Box::new(Late))
        }
    }

    /// A stream that ran the call in half its time.
    impl StreamTime for Late {
        fn stream_s(&self) -> Result<f64, CommError> {
            Ok(CALL.as_secs_f64() / 2.0)
        }
    }

    impl Comm for Slow {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn all_reduce_sum(&self, _: &Tensor, _: &Tensor) -> Result<(), CommError> {
            sleep(CALL);
            Ok(())
        }
        fn all_gather(&self, _: &Tensor, _: &Tensor) -> Result<(), CommError> {
            sleep(CALL);
            Ok(())
        }
        fn reduce_scatter_sum(&self, _: &Tensor, _: &Tensor) -> Result<(), CommError> {
            sleep(CALL);
            Ok(())
        }
        fn start_all_gather(&self, s: &Tensor, o: &Tensor) -> Result<Box<dyn Pending>, CommError> {
            if !self.deferred {
                self.all_gather(s, o)?;
                return Ok(Box::new(Completed));
            }
            Ok(Box::new(Late))
        }
        fn split(&self, _: u32, _: u32) -> Box<dyn Comm> {
            Box::new(Slow { deferred: self.deferred })
        }
        fn barrier(&self) {}
        fn library_version(&self) -> String {
            "test".into()
        }
    }

    /// Starts an all-gather, computes for `CALL`, finishes it; the call's record.
    fn overlapped(comm: &Slow) -> CollectiveRecord {
        let clock = Clock::host(Device::Cpu);
        let start = clock.begin_step();
        let mut collectives = Collectives::new(&clock);
        let t = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let in_flight = collectives.start(CollectiveKind::AllGather, comm, 0, &t, &t).unwrap();
        sleep(CALL);
        collectives.finish(in_flight);
        let records = collectives.into_records(&clock.timeline(start).unwrap());
        assert_eq!(records.len(), 1);
        records[0].clone()
    }

    #[test]
    fn a_start_that_blocks_counts_as_waited_and_a_deferred_one_only_from_its_wait() {
        let secs = CALL.as_secs_f64();
        // Blocking in the start: compute waited for the whole call, and only for it (not for
        // the compute after it).
        let blocked = overlapped(&Slow { deferred: false });
        assert!(blocked.wait_s >= secs && blocked.wait_s < 1.5 * secs, "{blocked:?}");
        assert!((blocked.wait_s - (blocked.end_s - blocked.start_s)).abs() < 1e-9, "{blocked:?}");
        assert_eq!(blocked.in_flight, 1);
        // A start that returns at once: only the wait is exposed, the span covers both.
        let deferred = overlapped(&Slow { deferred: true });
        assert!(deferred.wait_s >= secs && deferred.wait_s < 1.5 * secs, "{deferred:?}");
        assert!(deferred.end_s - deferred.start_s >= 2.0 * secs, "{deferred:?}");
        assert_eq!(deferred.in_flight, 1);
        // The stream's own time comes from the backend, where it keeps one.
        assert_eq!((blocked.stream_s, deferred.stream_s), (None, Some(secs / 2.0)));
    }

    /// With the clock off, a deferred start still carries its kind to its wait, where a
    /// planted delay applies; a start that completed the call took it there.
    #[test]
    fn the_planted_delay_waits_for_the_wait_with_the_clock_off() {
        let clock = Clock::off();
        let mut collectives = Collectives::new(&clock);
        let t = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        for (deferred, delayed) in [(true, Some(CollectiveKind::AllGather)), (false, None)] {
            let comm = Slow { deferred };
            let in_flight = collectives.start(CollectiveKind::AllGather, &comm, 0, &t, &t).unwrap();
            assert!(in_flight.started.is_none());
            assert_eq!(in_flight.delayed, delayed);
            collectives.finish(in_flight);
        }
        assert_eq!(collectives.finished(), 0, "nothing is logged with the clock off");
    }

    #[test]
    fn a_blocking_call_is_all_wait() {
        let clock = Clock::host(Device::Cpu);
        let start = clock.begin_step();
        let mut collectives = Collectives::new(&clock);
        let t = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        collectives.reduce_scatter_sum(&Slow { deferred: false }, 3, &t, &t).unwrap();
        assert_eq!(collectives.finished(), 1);
        let records = collectives.into_records(&clock.timeline(start).unwrap());
        let call = &records[0];
        assert!(call.wait_s >= CALL.as_secs_f64(), "{call:?}");
        assert!((call.wait_s - (call.end_s - call.start_s)).abs() < 1e-9, "{call:?}");
        assert_eq!((call.unit, call.payload_bytes, call.group_size), (3, 16, 2));
    }
}
