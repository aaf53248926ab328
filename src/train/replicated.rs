//! NO_SHARD (DDP semantics): every rank holds the whole model and optimizer state, computes
//! gradients on its share of the global batch, and all-reduces each unit's gradient, averaged
//! with FSDP's pre- and post-divide factors.

use tch::{Device, Kind, Tensor};

use super::adamw::AdamW;
use super::Parallelism;
use crate::comm::CommError;
use crate::metrics::Collectives;
use crate::model::{init_unit, Mae, ParamSource};
use crate::plan::OptimizerSettings;

pub struct Replicated<'m> {
    model: &'m Mae,
    /// fp32 master parameters, one flat leaf tensor per unit.
    flats: Vec<Tensor>,
    optimizers: Vec<AdamW>,
    compute_kind: Kind,
}

impl<'m> Replicated<'m> {
    /// Initialises every unit in order from the global generator (seed it first), so all ranks
    /// start from identical weights without a broadcast.
    pub fn new(model: &'m Mae, device: Device, compute_kind: Kind, optimizer: &OptimizerSettings) -> Self {
        let flats: Vec<Tensor> = model.units().iter().map(|u| init_unit(u).to_device(device).set_requires_grad(true)).collect();
        let optimizers = model.units().iter().zip(&flats).map(|(u, p)| AdamW::new(p, u.decay_mask(), optimizer.clone())).collect();
        Self { model, flats, optimizers, compute_kind }
    }
}

/// FSDP divides gradients by f before the reduction and by world/f after it, to keep low
/// precision sums in range; f is the largest power of two with world % f == 0 and world/f > f
/// (torch.distributed.fsdp `_get_gradient_predivide_factor`).
pub fn predivide_factor(world: usize) -> f64 {
    let mut factor = 1;
    while world % factor == 0 && world / factor > factor {
        factor *= 2;
    }
    factor as f64
}

struct ComputeView<'a> {
    flats: &'a [Tensor],
    kind: Kind,
}

impl ParamSource for ComputeView<'_> {
    fn unit(&mut self, index: usize) -> Tensor {
        // A cast inside the graph: gradients flow back to the fp32 master tensor.
        if self.kind == Kind::Float {
            self.flats[index].shallow_clone()
        } else {
            self.flats[index].to_kind(self.kind)
        }
    }
}

impl Parallelism for Replicated<'_> {
    fn forward(&mut self, images: &Tensor, noise: &Tensor, _collectives: &mut Collectives) -> Result<Tensor, CommError> {
        let mut view = ComputeView { flats: &self.flats, kind: self.compute_kind };
        Ok(self.model.loss(&mut view, images, noise))
    }

    fn backward(&mut self, loss: &Tensor, _collectives: &mut Collectives) -> Result<(), CommError> {
        loss.backward();
        Ok(())
    }

    fn reduce_gradients(&mut self, collectives: &mut Collectives) -> Result<(), CommError> {
        let world = collectives.group_size();
        let pre = predivide_factor(world);
        let post = world as f64 / pre;
        for (unit, flat) in self.flats.iter_mut().enumerate() {
            let mut grad = flat.grad();
            let reduced = collectives.all_reduce_sum(unit, &(&grad / pre))? / post;
            tch::no_grad(|| grad.copy_(&reduced));
        }
        Ok(())
    }

    fn optimizer_step(&mut self, lr: f64) {
        for (flat, optimizer) in self.flats.iter_mut().zip(&mut self.optimizers) {
            let mut grad = flat.grad();
            optimizer.step(flat, &grad, lr);
            let _ = grad.zero_();
        }
    }

    fn full_parameters(&self) -> Vec<Tensor> {
        self.flats.iter().map(|f| f.detach().copy()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::predivide_factor;

    #[test]
    fn predivide_factor_matches_pytorch() {
        // Values of torch.distributed.fsdp's _get_gradient_predivide_factor.
        for (world, factor) in [(1, 1.0), (2, 2.0), (4, 2.0), (8, 4.0), (16, 4.0), (64, 8.0), (1024, 32.0), (6, 4.0), (12, 4.0)] {
            assert_eq!(predivide_factor(world), factor, "world {world}");
        }
    }
}
