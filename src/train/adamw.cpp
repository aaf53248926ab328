// One AdamW step over a list of tensors through libtorch's fused kernel (at::_fused_adamw_,
// what torch.optim.AdamW(fused=True) runs, on CPUs and GPUs alike, one multi-tensor launch on
// a GPU), for src/train/adamw.rs. The kernel applies the decoupled weight decay itself, so a
// caller passes decayed and undecayed tensors as two lists, as PyTorch users pass two groups.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <vector>

#include "../ffi_guard.hpp"

using shardsweep::guard;

namespace {
std::vector<at::Tensor> list(const at::Tensor* const* tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}
}  // namespace

extern "C" {

// For each i: params[i] *= 1 - lr * weight_decay, then the bias-corrected Adam update of step
// `*step` (a float tensor on the parameters' device, as torch.optim keeps it) from grads[i]
// with moments exp_avgs[i], exp_avg_sqs[i]. 0 on success.
int ss_adamw_step(const at::Tensor* const* params, const at::Tensor* const* grads,
                  const at::Tensor* const* exp_avgs, const at::Tensor* const* exp_avg_sqs,
                  size_t n, const at::Tensor* step, double lr, double beta1, double beta2,
                  double weight_decay, double eps) {
  return guard(
      [&]() {
        c10::NoGradGuard no_grad;
        // The kernel reads one step count per tensor; they are all this one.
        std::vector<at::Tensor> steps(n, *step);
        at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n),
                          list(exp_avg_sqs, n), {}, steps, lr, beta1, beta2, weight_decay, eps,
                          /*amsgrad=*/false, /*maximize=*/false);
        return 0;
      },
      1);
}

}  // extern "C"
