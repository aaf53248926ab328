//! Training in-process on one rank: the MAE learns, and replicated training is deterministic.

use shardsweep::comm::SelfComm;
use shardsweep::data::SyntheticImages;
use shardsweep::metrics::{Clock, Collectives};
use shardsweep::model::{preset, Mae};
use shardsweep::plan::OptimizerSettings;
use shardsweep::train::{Parallelism, Replicated};
use tch::{Device, Kind};

/// Initialisation draws from libtorch's global generator: tests that seed it take turns.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn train_fixed_batch(steps: usize, lr: f64, kind: Kind) -> Vec<f64> {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    tch::set_num_threads(1);
    let mae = Mae::new(preset("vit-tiny").unwrap(), Device::Cpu);
    let mut model = Replicated::new(&mae, Device::Cpu, kind, &OptimizerSettings::default());
    let data = SyntheticImages { seed: 3, image_size: 32, channels: 3 };
    let (images, noise) = (data.images(0..8), data.mask_noise(0..8, mae.config.patches()));
    let clock = Clock::new(Device::Cpu);
    (0..steps)
        .map(|_| {
            let mut collectives = Collectives::new(&SelfComm, &clock, 0.0);
            let loss = model.forward(&images, &noise, &mut collectives).unwrap();
            model.backward(&loss, &mut collectives).unwrap();
            model.reduce_gradients(&mut collectives).unwrap();
            model.optimizer_step(lr);
            loss.double_value(&[])
        })
        .collect()
}

#[test]
fn loss_falls_over_thirty_steps_on_a_fixed_batch() {
    let losses = train_fixed_batch(30, 3e-3, Kind::Float);
    assert!(losses.iter().all(|l| l.is_finite()));
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < 0.6 * first, "loss went from {first} to {last}: {losses:?}");
    // Mostly downhill, not one lucky step.
    let falling = losses.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(falling >= 20, "only {falling} of 29 steps lowered the loss: {losses:?}");
}

#[test]
fn bf16_compute_trains_too_and_stays_close_to_fp32_at_first() {
    let fp32 = train_fixed_batch(10, 3e-3, Kind::Float);
    let bf16 = train_fixed_batch(10, 3e-3, Kind::BFloat16);
    assert!((bf16[0] - fp32[0]).abs() / fp32[0] < 2e-2, "{} vs {}", bf16[0], fp32[0]);
    assert!(bf16[9] < bf16[0], "{bf16:?}");
}

#[test]
fn training_is_deterministic() {
    assert_eq!(train_fixed_batch(5, 3e-3, Kind::Float), train_fixed_batch(5, 3e-3, Kind::Float));
}

#[test]
fn one_rank_records_one_all_reduce_per_unit() {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let mae = Mae::new(preset("vit-tiny").unwrap(), Device::Cpu);
    let mut model = Replicated::new(&mae, Device::Cpu, Kind::Float, &OptimizerSettings::default());
    let data = SyntheticImages { seed: 0, image_size: 32, channels: 3 };
    let clock = Clock::new(Device::Cpu);
    let mut collectives = Collectives::new(&SelfComm, &clock, clock.now_s());
    let loss = model.forward(&data.images(0..2), &data.mask_noise(0..2, mae.config.patches()), &mut collectives).unwrap();
    model.backward(&loss, &mut collectives).unwrap();
    model.reduce_gradients(&mut collectives).unwrap();
    let records = collectives.into_records();
    assert_eq!(records.len(), mae.units().len());
    for (unit, (record, layout)) in records.iter().zip(mae.units()).enumerate() {
        assert_eq!(record.unit as usize, unit);
        assert_eq!(record.payload_bytes as i64, 4 * layout.numel());
        assert_eq!((record.group_size, record.dtype.as_str()), (1, "float32"));
        assert!(record.end_s >= record.start_s && record.start_s >= 0.0);
    }
    let total: i64 = records.iter().map(|r| r.payload_bytes as i64).sum();
    assert_eq!(total, 4 * mae.config.trainable_params());
}
