// Backward from a stage's output with the gradient of what consumed it (at::Tensor::backward
// with a gradient, torch.autograd.backward(output, grad)), which tch exposes only for scalar
// outputs, and taking a leaf's gradient away (`leaf.grad = None`), which tch cannot; for
// src/train/backward.rs.
#include <ATen/ATen.h>

#include "../ffi_guard.hpp"

using shardsweep::guard;

extern "C" {

// Accumulates d(output . gradient)/d(leaf) into the leaves' .grad; 0 on success.
int ss_backward(const at::Tensor* output, const at::Tensor* gradient) {
  return guard(
      [&]() {
        output->backward(*gradient);
        return 0;
      },
      1);
}

// Moves the leaf's gradient into *out and leaves the leaf without one, as PyTorch's
// `zero_grad(set_to_none=True)` does, so the next backward's AccumulateGrad takes its incoming
// gradient as it is instead of adding it into a zeroed buffer; 0 on success, 1 if the leaf had
// no gradient.
int ss_take_grad(at::Tensor* leaf, at::Tensor* out) {
  return guard(
      [&]() {
        at::Tensor& grad = leaf->mutable_grad();
        if (!grad.defined()) return 1;
        *out = std::move(grad);
        grad.reset();
        return 0;
      },
      2);
}

}  // extern "C"
