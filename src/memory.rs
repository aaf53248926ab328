//! The memory formula: peak device memory per rank by FSDP's categories (Zhao et al. 2023,
//! PyTorch FSDP notes "FSDP buffer sizes"; ZeRO's 16 B/param for mixed-precision AdamW,
//! Rajbhandari et al. 2019), activations after Korthikanti et al. 2022, allocator overhead as a
//! given fraction. It lies below both of its users, `plan` (which rejects points that do not
//! fit, without overhead) and `predict` (which adds the calibrated overhead), and takes plain
//! values: the model's shapes, the strategy, the knobs and the layout ([`Inputs`]).

use serde::Serialize;

use crate::model::{block_params, ModelConfig};
use crate::records::{Dtype, ParallelSpec, Strategy};

/// What the formula needs of a point (`plan::PointSpec` converts into it).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub model: &'a ModelConfig,
    pub strategy: Strategy,
    pub parallel: &'a ParallelSpec,
    /// Ranks in the run.
    pub world_size: u32,
    /// Ranks sharding each unit (at least 1).
    pub shard_ranks: u32,
    /// Images per rank and micro-step.
    pub micro_batch: u32,
}

/// Bytes per rank at the step's peak, by category.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryBytes {
    /// fp32 parameter shard (4 B/param over the shard group).
    pub param_shards: f64,
    /// fp32 gradient shard, held from its reduction in backward to the optimizer step
    /// (`zero_grad(set_to_none=True)` frees it), so not beside forward's activations.
    pub grad_shards: f64,
    /// AdamW's two fp32 moments.
    pub optimizer_state: f64,
    /// Unsharded parameters held at once in `param_dtype`: the root plus the current and the
    /// prefetched unit (the rate limiter's two), or every unit for the strategies that keep them
    /// after forward.
    pub gathered_params: f64,
    /// Unsharded gradients at their peak (PyTorch FSDP notes, "FSDP buffer sizes"): the
    /// current unit's from autograd in `param_dtype` and its cast to `reduce_dtype` (none when
    /// the dtypes agree), and the previous unit's reduction input while it is in flight; with
    /// gradient accumulation (`no_sync`), every unit's gradient accumulated unsharded in
    /// `param_dtype` from the first micro-batch to its reduction in the last.
    pub unsharded_grads: f64,
    /// Stored activations (block inputs with checkpointing, plus one block's full set), and
    /// the micro-batch's pixel tensors, which grow with the input channels.
    pub activations: f64,
    /// Allocator and workspace overhead on top of the above.
    pub allocator_overhead: f64,
    /// Peak allocated ("active") bytes: the categories plus the overhead; what
    /// `max_memory_allocated` reports.
    pub peak: f64,
    /// Peak reserved bytes: what the caching allocator holds from the device at that peak
    /// (`max_memory_reserved`), the peak times 1 + the reserved fraction.
    pub reserved_peak: f64,
}

fn dtype_bytes(d: Dtype) -> f64 {
    f64::from(d.bytes())
}

/// Parameters (elements) of the whole model, of its root unit and of its largest block: what
/// the memory model needs of the units (`compute::units` lists them all).
struct UnitSizes {
    total: f64,
    root: f64,
    largest: f64,
}

impl UnitSizes {
    fn of(m: &ModelConfig) -> Self {
        let (encoder, decoder) =
            (block_params(m.width, m.mlp), block_params(m.decoder_width, m.decoder_mlp));
        let largest = [(m.depth, encoder), (m.decoder_depth, decoder)]
            .iter()
            .filter(|(depth, _)| *depth > 0)
            .map(|(_, params)| *params)
            .max()
            .unwrap_or(0);
        let (total, root) = (m.trainable_params() as f64, m.root_params() as f64);
        Self { total, root, largest: largest as f64 }
    }
}

