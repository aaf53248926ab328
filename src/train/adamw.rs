//! AdamW on a rank's flat parameter shards through libtorch's fused kernel (`at::_fused_adamw_`,
//! PyTorch's `AdamW(fused=True)`: one pass over parameter, gradient and moments, no
//! temporaries), in `adamw.cpp`. Biases, norms and other 1-D tensors are not decayed (MAE's
//! `add_weight_decay`): each shard is cut into views of its decayed and undecayed ranges,
//! passed to the kernel as two groups, as PyTorch users pass two parameter groups. Gradients
//! come at each step, as PyTorch's `zero_grad(set_to_none=True)` leaves them between steps.

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

/// One shard's parameter and moment views by group (decayed, then not), and the ranges they
/// cover, from which the gradient's views are cut at each step.
struct Shard {
    ranges: [Vec<Range<i64>>; 2],
    params: [Vec<Tensor>; 2],
    exp_avgs: [Vec<Tensor>; 2],
    exp_avg_sqs: [Vec<Tensor>; 2],
}

/// AdamW's state for a rank's flat fp32 shards (one per FSDP unit), updated by one fused
/// kernel call per parameter group over all of them, as `torch.optim.AdamW(fused=True)` does.
/// Holds views of the shards: keep them, update them in place only.
pub struct AdamW {
    settings: OptimizerSettings,
    shards: Vec<Shard>,
    /// Bytes of the two moments.
    state_bytes: usize,
    /// Steps taken, as a float scalar on the parameters' device (the kernel reads it there).
    step: Tensor,
    steps: u32,
}

impl AdamW {
    /// State for `shards`: each a 1-D fp32 tensor and the element ranges of it that weight
    /// decay applies to (ascending, disjoint, within it). All on one device.
    pub fn new(shards: &[(&Tensor, Vec<Range<i64>>)], settings: OptimizerSettings) -> Self {
        let device = shards.first().map_or(tch::Device::Cpu, |(p, _)| p.device());
        let mut state_bytes = 0;
        let shards = shards
            .iter()
            .map(|(param, decayed)| {
                let (exp_avg, exp_avg_sq) = (param.zeros_like(), param.zeros_like());
                state_bytes += 2 * exp_avg.numel() * exp_avg.kind().elt_size_in_bytes();
                let mut ranges: [Vec<Range<i64>>; 2] = Default::default();
                let mut offset = 0;
                for range in decayed {
                    ranges[1].push(offset..range.start);
                    ranges[0].push(range.clone());
                    offset = range.end;
                }
                ranges[1].push(offset..param.size()[0]);
                ranges.iter_mut().for_each(|r| r.retain(|r| !r.is_empty()));
                Shard {
                    params: ranges.clone().map(|r| views(param, &r)),
                    exp_avgs: ranges.clone().map(|r| views(&exp_avg, &r)),
                    exp_avg_sqs: ranges.clone().map(|r| views(&exp_avg_sq, &r)),
                    ranges,
                }
            })
            .collect();
        Self {
            shards,
            state_bytes,
            step: Tensor::zeros([], (Kind::Float, device)),
            settings,
            steps: 0,
        }
    }

    /// Bytes of optimizer state held (the two moments).
    pub fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    /// One update of every shard from its gradient (`grads[i]` for shard `i`, same shape) at
    /// learning rate `lr`; allocates no tensor memory.
    ///
    /// Panics with libtorch's message if the kernel refuses the tensors (libtorch errors are
    /// panics in tch, and training records them as such).
    pub fn step(&mut self, grads: &[&Tensor], lr: f64) {
        assert_eq!(grads.len(), self.shards.len(), "one gradient per shard");
        let s = &self.settings;
        self.steps += 1;
        let _ = self.step.fill_(f64::from(self.steps));
        for (group, weight_decay) in [(0, s.weight_decay), (1, 0.0)] {
            let grads: Vec<Tensor> = self
                .shards
                .iter()
                .zip(grads)
                .flat_map(|(shard, grad)| views(grad, &shard.ranges[group]))
                .collect();
            if grads.is_empty() {
                continue;
            }
            let pointers = |pick: fn(&Shard) -> &[Vec<Tensor>; 2]| {
                self.shards
                    .iter()
                    .flat_map(|shard| pick(shard)[group].iter().map(Tensor::as_ptr))
                    .collect::<Vec<_>>()
            };
            let (p, m, v) =
                (pointers(|s| &s.params), pointers(|s| &s.exp_avgs), pointers(|s| &s.exp_avg_sqs));
            let g: Vec<_> = grads.iter().map(Tensor::as_ptr).collect();
            // SAFETY: every pointer is a live tensor handle of tch's, `n` of each; the kernel
            // updates the parameters and moments in place (views, so the shards and the moments
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
                panic!("AdamW: {}", crate::ffi::last_error());
            }
        }
    }
}

/// Views of `t`'s elements in `ranges`.
fn views(t: &Tensor, ranges: &[Range<i64>]) -> Vec<Tensor> {
    ranges.iter().map(|r| t.narrow(0, r.start, r.end - r.start)).collect()
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
        // The first element; an empty range changes nothing.
        let mut opt = AdamW::new(&[(&p, vec![0..1, 1..1])], settings);
        opt.step(&[&g], 0.1);
        opt.step(&[&g], 0.1);
        // By hand: with a constant gradient the bias-corrected update is lr * sign(g) each step.
        // Element 0: p = (1 * (1 - 0.005) - 0.1) = 0.895, then 0.895 * 0.995 - 0.1 = 0.790525.
        // Element 1: -2 - 0.1 - 0.1 = -2.2.
        let got: Vec<f32> = Vec::try_from(&p).unwrap();
        assert!((got[0] - 0.790525).abs() < 1e-6, "{got:?}");
        assert!((got[1] + 2.2).abs() < 1e-6, "{got:?}");
        assert_eq!(p.device(), Device::Cpu);
        assert_eq!(p.kind(), Kind::Float);
    }

    /// Decayed ranges at the start, inside and undecayed ones at the end of a shard, and a
    /// second shard all decayed, against AdamW written out per element (PyTorch's formula, in
    /// f64).
    #[test]
    fn decays_exactly_the_given_ranges() {
        let settings = OptimizerSettings { weight_decay: 0.1, ..OptimizerSettings::default() };
        let (b1, b2, eps, lr) = (settings.beta1, settings.beta2, settings.eps, 0.01);
        let start = [0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5, -2.0];
        let grads = [0.1f32, -0.2, 0.3, 0.05, -0.4, 0.6, 0.0];
        let decayed = [0..2, 3..5];
        let (p, g) = (Tensor::from_slice(&start[..6]), Tensor::from_slice(&grads[..6]));
        let (q, h) = (Tensor::from_slice(&start[6..]), Tensor::from_slice(&grads[6..]));
        let all = std::iter::once(0..1).collect();
        let mut opt = AdamW::new(&[(&p, decayed.to_vec()), (&q, all)], settings.clone());
        for _ in 0..3 {
            opt.step(&[&g, &h], lr);
        }
        let got: Vec<f32> = [Vec::try_from(&p).unwrap(), Vec::try_from(&q).unwrap()].concat();
        for (i, (&p0, &g)) in start.iter().zip(&grads).enumerate() {
            let wd =
                if i >= 6 || decayed.iter().any(|r| r.contains(&(i as i64))) { 0.1 } else { 0.0 };
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
