//! Backward from a non-scalar stage output with the gradient its consumer produced, through
//! `backward.cpp`: one autograd call, without the multiply and sum a scalar loss would need;
//! and a leaf's gradient taken away from it rather than copied and zeroed.

use tch::Tensor;

use crate::ffi::backward::{ss_backward, ss_take_grad};

/// Runs autograd from `output` (any shape) with `gradient` (its shape) as d(loss)/d(output).
///
/// Panics with libtorch's message on failure, as tch's own `backward` does.
pub fn backward_with(output: &Tensor, gradient: &Tensor) {
    // SAFETY: both are live tensor handles of tch's; autograd only reads them.
    if unsafe { ss_backward(output.as_ptr(), gradient.as_ptr()) } != 0 {
        panic!("backward: {}", crate::ffi::last_error());
    }
}

/// The gradient `leaf` has accumulated, leaving it none (PyTorch's `leaf.grad = None`); `None`
/// if it had none. The next backward then hands the leaf its gradient without a copy.
///
/// Panics with libtorch's message on failure.
pub fn take_grad(leaf: &mut Tensor) -> Option<Tensor> {
    let mut out = Tensor::new();
    // SAFETY: both are live tensor handles of tch's; `out` is rebound to the gradient.
    match unsafe { ss_take_grad(leaf.as_mut_ptr(), out.as_mut_ptr()) } {
        0 => Some(out),
        1 => None,
        _ => panic!("taking a gradient: {}", crate::ffi::last_error()),
    }
}
