//! AdamW on one flat parameter tensor, the same arithmetic as PyTorch's single-tensor AdamW
//! (decoupled weight decay first, then the bias-corrected Adam update), with weight decay
//! applied per element through a mask so that biases, norms and 1-D tensors are not decayed.

use tch::Tensor;

use crate::plan::OptimizerSettings;

pub struct AdamW {
    settings: OptimizerSettings,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// 1 where weight decay applies.
    decay_mask: Tensor,
    steps: i32,
}

impl AdamW {
    pub fn new(param: &Tensor, decay_mask: Tensor, settings: OptimizerSettings) -> Self {
        Self {
            exp_avg: param.zeros_like(),
            exp_avg_sq: param.zeros_like(),
            decay_mask: decay_mask.to_device(param.device()),
            settings,
            steps: 0,
        }
    }

    /// Bytes of optimizer state held (the two moments).
    pub fn state_bytes(&self) -> usize {
        2 * self.exp_avg.numel() * self.exp_avg.kind().elt_size_in_bytes()
    }

    /// One update of `param` from `grad`. `scratch` and `denom` are work buffers of at least
    /// `param`'s size (shared by every unit's optimizer, as PyTorch's temporaries come from its
    /// caching allocator): the update allocates nothing.
    pub fn step(&mut self, param: &mut Tensor, grad: &Tensor, lr: f64, work: &WorkBuffers) {
        let s = &self.settings;
        self.steps += 1;
        let n = param.numel() as i64;
        let (scratch, denom) = (work.scratch.narrow(0, 0, n), work.denom.narrow(0, 0, n));
        tch::no_grad(|| {
            // PyTorch's operations in PyTorch's order: param *= 1 - lr * weight_decay (where the
            // mask is 1); exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2), whose kernel
            // computes exp_avg_sq + ((1 - b2) g) g.
            let _ = self.decay_mask.mul_scalar_out(&scratch, -lr * s.weight_decay);
            let _ = param.g_mul_(&scratch.shallow_clone().g_add_scalar_(1.0));
            let _ = self.exp_avg.lerp_(grad, 1.0 - s.beta1);
            let _ = grad.mul_scalar_out(&scratch, 1.0 - s.beta2);
            let _ = self.exp_avg_sq.g_mul_scalar_(s.beta2).addcmul_(&scratch, grad);
            let bias_correction1 = 1.0 - s.beta1.powi(self.steps);
            let bias_correction2 = 1.0 - s.beta2.powi(self.steps);
            let _ = self.exp_avg_sq.sqrt_out(&denom);
            let _ =
                denom.shallow_clone().g_div_scalar_(bias_correction2.sqrt()).g_add_scalar_(s.eps);
            let _ = self.exp_avg.mul_scalar_out(&scratch, -lr / bias_correction1);
            let _ = param.addcdiv_(&scratch, &denom);
        });
    }
}

/// The optimizer's work buffers, sized for the largest shard it updates.
pub struct WorkBuffers {
    scratch: Tensor,
    denom: Tensor,
}

impl WorkBuffers {
    /// Buffers of `numel` elements like `like` (its kind and device).
    pub fn new(numel: i64, like: &Tensor) -> Self {
        let options = (like.kind(), like.device());
        Self { scratch: Tensor::empty([numel], options), denom: Tensor::empty([numel], options) }
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
        let work = WorkBuffers::new(3, &p);
        opt.step(&mut p, &g, 0.1, &work);
        opt.step(&mut p, &g, 0.1, &work);
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
