//! Compute of one transformer block, forward and backward, at the shapes a calibration needs
//! (one intra-op thread, as a rank with `threads_per_rank = 1`): per-block FLOPs over these
//! times is the compute efficiency the performance model uses.
//!
//! `cargo bench --bench compute`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shardsweep::model::{init_unit, preset, Mae, Stage};
use tch::{Device, Kind, Tensor};

/// (model, micro-batch): a CPU-sized model and ViT-Base at the paper's image size.
const SHAPES: [(&str, i64); 3] = [("vit-small-cpu", 8), ("vit-base", 1), ("vit-base", 4)];

fn block(c: &mut Criterion) {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let mut group = c.benchmark_group("block");
    group.sample_size(20);
    for (name, micro_batch) in SHAPES {
        let mae = Mae::new(preset(name).expect("a preset"), Device::Cpu);
        let c = &mae.config;
        let tokens = c.visible_patches() + 1;
        let stage = Stage::Encoder(0);
        let params = init_unit(&mae.units()[mae.unit_of(stage)]).set_requires_grad(true);
        let images =
            Tensor::rand([micro_batch, 3, c.image_size, c.image_size], (Kind::Float, Device::Cpu));
        let noise = Tensor::rand([micro_batch, c.patches()], (Kind::Float, Device::Cpu));
        let masked = mae.mask(&images, &noise);
        // As in training, the stage input is a leaf that collects its gradient too.
        let x = Tensor::randn([micro_batch, tokens, c.width], (Kind::Float, Device::Cpu))
            .set_requires_grad(true);
        // Matmul FLOPs of one block's forward (the model's formula: qkv, projection, MLP,
        // scores and weighted sum); backward is twice that.
        let (t, d, m) = (tokens as f64, c.width as f64, c.mlp as f64);
        let flop = (2.0 * t * (4.0 * d * d + 2.0 * d * m) + 4.0 * t * t * d) * micro_batch as f64;
        let id = format!("{name}/mb{micro_batch}");
        group.throughput(Throughput::Elements(flop as u64));
        group.bench_function(format!("forward/{id}"), |b| {
            b.iter(|| tch::no_grad(|| mae.run(stage, &params, Some(&x), &masked)))
        });
        group.throughput(Throughput::Elements(2 * flop as u64));
        group.bench_function(format!("backward/{id}"), |b| {
            b.iter_batched(
                || mae.run(stage, &params, Some(&x), &masked).sum(Kind::Float),
                |out| out.backward(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, block);
criterion_main!(benches);
