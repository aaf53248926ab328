//! AdamW on a rank's flat parameter shards through libtorch's fused kernel (`at::_fused_adamw_`,
//! PyTorch's `AdamW(fused=True)`: one pass over parameter, gradient and moments, no
//! temporaries), in `adamw.cpp`. Biases, norms and other 1-D tensors are not decayed (MAE's
//! `add_weight_decay`): each shard is cut into views of its decayed and undecayed ranges,
//! passed to the kernel as two groups, as PyTorch users pass two parameter groups. Gradients
//! come at each step, as PyTorch's `zero_grad(set_to_none=True)` leaves them between steps.

use std::ops::Range;

use tch::{Kind, Tensor};

use crate::ffi::adamw::ss_adamw_step;
use crate::plan::OptimizerSettings;

/// One parameter group's views across all shards: which shard and range each covers (the
/// gradient's views are cut from them at each step), and the parameter's and moments' views.
#[derive(Default)]
struct Group {
    ranges: Vec<(usize, Range<i64>)>,
    params: Vec<Tensor>,
    exp_avgs: Vec<Tensor>,
    exp_avg_sqs: Vec<Tensor>,
}

/// AdamW's state for a rank's flat fp32 shards (one per FSDP unit), updated by one fused
/// kernel call per parameter group over all of them, as `torch.optim.AdamW(fused=True)` does.
/// Holds views of the shards: keep them, update them in place only.
pub struct AdamW {
    settings: OptimizerSettings,
    /// Where weight decay applies, then where it does not.
    groups: [Group; 2],
    /// How many shards the gradients of a step must cover.
    shards: usize,
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
        let mut groups: [Group; 2] = Default::default();
        let mut state_bytes = 0;
        for (index, (param, decayed)) in shards.iter().enumerate() {
            let (exp_avg, exp_avg_sq) = (param.zeros_like(), param.zeros_like());
            state_bytes += 2 * exp_avg.numel() * exp_avg.kind().elt_size_in_bytes();
            let cut = |group: &mut Group, range: Range<i64>| {
                if !range.is_empty() {
                    let view = |t: &Tensor| t.narrow(0, range.start, range.end - range.start);
                    group.params.push(view(param));
                    group.exp_avgs.push(view(&exp_avg));
                    group.exp_avg_sqs.push(view(&exp_avg_sq));
                    group.ranges.push((index, range));
                }
            };
            let [decaying, not_decaying] = &mut groups;
            let mut offset = 0;
            for range in decayed {
                cut(not_decaying, offset..range.start);
                cut(decaying, range.clone());
                offset = range.end;
            }
            cut(not_decaying, offset..param.size()[0]);
        }
        Self {
            groups,
            shards: shards.len(),
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
        assert_eq!(grads.len(), self.shards, "one gradient per shard");
        let s = &self.settings;
        self.steps += 1;
        let _ = self.step.fill_(f64::from(self.steps));
        for (group, weight_decay) in self.groups.iter().zip([s.weight_decay, 0.0]) {
            if group.params.is_empty() {
                continue;
            }
            let grads: Vec<Tensor> = group
                .ranges
                .iter()
                .map(|(shard, r)| grads[*shard].narrow(0, r.start, r.end - r.start))
                .collect();
            let pointers = |ts: &[Tensor]| ts.iter().map(Tensor::as_ptr).collect::<Vec<_>>();
            let (p, g) = (pointers(&group.params), pointers(&grads));
            let (m, v) = (pointers(&group.exp_avgs), pointers(&group.exp_avg_sqs));
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

/// [`learning_rate`] at `step` of `point`: its steps, warm-up and peak.
pub fn point_learning_rate(point: &crate::plan::PointSpec, step: u32) -> f64 {
    let warmup = point.optimizer.lr_warmup_steps;
    learning_rate(step, point.settings.steps, warmup, point.peak_lr())
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
