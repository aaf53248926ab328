//! Every foreign declaration of the crate: the C interfaces of our C++ parts, one module per
//! C++ source, and the opaque and `#[repr(C)]` types they pass. The safe wrappers live beside
//! their users (`metrics::device`, `train::adamw`, `train::backward`, `comm::c10d`) and call
//! through here.
//!
//! What the interfaces share (`src/ffi_guard.hpp`): each catches C++ exceptions and keeps the
//! message, per thread, for the caller to fetch after a failed call ([`last_error`]).

use std::ffi::{c_char, CStr};

extern "C" {
    /// Defined in src/metrics/device.cpp, which every build compiles.
    fn ss_last_error() -> *const c_char;
}

/// The message of the last failed call into the C++ parts on this thread.
pub fn last_error() -> String {
    // SAFETY: the C++ side returns a NUL-terminated string owned by this thread.
    unsafe { CStr::from_ptr(ss_last_error()) }.to_string_lossy().into_owned()
}

/// `src/metrics/device.cpp`: timing events on a GPU's current stream and the caching
/// allocator's statistics.
pub mod device {
    /// An event recorded on a stream (opaque).
    #[repr(C)]
    pub struct RawEvent {
        _private: [u8; 0],
    }

    /// The caching allocator's figures, in the shim's layout.
    #[repr(C)]
    #[derive(Default)]
    pub struct RawMemoryStats {
        pub allocated_peak_bytes: i64,
        pub active_peak_bytes: i64,
        pub reserved_peak_bytes: i64,
        pub alloc_retries: i64,
    }

    extern "C" {
        pub fn ss_event_record(index: i32) -> *mut RawEvent;
        pub fn ss_event_elapsed_ms(
            start: *const RawEvent,
            end: *const RawEvent,
            ms: *mut f64,
        ) -> i32;
        pub fn ss_event_free(event: *mut RawEvent);
        pub fn ss_device_memory(index: i32, out: *mut RawMemoryStats) -> i32;
        pub fn ss_device_memory_reset(index: i32) -> i32;
    }
}

/// `src/train/adamw.cpp`: libtorch's fused AdamW over lists of tensors.
pub mod adamw {
    extern "C" {
        #[allow(clippy::too_many_arguments)]
        pub fn ss_adamw_step(
            params: *const *const torch_sys::C_tensor,
            grads: *const *const torch_sys::C_tensor,
            exp_avgs: *const *const torch_sys::C_tensor,
            exp_avg_sqs: *const *const torch_sys::C_tensor,
            n: usize,
            step: *const torch_sys::C_tensor,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
        ) -> i32;
    }
}

/// `src/train/backward.cpp`: autograd from a non-scalar output, and taking a leaf's gradient.
pub mod backward {
    extern "C" {
        pub fn ss_backward(
            output: *const torch_sys::C_tensor,
            gradient: *const torch_sys::C_tensor,
        ) -> i32;
        pub fn ss_take_grad(leaf: *mut torch_sys::C_tensor, out: *mut torch_sys::C_tensor) -> i32;
    }
}

/// `src/comm/c10d_shim.cpp`: c10d process groups, their collectives and work handles (built
/// with the `gloo` or `cuda` feature).
#[cfg(any(feature = "gloo", feature = "cuda"))]
pub mod c10d {
    use std::ffi::{c_char, c_int};

    /// A process group (opaque).
    #[repr(C)]
    pub struct RawGroup {
        _private: [u8; 0],
    }

    /// A collective's work handle (opaque).
    #[repr(C)]
    pub struct RawWork {
        _private: [u8; 0],
    }

    /// tch's tensor handle is an `at::Tensor*` (torch-sys's `C_tensor`).
    pub type RawTensor = torch_sys::C_tensor;

    extern "C" {
        pub fn ss_group_new_tcp(
            backend: i32,
            host: *const c_char,
            port: u16,
            rank: c_int,
            size: c_int,
            timeout_ms: i64,
        ) -> *mut RawGroup;
        pub fn ss_group_split(group: *mut RawGroup, color: u32, key: u32) -> *mut RawGroup;
        pub fn ss_group_free(group: *mut RawGroup) -> c_int;
        pub fn ss_group_rank(group: *const RawGroup) -> c_int;
        pub fn ss_group_size(group: *const RawGroup) -> c_int;
        pub fn ss_all_gather(
            group: *mut RawGroup,
            output: *const RawTensor,
            input: *const RawTensor,
        ) -> *mut RawWork;
        pub fn ss_reduce_scatter(
            group: *mut RawGroup,
            output: *const RawTensor,
            input: *const RawTensor,
        ) -> *mut RawWork;
        pub fn ss_all_reduce(
            group: *mut RawGroup,
            output: *const RawTensor,
            input: *const RawTensor,
        ) -> *mut RawWork;
        pub fn ss_barrier(group: *mut RawGroup) -> *mut RawWork;
        pub fn ss_work_wait(work: *mut RawWork) -> c_int;
        pub fn ss_work_timed(work: *const RawWork) -> c_int;
        pub fn ss_work_duration_ms(work: *const RawWork, ms: *mut f64) -> c_int;
        pub fn ss_work_free(work: *mut RawWork);
    }
}
