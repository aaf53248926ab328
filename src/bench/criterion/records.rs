//! Writing one point's `records.h5` (atomically, as `finalize` does): 8 ranks x 30 steps of a
//! full_shard ViT-Base point, 21 units, each step's all-gathers (forward and backward) and
//! reduce-scatters per unit.
//!
//! `cargo bench --bench records`

use criterion::{criterion_group, criterion_main, Criterion};
use shardsweep::records::{
    write_records, CollectiveKind, CollectiveRecord, MemoryRecord, Phases, RankSpool,
    RecordsHeader, StepRecord, UnitRecord,
};

const RANKS: u32 = 8;
const STEPS: u32 = 30;
/// ViT-Base's root unit, 12 encoder blocks and 8 decoder blocks.
const UNITS: u32 = 21;

fn spool() -> RankSpool {
    let steps = (0..STEPS)
        .map(|step| {
            let s = f64::from(step);
            let collectives = (0..UNITS)
                .flat_map(|unit| {
                    [
                        CollectiveKind::AllGather,
                        CollectiveKind::AllGather,
                        CollectiveKind::ReduceScatter,
                    ]
                    .map(|kind| CollectiveRecord {
                        kind,
                        unit,
                        payload_bytes: 28_348_416,
                        dtype: "fp32".into(),
                        group_size: RANKS,
                        start_s: 0.01 * f64::from(unit),
                        end_s: 0.01 * f64::from(unit) + 0.004,
                        wait_s: 0.001,
                        in_flight: 1,
                        stream_s: None,
                    })
                })
                .collect();
            StepRecord {
                step,
                loss: 1.0 / (1.0 + s),
                phases: Phases {
                    data_s: 0.01,
                    forward_s: 0.2,
                    backward_s: 0.4,
                    comm_s: 0.05,
                    optimizer_s: 0.02,
                    step_s: 0.7,
                },
                peak_rss_bytes: 1 << 30,
                memory: MemoryRecord::default(),
                device_memory: None,
                loader: Default::default(),
                units: (0..UNITS)
                    .map(|unit| UnitRecord {
                        unit,
                        forward_s: 0.01,
                        backward_s: 0.02,
                        recompute_s: 0.0,
                    })
                    .collect(),
                collectives,
            }
        })
        .collect();
    RankSpool { info: None, steps, finished: true, error: None }
}

fn records(c: &mut Criterion) {
    let ranks: Vec<RankSpool> = (0..RANKS).map(|_| spool()).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.h5");
    let header = RecordsHeader {
        sweep: "bench",
        point: "vit-base-full_shard-n1x8-mb4",
        steps_planned: STEPS,
        warmup_steps: 5,
    };
    let mut group = c.benchmark_group("records");
    group.sample_size(20);
    group.bench_function("write_point_hdf5/8x30-steps-21-units", |b| {
        b.iter(|| write_records(&path, &header, &ranks).unwrap())
    });
    group.finish();
}

criterion_group!(benches, records);
criterion_main!(benches);
