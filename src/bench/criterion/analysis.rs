//! The analysis' aggregation (per-point step tables, statistics with bootstrap intervals,
//! node scores) over a synthetic tidy store that the benchmark generates once: 40 points x 64
//! ranks x 50 steps x 4 phases = 512,000 rows. The full-size comparison with DuckDB (1e8 rows,
//! whole processes) is `shardsweep bench-analysis`.
//!
//! `cargo bench --bench analysis`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardsweep_analysis::bench::{analyze, generate, Shape};

fn aggregation(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let shape = Shape { points: 40, ranks: 64, steps: 50 };
    let rows = generate(dir.path(), &shape).unwrap();
    let mut group = c.benchmark_group("analysis");
    group.sample_size(10).throughput(Throughput::Elements(rows));
    group.bench_function(format!("aggregate_{rows}_rows"), |b| {
        b.iter(|| {
            let timing = analyze(dir.path(), &shape).unwrap();
            assert_eq!(timing.points, shape.points);
        })
    });
    group.finish();
}

criterion_group!(benches, aggregation);
criterion_main!(benches);
