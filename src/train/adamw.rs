//! AdamW on one flat parameter tensor through libtorch's fused kernel (`at::_fused_adamw_`,
//! PyTorch's `AdamW(fused=True)`: one pass over parameter, gradient and moments, no
//! temporaries), in `adamw.cpp`; weight decay is applied per element through a mask first, so
//! that biases, norms and 1-D tensors are not decayed (PyTorch users put those in a group with
//! no decay).

use tch::{Kind, Tensor};

use crate::plan::OptimizerSettings;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn ss_adamw_step(
        param: *mut torch_sys::C_tensor,
        grad: *const torch_sys::C_tensor,
        exp_avg: *mut torch_sys::C_tensor,
        exp_avg_sq: *mut torch_sys::C_tensor,
        step: *mut torch_sys::C_tensor,
        decay_mask: *const torch_sys::C_tensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> i32;
}

pub struct AdamW {
    settings: OptimizerSettings,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// 1 where weight decay applies.
    decay_mask: Tensor,
    /// Steps taken, as a float scalar on the parameters' device (the kernel reads it there).
    step: Tensor,
    steps: u32,
}

impl AdamW {
    pub fn new(param: &Tensor, decay_mask: Tensor, settings: OptimizerSettings) -> Self {
        Self {
            exp_avg: param.zeros_like(),
            exp_avg_sq: param.zeros_like(),
            decay_mask: decay_mask.to_device(param.device()),
            step: Tensor::zeros([], (Kind::Float, param.device())),
            settings,
            steps: 0,
        }
    }

    /// Bytes of optimizer state held (the two moments).
    pub fn state_bytes(&self) -> usize {
        2 * self.exp_avg.numel() * self.exp_avg.kind().elt_size_in_bytes()
    }

    /// One update of `param` from `grad` at learning rate `lr`; allocates nothing.
    ///
    /// Panics with libtorch's message if the kernel refuses the tensors (libtorch errors are
    /// panics in tch, and training records them as such).
    pub fn step(&mut self, param: &mut Tensor, grad: &Tensor, lr: f64) {
        let s = &self.settings;
        self.steps += 1;
        let _ = self.step.fill_(f64::from(self.steps));
        // SAFETY: every pointer is a live tensor handle of tch's; the kernel updates param and
        // the moments in place and only reads the gradient (it would write it only with a
        // grad_scale, which is not passed).
        let status = unsafe {
            ss_adamw_step(
                param.as_mut_ptr(),
                grad.as_ptr(),
                self.exp_avg.as_mut_ptr(),
                self.exp_avg_sq.as_mut_ptr(),
                self.step.as_mut_ptr(),
                self.decay_mask.as_ptr(),
                lr,
                s.beta1,
                s.beta2,
                s.weight_decay,
                s.eps,
            )
        };
        if status != 0 {
            panic!("AdamW: {}", crate::metrics::last_error());
        }
    }
}

/// Learning rate at `step` (0-based): linear warm-up to `peak`, then half-cosine to zero at the
/// last step (MAE's schedule, per step instead of per epoch).
pub fn learning_rate(step: u32, steps: u32, warmup: u32, peak: f64) -> f64 {
    if step < warmup {
        return peak * f64::from(step + 1) / f64::from(warmup);
    }
    let span = f64::from(steps.saturating_sub(warmup).max(1));
    let progress = f64::from(step - warmup) / span;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Reference values from torch.optim.AdamW(lr=0.1, betas=(0.9, 0.95), eps=1e-8,
    /// weight_decay=0.05) on p = [1, -2], g = [0.5, 0.25] for two steps; the second element is
    /// not decayed (mask 0), which PyTorch expresses with a second parameter group.
    #[test]
    fn matches_pytorch_adamw_arithmetic() {
        let settings = OptimizerSettings {
            base_lr: 0.0,
            weight_decay: 0.05,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            lr_warmup_steps: 0,
        };
        let mut p = Tensor::from_slice(&[1.0f32, -2.0]);
        let g = Tensor::from_slice(&[0.5f32, 0.25]);
        let mut opt = AdamW::new(&p, Tensor::from_slice(&[1.0f32, 0.0]), settings);
        opt.step(&mut p, &g, 0.1);
        opt.step(&mut p, &g, 0.1);
        // By hand: with a constant gradient the bias-corrected update is lr * sign(g) each step.
        // Element 0: p = (1 * (1 - 0.005) - 0.1) = 0.895, then 0.895 * 0.995 - 0.1 = 0.790525.
        // Element 1: -2 - 0.1 - 0.1 = -2.2.
        let got: Vec<f32> = Vec::try_from(&p).unwrap();
        assert!((got[0] - 0.790525).abs() < 1e-6, "{got:?}");
        assert!((got[1] + 2.2).abs() < 1e-6, "{got:?}");
        assert_eq!(p.device(), Device::Cpu);
        assert_eq!(p.kind(), Kind::Float);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((learning_rate(0, 10, 2, 1.0) - 0.5).abs() < 1e-12);
        assert!((learning_rate(1, 10, 2, 1.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(2, 10, 2, 1.0) - 1.0).abs() < 1e-12);
        assert!(learning_rate(9, 10, 2, 1.0) < 0.05);
        assert!((learning_rate(0, 1, 0, 2.0) - 2.0).abs() < 1e-12);
    }
}
