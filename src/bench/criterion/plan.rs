//! Planning a sweep of 1e5 points (`experiments/plan-1e5.toml`; goal: `shardsweep plan` under
//! 1 s and 500 MB, table and `--json`): the expansion (cartesian product, ids, exclude rules and
//! the memory check of every point), and the JSON document with every point's prediction.
//!
//! `cargo bench --bench plan`

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use shardsweep::plan::{expand, Experiment, Machine};
use shardsweep::predict::write_plan_json;
use shardsweep::predict::{Hardware, PerfModel};

const EXPERIMENT: &str = include_str!("../../../experiments/plan-1e5.toml");

fn plan_1e5(c: &mut Criterion) {
    let experiment = Experiment::parse(EXPERIMENT, Path::new("plan-1e5.toml")).unwrap();
    // A 64 GiB device per rank (a Frontier GCD).
    let machine = Machine { memory_bytes: 64 << 30, per_rank: true };
    let plan = expand(&experiment, &machine);
    assert_eq!(plan.points.len() + plan.rejected.len(), 100_000);
    let model = PerfModel {
        hardware: Hardware::fallback(),
        calibration: None,
        peak_flop_per_s: Default::default(),
        anchors: Vec::new(),
    };
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    group.bench_function("expand_1e5_points", |b| b.iter(|| expand(&experiment, &machine)));
    group.bench_function(format!("json_{}_points", plan.points.len()), |b| {
        b.iter(|| write_plan_json(&plan, &model, std::io::sink()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, plan_1e5);
criterion_main!(benches);
