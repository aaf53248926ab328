// One AdamW step on one flat parameter tensor through libtorch's fused kernel
// (at::_fused_adamw_, what torch.optim.AdamW(fused=True) runs, on CPUs and GPUs alike), for
// src/train/adamw.rs. Weight decay is applied first, per element through a mask, as PyTorch's
// AdamW applies it to the parameters of a decayed group; the kernel then runs without decay.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "../ffi_guard.hpp"

using shardsweep::guard;

extern "C" {

// param *= 1 - lr * weight_decay * mask, then the bias-corrected Adam update of step `*step`
// (a float tensor on the parameters' device, as torch.optim keeps it). 0 on success.
int ss_adamw_step(at::Tensor* param, const at::Tensor* grad, at::Tensor* exp_avg,
                  at::Tensor* exp_avg_sq, at::Tensor* step, const at::Tensor* decay_mask,
                  double lr, double beta1, double beta2, double weight_decay, double eps) {
  return guard(
      [&]() {
        c10::NoGradGuard no_grad;
        if (weight_decay != 0.0) {
          param->addcmul_(*param, *decay_mask, -lr * weight_decay);
        }
        at::_fused_adamw_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {*step}, lr, beta1,
                          beta2, 0.0, eps, /*amsgrad=*/false, /*maximize=*/false);
        return 0;
      },
      1);
}

}  // extern "C"
