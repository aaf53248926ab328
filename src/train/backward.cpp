// Backward from a stage's output with the gradient of what consumed it (at::Tensor::backward
// with a gradient, torch.autograd.backward(output, grad)), which tch exposes only for scalar
// outputs; for src/train/backward.rs.
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

}  // extern "C"
