//! What the C interfaces of the C++ parts share (`src/ffi_guard.hpp`): each catches C++
//! exceptions and keeps the message, per thread, for the caller to fetch after a failed call.

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
