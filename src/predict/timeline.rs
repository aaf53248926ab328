//! One FSDP step simulated unit by unit, as the engine (`train::sharded`) and PyTorch FSDP
//! run it: one compute stream, one FIFO stream for the shard group's all-gathers and
//! reduce-scatters, one for the hybrid strategies' inter-node all-reduces (another process
//! group, so another stream). Forward gathers are prefetched one unit ahead under the rate
//! limiter (at most two gathered units: the next gather is issued when the unit before the
//! current one has been freed); backward prefetch is pre (next gather issued before this
//! unit's gradients), post (after them, before this unit's reduce-scatter) or none (when the
//! next unit starts). Reductions run only on the last micro-batch of an accumulation.
//! Source: PyTorch `torch/distributed/fsdp/_runtime_utils.py` and `_limiter_utils.py`, the
//! FSDP notes "FSDP Prefetch Nuances".

use serde::Serialize;

use super::collectives::{time_s, CollectiveKind, Group};
use super::compute::Unit;
use super::hardware::Hardware;
use crate::plan::{BackwardPrefetch, Dtype, PointSpec, Strategy};

/// Where one step's time goes on the critical path (seconds); the phases add up to `step_s`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepTimes {
    pub data_s: f64,
    pub forward_s: f64,
    pub backward_s: f64,
    pub recompute_s: f64,
    pub exposed_all_gather_s: f64,
    pub exposed_reduce_scatter_s: f64,
    pub exposed_all_reduce_s: f64,
    pub optimizer_s: f64,
    pub step_s: f64,
}

/// AdamW reads parameter, gradient and both moments and writes parameter and moments:
/// 28 B per fp32 parameter of the shard (memory-bound).
const ADAMW_BYTES_PER_PARAM: f64 = 28.0;

fn dtype_bytes(d: Dtype) -> f64 {
    f64::from(d.bytes())
}

