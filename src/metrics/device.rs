//! A GPU's own timeline and memory, through `device.cpp`: timing events on the current stream
//! (CUDA events; HIP events in ROCm builds) and the caching allocator's per-step statistics.
//! Only for `Device::Cuda`: with no GPU every call fails with libtorch's message.

use crate::ffi::device::{
    ss_device_memory, ss_device_memory_reset, ss_event_elapsed_ms, ss_event_free, ss_event_record,
    RawEvent, RawMemoryStats,
};
use crate::ffi::last_error;
use crate::records::DeviceMemoryRecord;

/// A timing event recorded on a GPU's current stream; it completes when the work queued on the
/// stream before it has.
pub struct Event(*mut RawEvent);

impl Event {
    /// Records an event now on GPU `index`'s current stream (does not wait).
    ///
    /// Errors: libtorch's message (no such device, a build without GPU support).
    pub fn record(index: usize) -> Result<Self, String> {
        // SAFETY: plain call; a null result carries its message in the shim's error.
        let raw = unsafe { ss_event_record(index as i32) };
        if raw.is_null() {
            return Err(last_error());
        }
        Ok(Self(raw))
    }

    /// Seconds from `self` to `later` on the device, waiting for `later` to complete
    /// (resolution about half a microsecond).
    pub fn seconds_until(&self, later: &Event) -> Result<f64, String> {
        let mut ms = 0.0;
        // SAFETY: both events are live; `ms` is a valid out-pointer.
        if unsafe { ss_event_elapsed_ms(self.0, later.0, &mut ms) } != 0 {
            return Err(last_error());
        }
        Ok(ms / 1e3)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the event came from ss_event_record and is freed once.
        unsafe { ss_event_free(self.0) }
    }
}

/// The caching allocator's peaks and retries on GPU `index` since the last
/// [`reset_device_memory`] (PyTorch's `torch.cuda.max_memory_allocated`, `"active_bytes.all.peak"`,
/// `max_memory_reserved`, `"num_alloc_retries"`).
///
/// Errors: libtorch's message.
pub fn device_memory(index: usize) -> Result<DeviceMemoryRecord, String> {
    let mut raw = RawMemoryStats::default();
    // SAFETY: `raw` is a valid out-pointer of the shim's layout.
    if unsafe { ss_device_memory(index as i32, &mut raw) } != 0 {
        return Err(last_error());
    }
    let bytes = |v: i64| v.max(0) as u64;
    Ok(DeviceMemoryRecord {
        allocated_peak_bytes: bytes(raw.allocated_peak_bytes),
        active_peak_bytes: bytes(raw.active_peak_bytes),
        reserved_peak_bytes: bytes(raw.reserved_peak_bytes),
        alloc_retries: bytes(raw.alloc_retries),
    })
}

/// Starts GPU `index`'s peaks and retry count again from what is held now.
///
/// Errors: libtorch's message.
pub fn reset_device_memory(index: usize) -> Result<(), String> {
    // SAFETY: plain call.
    if unsafe { ss_device_memory_reset(index as i32) } != 0 {
        return Err(last_error());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Fails where a GPU is required (`SHARDSWEEP_REQUIRE_GPU=1`, set by `portable.sh run`
    /// when the machine's torch sees one): a GPU test must not pass on the CPU's side there.
    pub(crate) fn assert_no_gpu_required() {
        let required = std::env::var("SHARDSWEEP_REQUIRE_GPU").is_ok_and(|v| v == "1");
        assert!(!required, "SHARDSWEEP_REQUIRE_GPU is set and this libtorch sees no GPU");
    }

    /// With a GPU: events time a matrix product and the allocator's peak covers its output.
    /// Without one: every call fails with libtorch's message instead of crashing, which is
    /// what a CPU-only machine meets if a cuda point reaches them.
    #[test]
    fn events_and_allocator_figures_or_a_message() {
        if !tch::Cuda::is_available() {
            assert_no_gpu_required();
            for error in
                [Event::record(0).err(), device_memory(0).err(), reset_device_memory(0).err()]
            {
                assert!(error.is_some_and(|e| !e.is_empty()));
            }
            return;
        }
        // The allocator exists once something was allocated on the device.
        let a = tch::Tensor::ones([2048, 2048], (tch::Kind::Float, tch::Device::Cuda(0)));
        reset_device_memory(0).unwrap();
        let start = Event::record(0).unwrap();
        let product = a.matmul(&a);
        let end = Event::record(0).unwrap();
        let seconds = start.seconds_until(&end).unwrap();
        assert!(seconds > 0.0 && seconds < 10.0, "{seconds}");
        let memory = device_memory(0).unwrap();
        assert!(memory.allocated_peak_bytes >= 2 * 4 * 2048 * 2048, "{memory:?}");
        assert!(memory.reserved_peak_bytes >= memory.allocated_peak_bytes);
        drop(product);
    }
}