/// Peak memory of one rank of `point` (a `PointSpec` or its [`Inputs`]): model states plus the
/// step's transients. AdamW runs libtorch's fused kernel, which needs no temporary (the
/// unfused update's `exp_avg_sq.sqrt()` would add one unit's shard). The planner rejects points
/// with it (`overhead_fraction` 0); predictions add the calibrated allocator overhead.
pub fn peak<'a>(point: impl Into<Inputs<'a>>, overhead_fraction: f64) -> MemoryBytes {
    let point = point.into();
    let k = point.parallel;
    let shard = f64::from(point.shard_ranks);
    let UnitSizes { total: params, root, largest } = UnitSizes::of(point.model);
    let (bp, b) = (dtype_bytes(k.param_dtype), f64::from(point.micro_batch));
    let gathered = match point.strategy {
        Strategy::NoShard if k.param_dtype == Dtype::Fp32 => 0.0,
        Strategy::NoShard => bp * (root + 2.0 * largest),
        Strategy::FullShard | Strategy::HybridShard => bp * (root + 2.0 * largest),
        Strategy::ShardGradOp | Strategy::HybridShardZero2 => bp * params,
    };
    let unsharded_grads = unsharded_grad_bytes(&point, params, root, largest);
    let activations = activation_bytes(&point, b, bp);
    // Activations are all held at the end of forward, gradient shards all at the end of
    // backward; in between, backward frees the one as it makes the other (so taking the larger
    // is an approximation: mid-backward holds part of each).
    let (grad_shards, states) = (4.0 * params / shard, 12.0 * params / shard);
    let used = states + gathered + unsharded_grads + activations.max(grad_shards);
    MemoryBytes {
        param_shards: 4.0 * params / shard,
        grad_shards,
        optimizer_state: 8.0 * params / shard,
        gathered_params: gathered,
        unsharded_grads,
        activations,
        allocator_overhead: overhead_fraction * used,
        peak: used * (1.0 + overhead_fraction),
        // The caching allocator's own margin is the model's to add (`PerfModel`).
        reserved_peak: used * (1.0 + overhead_fraction),
    }
}

/// [`MemoryBytes::unsharded_grads`] of `point`, for a model of `params` parameters whose root
/// unit has `root` and whose largest block `largest` (elements). Between units the peak moves
/// from one unit's post-backward to the next, so the current unit is the larger of root and
/// block and the one in flight the largest block.
fn unsharded_grad_bytes(point: &Inputs, params: f64, root: f64, largest: f64) -> f64 {
    let k = point.parallel;
    let (bp, reduce) = (dtype_bytes(k.param_dtype), dtype_bytes(k.reduce_dtype));
    let cast = if k.reduce_dtype == k.param_dtype { 0.0 } else { reduce };
    let (current, reduces) = (largest.max(root), point.world_size > 1);
    if k.accumulation > 1 {
        // Autograd's new gradient beside the accumulated one until added, then the cast; the
        // unit in flight holds its reduction input instead of its accumulated gradient.
        let in_flight = if reduces { (reduce - bp).max(0.0) * largest } else { 0.0 };
        bp * params + bp.max(cast) * current + in_flight
    } else {
        let in_flight = if reduces { reduce * largest } else { 0.0 };
        (bp + cast) * current + in_flight
    }
}

/// Activations per block after Korthikanti et al. (2022), s*b*h*(34 + 5*a*s/h) bytes in
/// 16-bit (doubled in fp32); with checkpointing only each block's input (2*s*b*h) is kept,
/// plus one block's full set while it is recomputed. Beside them, [`pixel_bytes`].
fn activation_bytes(point: &Inputs, b: f64, bp: f64) -> f64 {
    blocks_activation_bytes(point, b, bp) + pixel_bytes(point.model, b, bp)
}

/// The micro-batch's tensors of C x H x W values per image, which the blocks' count leaves
/// out and which grow with the input channels: the fp32 images and their patches, the
/// prediction in `param_dtype`, its fp32 copy and the loss's difference (fp32) kept for
/// backward.
fn pixel_bytes(m: &ModelConfig, b: f64, bp: f64) -> f64 {
    let values = (m.image_size * m.image_size * m.channels) as f64;
    b * values * (4.0 * 4.0 + bp)
}

fn blocks_activation_bytes(point: &Inputs, b: f64, bp: f64) -> f64 {
    let m = point.model;
    let scale = bp / 2.0;
    let block = |s: i64, h: i64, a: i64| {
        let (s, h, a) = (s as f64, h as f64, a as f64);
        s * b * h * (34.0 + 5.0 * a * s / h) * scale
    };
    let (se, sd) = (m.visible_patches() + 1, m.patches() + 1);
    let enc = block(se, m.width, m.heads);
    let dec = block(sd, m.decoder_width, m.decoder_heads);
    if point.parallel.activation_checkpointing {
        let inputs = 2.0
            * b
            * scale
            * ((se * m.width * m.depth) as f64 + (sd * m.decoder_width * m.decoder_depth) as f64);
        inputs + enc.max(dec)
    } else {
        m.depth as f64 * enc + m.decoder_depth as f64 * dec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_tensors_grow_with_the_input_channels() {
        let rgb = crate::model::preset("vit-base").unwrap();
        let s2 = ModelConfig { channels: 13, ..rgb.clone() };
        // 32 images of 224 x 224 x 10 more values, at 16 B (fp32 copies) + 2 B (bf16).
        let extra = pixel_bytes(&s2, 32.0, 2.0) - pixel_bytes(&rgb, 32.0, 2.0);
        assert_eq!(extra, 32.0 * 224.0 * 224.0 * 10.0 * 18.0);
    }
}
