//! Flat parameters: packing a unit's tensors into one padded flat parameter and cutting a
//! rank's shard (FSDP's FlatParameter), unpacking it into named views (what every stage does
//! before computing), and the AdamW update of a shard.
//!
//! `cargo bench --bench flat`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardsweep::model::{init_unit, preset, Mae, Stage, UnitViews};
use shardsweep::plan::OptimizerSettings;
use shardsweep::train::AdamW;
use tch::{Device, Kind, Tensor};

/// One ViT-Base encoder block (7.1M parameters), sharded over 8 ranks (one Frontier node).
const MODEL: &str = "vit-base";
const SHARDS: i64 = 8;

fn flat(c: &mut Criterion) {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let mae = Mae::new(preset(MODEL).unwrap(), Device::Cpu);
    let layout = &mae.units()[mae.unit_of(Stage::Encoder(0))];
    let flat = init_unit(layout);
    let numel = flat.numel() as i64;
    let tensors: Vec<Tensor> = layout
        .params
        .iter()
        .map(|spec| Tensor::randn(spec.shape.as_slice(), (Kind::Float, Device::Cpu)))
        .collect();
    let mut group = c.benchmark_group("flat_params");
    group.throughput(Throughput::Bytes(4 * numel as u64));
    group.bench_function("pack_and_shard/vit-base-block/8", |b| {
        b.iter(|| {
            // Flatten and concatenate, pad to a multiple of the shard count, cut shard 0.
            let chunk = (numel + SHARDS - 1) / SHARDS;
            let mut parts: Vec<Tensor> = tensors.iter().map(|t| t.reshape([-1])).collect();
            parts.push(Tensor::zeros([chunk * SHARDS - numel], (Kind::Float, Device::Cpu)));
            Tensor::cat(&parts, 0).narrow(0, 0, chunk).contiguous()
        })
    });
    group.bench_function("unpack_views/vit-base-block", |b| {
        b.iter(|| UnitViews::new(&flat, layout))
    });
    group.finish();

    let mut group = c.benchmark_group("adamw");
    for shards in [1, SHARDS] {
        let n = (numel + shards - 1) / shards;
        let param = Tensor::randn([n], (Kind::Float, Device::Cpu));
        let grad = Tensor::randn([n], (Kind::Float, Device::Cpu));
        let one_shard = [(&param, layout.decay_ranges(0..n))];
        let mut optimizer = AdamW::new(&one_shard, OptimizerSettings::default());
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("shard_update/vit-base-block/{shards}"), |b| {
            b.iter(|| optimizer.step(&[&grad], 1e-4))
        });
    }
    group.finish();
}

criterion_group!(benches, flat);
criterion_main!(benches);
