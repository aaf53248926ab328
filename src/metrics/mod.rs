//! Measurement: a monotonic clock that waits for the device, memory readings, and collective
//! calls timed as they happen. Measurements go to record files only, never to logs.

mod collectives;

pub use collectives::{dtype_name, Collectives, InFlight};

use std::time::Instant;

use tch::Device;

/// Now, as an RFC 3339 UTC timestamp with microseconds (manifests, spools, attempt folders).
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Seconds since the clock was made, read after the device has finished its queued work, so a
/// phase boundary means the phase's kernels are done, not merely launched.
pub struct Clock {
    origin: Instant,
    device: Device,
    enabled: bool,
}

impl Clock {
    pub fn new(device: Device) -> Self {
        Self { origin: Instant::now(), device, enabled: true }
    }

    /// A clock that measures nothing (reads 0, never synchronises, logs no collective): the
    /// baseline for measuring what instrumentation costs.
    pub fn off() -> Self {
        Self { origin: Instant::now(), device: Device::Cpu, enabled: false }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn now_s(&self) -> f64 {
        if !self.enabled {
            return 0.0;
        }
        if let Device::Cuda(index) = self.device {
            tch::Cuda::synchronize(index as i64);
        }
        self.origin.elapsed().as_secs_f64()
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
