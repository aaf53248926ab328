//! Backward from a non-scalar stage output with the gradient its consumer produced, through
//! `backward.cpp`: one autograd call, without the multiply and sum a scalar loss would need.

use tch::Tensor;

extern "C" {
    fn ss_backward(output: *const torch_sys::C_tensor, gradient: *const torch_sys::C_tensor)
        -> i32;
}

/// Runs autograd from `output` (any shape) with `gradient` (its shape) as d(loss)/d(output).
///
/// Panics with libtorch's message on failure, as tch's own `backward` does.
pub fn backward_with(output: &Tensor, gradient: &Tensor) {
    // SAFETY: both are live tensor handles of tch's; autograd only reads them.
    if unsafe { ss_backward(output.as_ptr(), gradient.as_ptr()) } != 0 {
        panic!("backward: {}", crate::metrics::last_error());
    }
}