/// Simulates one step of `point`; `compute_scale` multiplies the hardware's compute rate
/// (a per-model calibration, 1 without one).
pub fn simulate(point: &PointSpec, units: &[Unit], hw: &Hardware, compute_scale: f64) -> StepTimes {
    let k = &point.parallel;
    let (world, rpn) = (point.world_size(), point.ranks_per_node);
    let shard = point.shard_ranks();
    let shard_group = Group::consecutive(shard, rpn);
    let (bp, br) = (dtype_bytes(k.param_dtype), dtype_bytes(k.reduce_dtype));
    let b = f64::from(point.micro_batch);
    let n = units.len();
    let threads = f64::from(world * point.settings.threads_per_rank.max(1));
    let share = hw.shared_cores.map_or(1.0, |cores| (cores / threads).min(1.0));
    let compute_scale = compute_scale * share;
    let fwd: Vec<f64> = units
        .iter()
        .map(|u| b * u.forward_flop / (hw.block_flop_per_s(u.width) * compute_scale))
        .collect();
    let ag: Vec<f64> = units
        .iter()
        .map(|u| time_s(hw, CollectiveKind::AllGather, u.params * bp, shard_group))
        .collect();
    let rs: Vec<f64> = units
        .iter()
        .map(|u| time_s(hw, CollectiveKind::ReduceScatter, u.params * br, shard_group))
        .collect();
    let ar: Vec<f64> = units
        .iter()
        .map(|u| match point.strategy {
            Strategy::NoShard => {
                time_s(hw, CollectiveKind::AllReduce, u.params * br, Group::consecutive(world, rpn))
            }
            Strategy::HybridShard | Strategy::HybridShardZero2 => time_s(
                hw,
                CollectiveKind::AllReduce,
                u.params * br / f64::from(shard),
                Group::replicas(world, shard, rpn),
            ),
            Strategy::FullShard | Strategy::ShardGradOp => 0.0,
        })
        .collect();
    let sharded = point.strategy.shards();
    let reshards = point.strategy.reshards_after_forward();
    let mut t = StepTimes::default();
    // Stream clocks: compute, the shard group's stream, the inter-node all-reduce stream.
    let (mut c, mut kq, mut kar) = (0.0f64, 0.0f64, 0.0f64);
    let accumulation = k.accumulation.max(1);
    let pixels = (point.model.image_size.pow(2) * point.model.channels) as f64;
    let data = hw.data_s_per_pixel * pixels * b;
    for micro in 0..accumulation {
        let last = micro + 1 == accumulation;
        c += data;
        t.data_s += data;
        // Forward: gathers issued one unit ahead, when the unit two back has been freed.
        let gather_fwd = sharded && (micro == 0 || reshards);
        let mut done = vec![c; n];
        // Without overlap a collective runs when compute needs it and compute waits for it.
        let prefetch = hw.overlap;
        let issue = |kq: &mut f64, at: f64, u: usize, done: &mut Vec<f64>| {
            *kq = kq.max(at) + ag[u];
            done[u] = *kq;
        };
        if gather_fwd {
            issue(&mut kq, c, 0, &mut done);
        }
        let mut prev_end = c;
        for u in 0..n {
            if !prefetch && gather_fwd && u > 0 {
                issue(&mut kq, c, u, &mut done);
            }
            if prefetch && gather_fwd && u + 1 < n {
                let at = if k.limit_all_gathers { prev_end } else { c };
                issue(&mut kq, at, u + 1, &mut done);
            }
            let start = c.max(done[u]);
            t.exposed_all_gather_s += start - c;
            prev_end = c;
            c = start + fwd[u];
            t.forward_s += fwd[u];
        }
        // Backward, last unit first.
        let needs = |u: usize| sharded && reshards && !units[u].is_root;
        let mut gathered = vec![false; n];
        if needs(n - 1) {
            issue(&mut kq, c, n - 1, &mut done);
            gathered[n - 1] = true;
        }
        for u in (0..n).rev() {
            if needs(u) && !gathered[u] {
                issue(&mut kq, c, u, &mut done);
                gathered[u] = true;
            }
            let start = if needs(u) { c.max(done[u]) } else { c };
            t.exposed_all_gather_s += start - c;
            c = start;
            if prefetch && u > 0 && needs(u - 1) && k.backward_prefetch == BackwardPrefetch::Pre {
                issue(&mut kq, c, u - 1, &mut done);
                gathered[u - 1] = true;
            }
            let recompute =
                if k.activation_checkpointing && !units[u].is_root { fwd[u] } else { 0.0 };
            let backward = hw.backward_to_forward * fwd[u];
            c += backward + recompute;
            t.backward_s += backward;
            t.recompute_s += recompute;
            if prefetch && u > 0 && needs(u - 1) && k.backward_prefetch == BackwardPrefetch::Post {
                issue(&mut kq, c, u - 1, &mut done);
                gathered[u - 1] = true;
            }
            if last {
                if sharded {
                    kq = kq.max(c) + rs[u];
                    kar = kar.max(kq) + ar[u];
                } else {
                    kq = kq.max(c) + ar[u];
                }
                if !prefetch {
                    let (before, end) = (c, kq.max(kar));
                    if sharded {
                        t.exposed_reduce_scatter_s += kq - before;
                        t.exposed_all_reduce_s += end - kq;
                    } else {
                        t.exposed_all_reduce_s += end - before;
                    }
                    c = end;
                }
            }
        }
    }
    // The optimizer needs every reduction; what compute waits for is exposed.
    let after_rs = kq.max(c);
    let waits =
        if sharded { (after_rs - c, kar.max(after_rs) - after_rs) } else { (0.0, after_rs - c) };
    t.exposed_reduce_scatter_s += waits.0;
    t.exposed_all_reduce_s += waits.1;
    let params: f64 = units.iter().map(|u| u.params).sum();
    t.optimizer_s = ADAMW_BYTES_PER_PARAM * params / f64::from(shard) / hw.memory_bytes_per_s;
    t.step_s = c + waits.0 + waits.1 + t.optimizer_s;
    t
}
