//! Measurement: the clock that times a step (the host's, or the device's own events), memory
//! readings, and collective calls timed as they happen. Measurements go to record files only,
//! never to logs.

mod collectives;
mod device;

pub use collectives::{dtype_name, slow_collective, Collectives, InFlight, SLOW_COLLECTIVE_VAR};
#[cfg(test)]
pub(crate) use device::tests::assert_no_gpu_required;
pub use device::{device_memory, reset_device_memory, Event};

use std::cell::RefCell;
use std::time::Instant;

use tch::Device;

use crate::plan::Timing;

/// Now, as an RFC 3339 UTC timestamp with microseconds (manifests, spools, attempt folders).
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Times one step at a time. Marks taken during the step become seconds from the step's start
/// only when the step is over ([`Clock::timeline`]), so a clock on the device's own events
/// (recorded on the compute stream, nothing waited for) and one on the host's monotonic clock
/// (read after waiting for the device at every mark) are used the same way.
pub struct Clock {
    origin: Instant,
    source: Source,
}

enum Source {
    /// Measures nothing: the baseline for what instrumentation costs.
    Off,
    /// Host time after waiting for the device's queued work.
    Host(Device),
    /// Timing events on GPU `index`'s current stream; those of the step so far, the step's
    /// start first.
    Events { index: usize, marks: RefCell<Vec<Event>> },
}

/// A point on the step's timeline; [`Timeline::at`] says when it was.
#[derive(Debug, Clone, Copy)]
pub struct Mark(MarkAt);

#[derive(Debug, Clone, Copy)]
enum MarkAt {
    /// Host seconds since the clock was made.
    Host(f64),
    /// The step's `n`th event.
    Event(usize),
}

impl Clock {
    /// A clock of kind `timing` for work on `device`.
    ///
    /// Errors: device events asked for on a device without them.
    pub fn new(device: Device, timing: Timing) -> Result<Self, String> {
        let source = match (timing, device) {
            (Timing::Host, _) => Source::Host(device),
            (Timing::DeviceEvents, Device::Cuda(index)) => {
                Source::Events { index, marks: RefCell::new(Vec::new()) }
            }
            (Timing::DeviceEvents, other) => {
                return Err(format!(
                    "timing device_events needs a GPU; this rank runs on {other:?}"
                ))
            }
        };
        Ok(Self { origin: Instant::now(), source })
    }

    /// The host clock on `device` (what tests and benchmarks on the CPU use).
    pub fn host(device: Device) -> Self {
        Self { origin: Instant::now(), source: Source::Host(device) }
    }

    /// A clock that measures nothing (marks read 0, never waits, logs no collective): the
    /// baseline for measuring what instrumentation costs.
    pub fn off() -> Self {
        Self { origin: Instant::now(), source: Source::Off }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.source, Source::Off)
    }

    /// Starts a step's timeline (forgetting the last step's marks) and marks its start.
    pub fn begin_step(&self) -> Mark {
        if let Source::Events { marks, .. } = &self.source {
            marks.borrow_mut().clear();
        }
        self.mark()
    }

    /// Now, on the step's timeline: after the work queued so far on the device.
    ///
    /// Panics if the device cannot record an event (a libtorch error, as tensor calls panic).
    pub fn mark(&self) -> Mark {
        Mark(match &self.source {
            Source::Off => MarkAt::Host(0.0),
            Source::Host(device) => {
                if let Device::Cuda(index) = device {
                    tch::Cuda::synchronize(*index as i64);
                }
                MarkAt::Host(self.origin.elapsed().as_secs_f64())
            }
            Source::Events { index, marks } => {
                let event = Event::record(*index).unwrap_or_else(|e| panic!("{e}"));
                let mut marks = marks.borrow_mut();
                marks.push(event);
                MarkAt::Event(marks.len() - 1)
            }
        })
    }

    /// The step's marks in seconds, once its work is done (waits for the device's last mark).
    ///
    /// Errors: the device could not say how long its events were apart.
    pub fn timeline(&self, start: Mark) -> Result<Timeline, String> {
        Ok(match &self.source {
            Source::Off => Timeline { start_s: 0.0, events_s: Vec::new() },
            Source::Host(_) => Timeline { start_s: start.host_s(), events_s: Vec::new() },
            Source::Events { marks, .. } => {
                let marks = marks.borrow();
                let first = marks.first().ok_or("a step's timeline was never begun")?;
                let events_s =
                    marks.iter().map(|m| first.seconds_until(m)).collect::<Result<_, _>>()?;
                Timeline { start_s: 0.0, events_s }
            }
        })
    }
}

impl Mark {
    fn host_s(self) -> f64 {
        match self.0 {
            MarkAt::Host(s) => s,
            MarkAt::Event(_) => 0.0,
        }
    }
}

/// A finished step's marks in seconds from its start.
pub struct Timeline {
    start_s: f64,
    events_s: Vec<f64>,
}

impl Timeline {
    /// Seconds from the step's start to `mark`.
    pub fn at(&self, mark: Mark) -> f64 {
        match mark.0 {
            MarkAt::Host(s) => s - self.start_s,
            MarkAt::Event(n) => self.events_s.get(n).copied().unwrap_or(f64::NAN),
        }
    }

    /// Seconds from `from` to `to`.
    pub fn between(&self, from: Mark, to: Mark) -> f64 {
        self.at(to) - self.at(from)
    }
}

/// The larger of two values, NaN if either is (`f64::max` drops a NaN): folding ranks' figures
/// with it, one rank's missing figure cannot pass for the slowest rank's.
pub fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Peak resident set size of this process so far (getrusage; Linux reports KiB).
pub fn peak_rss_bytes() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    (usage.ru_maxrss.max(0) as u64) * 1024
}
