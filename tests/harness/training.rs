//! Training in-process on one rank: the MAE learns, and replicated training is deterministic.

use shardsweep::comm::SelfComm;
use shardsweep::data::SyntheticImages;
use shardsweep::metrics::{Clock, Collectives};
use shardsweep::model::{preset, Mae};
use shardsweep::plan::{BackwardPrefetch, Dtype, OptimizerSettings, ParallelSpec, Strategy};
use shardsweep::train::Sharded;
use tch::Device;

fn knobs(param_dtype: Dtype) -> ParallelSpec {
    ParallelSpec {
        shard_group: 1,
        accumulation: 1,
        activation_checkpointing: false,
        backward_prefetch: BackwardPrefetch::Pre,
        limit_all_gathers: true,
        param_dtype,
        reduce_dtype: Dtype::Fp32,
    }
}

/// Initialisation draws from libtorch's global generator: tests that seed it take turns.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn train_fixed_batch(steps: usize, lr: f64, dtype: Dtype) -> Vec<f64> {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    tch::set_num_threads(1);
    let mae = Mae::new(preset("vit-tiny").unwrap(), Device::Cpu);
    let clock = Clock::host(Device::Cpu);
    let mut model = Sharded::new(
        &mae,
        &clock,
        &SelfComm,
        Strategy::NoShard,
        knobs(dtype),
        Device::Cpu,
        &OptimizerSettings::default(),
    );
    let data = SyntheticImages { seed: 3, image_size: 32, channels: 3 };
    let (images, noise) = (data.images(0..8), data.mask_noise(0..8, mae.config.patches()));
    (0..steps)
        .map(|_| {
            let start = clock.begin_step();
            let mut collectives = Collectives::new(&clock);
            let loss = model.forward(&images, &noise, &mut collectives).unwrap();
            model.backward(1.0, true, &mut collectives).unwrap();
            model.optimizer_step(lr);
            let timeline = clock.timeline(start).unwrap();
            let records = collectives.into_records(&timeline);
            assert!(records.is_empty(), "one rank communicates with no one");
            loss.double_value(&[])
        })
        .collect()
}

#[test]
fn loss_falls_over_thirty_steps_on_a_fixed_batch() {
    let losses = train_fixed_batch(30, 3e-3, Dtype::Fp32);
    assert!(losses.iter().all(|l| l.is_finite()));
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 0.6 * first, "loss went from {first} to {last}: {losses:?}");
    // Mostly downhill, not one lucky step.
    let falling = losses.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(falling >= 20, "only {falling} of 29 steps lowered the loss: {losses:?}");
}

#[test]
fn bf16_compute_trains_too_and_stays_close_to_fp32_at_first() {
    let fp32 = train_fixed_batch(10, 3e-3, Dtype::Fp32);
    let bf16 = train_fixed_batch(10, 3e-3, Dtype::Bf16);
    assert!((bf16[0] - fp32[0]).abs() / fp32[0] < 2e-2, "{} vs {}", bf16[0], fp32[0]);
    assert!(bf16[9] < bf16[0], "{bf16:?}");
}

#[test]
fn training_is_deterministic() {
    assert_eq!(train_fixed_batch(5, 3e-3, Dtype::Fp32), train_fixed_batch(5, 3e-3, Dtype::Fp32));
}

#[test]
fn accumulation_without_reduction_matches_one_big_batch() {
    // Two micro-batches of 4 with the reduction skipped on the first give the gradients (and
    // so the parameters) of one batch of 8.
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let mae = Mae::new(preset("vit-tiny").unwrap(), Device::Cpu);
    let clock = Clock::host(Device::Cpu);
    let data = SyntheticImages { seed: 5, image_size: 32, channels: 3 };
    let patches = mae.config.patches();
    let train = |accumulation: u64| {
        tch::manual_seed(0);
        let mut model = Sharded::new(
            &mae,
            &clock,
            &SelfComm,
            Strategy::NoShard,
            knobs(Dtype::Fp32),
            Device::Cpu,
            &OptimizerSettings::default(),
        );
        let mut collectives = Collectives::new(&clock);
        let micro = 8 / accumulation;
        for k in 0..accumulation {
            let samples = k * micro..(k + 1) * micro;
            let _loss = model
                .forward(
                    &data.images(samples.clone()),
                    &data.mask_noise(samples, patches),
                    &mut collectives,
                )
                .unwrap();
            model
                .backward(1.0 / accumulation as f64, k + 1 == accumulation, &mut collectives)
                .unwrap();
        }
        model.optimizer_step(1e-2);
        model.full_parameters().unwrap()
    };
    let (whole, accumulated) = (train(1), train(2));
    // Relative to each unit's norm: AdamW's first step is lr x sign(g) where |g| >> eps, so
    // elements whose gradient is at rounding level may move either way.
    for (a, b) in whole.iter().zip(&accumulated) {
        let relative = (a - b).norm().double_value(&[]) / a.norm().double_value(&[]);
        assert!(relative < 1e-5, "relative difference {relative}");
    }
}
