//! AdamW on one flat parameter shard through libtorch's fused kernel (`at::_fused_adamw_`,
//! PyTorch's `AdamW(fused=True)`: one pass over parameter, gradient and moments, no
//! temporaries), in `adamw.cpp`. Biases, norms and other 1-D tensors are not decayed (MAE's
//! `add_weight_decay`): the shard is cut into views of the decayed and the undecayed ranges,
//! passed to the kernel as two groups, as PyTorch users pass two parameter groups.

use std::ops::Range;

use tch::{Kind, Tensor};

use crate::plan::OptimizerSettings;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn ss_adamw_step(
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

/// Views of one parameter group: parameter, gradient and the two moments, range by range.
#[derive(Default)]
struct Group {
    params: Vec<Tensor>,
    grads: Vec<Tensor>,
    exp_avgs: Vec<Tensor>,
    exp_avg_sqs: Vec<Tensor>,
}

/// AdamW's state for one flat fp32 shard, holding views of the shard and of its gradient
/// buffer (both updated in place from outside: keep them, do not replace them).
pub struct AdamW {
    settings: OptimizerSettings,
    /// Where weight decay applies, then where it does not.
    groups: [Group; 2],
    /// Bytes of the two moments.
    state_bytes: usize,
    /// Steps taken, as a float scalar on the parameters' device (the kernel reads it there).
    step: Tensor,
    steps: u32,
}

impl AdamW {
    /// State for `param` (1-D) whose gradient arrives in `grad` (same shape); weight decay
    /// applies to the elements in `decayed` (ascending, disjoint, within `param`).
    pub fn new(
        param: &Tensor,
        grad: &Tensor,
        decayed: &[Range<i64>],
        settings: OptimizerSettings,
    ) -> Self {
        let (exp_avg, exp_avg_sq) = (param.zeros_like(), param.zeros_like());
        let mut groups: [Group; 2] = Default::default();
        let mut cut = |group: usize, range: Range<i64>| {
            if range.is_empty() {
                return;
            }
            let view = |t: &Tensor| t.narrow(0, range.start, range.end - range.start);
            let g = &mut groups[group];
            g.params.push(view(param));
            g.grads.push(view(grad));
            g.exp_avgs.push(view(&exp_avg));
            g.exp_avg_sqs.push(view(&exp_avg_sq));
        };
        let mut offset = 0;
        for range in decayed {
            cut(1, offset..range.start);
            cut(0, range.clone());
            offset = range.end;
        }
        cut(1, offset..param.size()[0]);
        Self {
            groups,
            state_bytes: 2 * exp_avg.numel() * exp_avg.kind().elt_size_in_bytes(),
            step: Tensor::zeros([], (Kind::Float, param.device())),
            settings,
            steps: 0,
        }
    }

    /// Bytes of optimizer state held (the two moments).
    pub fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    /// One update of the parameter from its gradient at learning rate `lr`; allocates nothing.
    ///
    /// Panics with libtorch's message if the kernel refuses the tensors (libtorch errors are
    /// panics in tch, and training records them as such).
    pub fn step(&mut self, lr: f64) {
        let s = &self.settings;
        self.steps += 1;
        let _ = self.step.fill_(f64::from(self.steps));
        for (group, weight_decay) in self.groups.iter().zip([s.weight_decay, 0.0]) {
            if group.params.is_empty() {
                continue;
            }
            let pointers = |ts: &[Tensor]| ts.iter().map(Tensor::as_ptr).collect::<Vec<_>>();
            let (p, g) = (pointers(&group.params), pointers(&group.grads));
            let (m, v) = (pointers(&group.exp_avgs), pointers(&group.exp_avg_sqs));
            // SAFETY: every pointer is a live tensor handle of tch's, `n` of each; the kernel
            // updates the parameters and moments in place (views, so the shard and the moments
            // change) and only reads the gradients and the step.
            let status = unsafe {
                ss_adamw_step(
                    p.as_ptr(),
                    g.as_ptr(),
                    m.as_ptr(),
                    v.as_ptr(),
                    p.len(),
                    self.step.as_ptr(),
                    lr,
                    s.beta1,
                    s.beta2,
                    weight_decay,
                    s.eps,
                )
            };
            if status != 0 {
                panic!("AdamW: {}", crate::metrics::last_error());
            }
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
    /// not decayed, which PyTorch expresses with a second parameter group.
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
        let p = Tensor::from_slice(&[1.0f32, -2.0]);
        let g = Tensor::from_slice(&[0.5f32, 0.25]);
        let decayed = vec![0..1, 1..1]; // The first element; an empty range changes nothing.
        let mut opt = AdamW::new(&p, &g, &decayed, settings);
        opt.step(0.1);
        opt.step(0.1);
        // By hand: with a constant gradient the bias-corrected update is lr * sign(g) each step.
        // Element 0: p = (1 * (1 - 0.005) - 0.1) = 0.895, then 0.895 * 0.995 - 0.1 = 0.790525.
        // Element 1: -2 - 0.1 - 0.1 = -2.2.
        let got: Vec<f32> = Vec::try_from(&p).unwrap();
        assert!((got[0] - 0.790525).abs() < 1e-6, "{got:?}");
        assert!((got[1] + 2.2).abs() < 1e-6, "{got:?}");
        assert_eq!(p.device(), Device::Cpu);
        assert_eq!(p.kind(), Kind::Float);
    }

    /// Decayed ranges at the start, inside and undecayed ones at the end of a shard, against
    /// AdamW written out per element (PyTorch's formula, in f64).
    #[test]
    fn decays_exactly_the_given_ranges() {
        let settings = OptimizerSettings { weight_decay: 0.1, ..OptimizerSettings::default() };
        let (b1, b2, eps, lr) = (settings.beta1, settings.beta2, settings.eps, 0.01);
        let start = [0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5, -2.0];
        let grads = [0.1f32, -0.2, 0.3, 0.05, -0.4, 0.6, 0.0];
        let decayed = [0..2, 3..5];
        let p = Tensor::from_slice(&start);
        let g = Tensor::from_slice(&grads);
        let mut opt = AdamW::new(&p, &g, &decayed, settings.clone());
        for _ in 0..3 {
            opt.step(lr);
        }
        let got: Vec<f32> = Vec::try_from(&p).unwrap();
        for (i, (&p0, &g)) in start.iter().zip(&grads).enumerate() {
            let wd = if decayed.iter().any(|r| r.contains(&(i as i64))) { 0.1 } else { 0.0 };
            let (mut p, g, mut m, mut v) = (f64::from(p0), f64::from(g), 0.0, 0.0);
            for t in 1..=3 {
                m = b1 * m + (1.0 - b1) * g;
                v = b2 * v + (1.0 - b2) * g * g;
                p *= 1.0 - lr * wd;
                let denom = (v / (1.0 - b2.powi(t))).sqrt() + eps;
                p -= lr / (1.0 - b1.powi(t)) * m / denom;
            }
            assert!((f64::from(got[i]) - p).abs() < 1e-6, "element {i}: {} vs {p}", got[i]);
        }
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
