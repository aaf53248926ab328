// A C interface to what libtorch knows of a GPU's timeline and memory, for src/metrics/device.rs:
// timing events recorded on the current stream, and the caching allocator's statistics. It goes
// through c10's device-generic interfaces (c10::Event, c10::DeviceAllocator), so it needs no
// CUDA headers and serves CUDA and ROCm builds alike (ROCm's devices are `cuda` devices). Every
// function catches C++ exceptions: a null or non-zero result means the message is in
// ss_last_error() (per thread), which is defined here for every C++ part (read by src/ffi.rs).
#include <cstdint>
#include <string>

#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/Event.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "../ffi_guard.hpp"

using shardsweep::guard;
using shardsweep::last_error;

namespace {

c10::Device cuda(int32_t index) {
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace

struct ss_event {
  c10::Event event;
};

// The caching allocator's figures for one device (the aggregate pool): peaks since the last
// reset, and the allocation retries (cache flushes after a failed device malloc) since then.
struct ss_memory_stats {
  int64_t allocated_peak_bytes;
  int64_t active_peak_bytes;
  int64_t reserved_peak_bytes;
  int64_t alloc_retries;
};

extern "C" {

// The message of the last failed call of any C++ part on this thread.
const char* ss_last_error() { return last_error.c_str(); }

// A timing event recorded now on device `index`'s current stream: it completes when the work
// queued on that stream before it has.
ss_event* ss_event_record(int32_t index) {
  return guard(
      [&]() -> ss_event* {
        auto device = cuda(index);
        auto stream = c10::impl::getDeviceGuardImpl(device.type())->getStream(device);
        // BACKEND_DEFAULT: an event that keeps its time (PYTORCH_DEFAULT disables timing).
        auto* e = new ss_event{c10::Event(device.type(), c10::EventFlag::BACKEND_DEFAULT)};
        e->event.record(stream);
        return e;
      },
      nullptr);
}

// Milliseconds from `start` to `end` into *ms, waiting for `end` to complete. 0 on success.
int ss_event_elapsed_ms(const ss_event* start, const ss_event* end, double* ms) {
  return guard(
      [&]() {
        end->event.synchronize();
        *ms = start->event.elapsedTime(end->event);
        return 0;
      },
      1);
}

void ss_event_free(ss_event* e) { delete e; }

// The caching allocator's statistics for device `index` into *out; 0 on success.
int ss_device_memory(int32_t index, ss_memory_stats* out) {
  return guard(
      [&]() {
        auto stats = c10::getDeviceAllocator(c10::DeviceType::CUDA)
                         ->getDeviceStats(static_cast<c10::DeviceIndex>(index));
        const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
        out->allocated_peak_bytes = stats.allocated_bytes[all].peak;
        out->active_peak_bytes = stats.active_bytes[all].peak;
        out->reserved_peak_bytes = stats.reserved_bytes[all].peak;
        out->alloc_retries = stats.num_alloc_retries;
        return 0;
      },
      1);
}

// Starts the peaks (and counts) of device `index` again from what is held now, as
// torch.cuda.reset_peak_memory_stats does with reset_accumulated_memory_stats; 0 on success.
int ss_device_memory_reset(int32_t index) {
  return guard(
      [&]() {
        auto* allocator = c10::getDeviceAllocator(c10::DeviceType::CUDA);
        allocator->resetPeakStats(static_cast<c10::DeviceIndex>(index));
        allocator->resetAccumulatedStats(static_cast<c10::DeviceIndex>(index));
        return 0;
      },
      1);
}

}  // extern "C"
