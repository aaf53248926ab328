//! Expanding a sweep of 1e5 points (goal: under 1 s): the cartesian product, ids, exclude
//! rules and the memory check of every point.
//!
//! `cargo bench --bench plan`

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use shardsweep::plan::{expand, Experiment, Machine};

/// 5 models x 5 strategies x 16 node counts x 25 micro-batches x 5 accumulations x 2 = 1e5.
const EXPERIMENT: &str = r#"
name = "expand-1e5"
[axes]
model = ["vit-base", "vit-huge", "vit-1b", "vit-3b", "vit-5b"]
strategy = ["no_shard", "full_shard", "shard_grad_op", "hybrid_shard", "hybrid_shard_zero2"]
nodes = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
ranks_per_node = [8]
micro_batch = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 32]
accumulation = [1, 2, 4, 8, 16]
activation_checkpointing = [false, true]
[[exclude]]
model = "vit-5b"
strategy = "no_shard"
[settings]
steps = 30
warmup_steps = 5
"#;

fn expand_1e5(c: &mut Criterion) {
    let experiment = Experiment::parse(EXPERIMENT, Path::new("expand-1e5.toml")).unwrap();
    // A 64 GiB device per rank (a Frontier GCD).
    let machine = Machine { memory_bytes: 64 << 30, per_rank: true };
    let plan = expand(&experiment, &machine);
    assert_eq!(plan.points.len() + plan.rejected.len(), 100_000);
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    group.bench_function("expand_1e5_points", |b| b.iter(|| expand(&experiment, &machine)));
    group.finish();
}

criterion_group!(benches, expand_1e5);
criterion_main!(benches);
