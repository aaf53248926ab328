//! Synthetic images, as in the study's performance runs: smooth random colour patterns (a few
//! plane waves per channel plus a little noise) that an MAE can learn to inpaint, so losses
//! fall and numerical comparisons across strategies are meaningful.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;
use tch::{Kind, Tensor};

/// Random streams are separated by purpose so images and masks never share numbers.
const IMAGE_STREAM: u64 = 0;
const MASK_STREAM: u64 = 1 << 62;
const WAVES_PER_CHANNEL: usize = 3;

#[derive(Debug, Clone, Copy)]
pub struct SyntheticImages {
    pub seed: u64,
    pub image_size: i64,
    pub channels: i64,
}

impl SyntheticImages {
    fn rng(&self, stream: u64, index: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream + index);
        rng
    }

    /// Images of the global samples `indices`, as [len, channels, size, size] fp32 on the CPU.
    pub fn images(&self, indices: Range<u64>) -> Tensor {
        let (s, c) = (self.image_size as usize, self.channels as usize);
        let mut pixels = Vec::with_capacity(indices.clone().count() * c * s * s);
        for index in indices.clone() {
            let mut rng = self.rng(IMAGE_STREAM, index);
            for _ in 0..c {
                let waves: Vec<[f32; 4]> = (0..WAVES_PER_CHANNEL)
                    .map(|_| {
                        let freq = std::f32::consts::TAU / s as f32;
                        [
                            rng.random_range(-3.0..3.0) * freq,
                            rng.random_range(-3.0..3.0) * freq,
                            rng.random_range(0.0..std::f32::consts::TAU),
                            rng.random_range(0.2..0.6),
                        ]
                    })
                    .collect();
                for y in 0..s {
                    for x in 0..s {
                        let value: f32 = waves
                            .iter()
                            .map(|[fx, fy, phase, amp]| {
                                amp * (fx * x as f32 + fy * y as f32 + phase).sin()
                            })
                            .sum();
                        pixels.push(value + rng.random_range(-0.05..0.05));
                    }
                }
            }
        }
        let n = (indices.end - indices.start) as i64;
        Tensor::from_slice(&pixels).view([n, self.channels, self.image_size, self.image_size])
    }

    /// MAE masking noise of the global samples `indices`: [len, patches] uniform in [0, 1).
    pub fn mask_noise(&self, indices: Range<u64>, patches: i64) -> Tensor {
        let mut noise = Vec::with_capacity(indices.clone().count() * patches as usize);
        for index in indices.clone() {
            let mut rng = self.rng(MASK_STREAM, index);
            noise.extend((0..patches).map(|_| rng.random::<f32>()));
        }
        Tensor::from_slice(&noise)
            .view([(indices.end - indices.start) as i64, patches])
            .to_kind(Kind::Float)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_depend_only_on_seed_and_global_index() {
        let data = SyntheticImages { seed: 7, image_size: 16, channels: 3 };
        let whole = data.images(0..8);
        let halves = Tensor::cat(&[data.images(0..4), data.images(4..8)], 0);
        assert!(whole.equal(&halves));
        assert!(data
            .mask_noise(0..8, 4)
            .equal(&Tensor::cat(&[data.mask_noise(0..2, 4), data.mask_noise(2..8, 4)], 0)));
        let other_seed = SyntheticImages { seed: 8, ..data };
        assert!(!whole.equal(&other_seed.images(0..8)));
        assert!(!data.images(0..1).equal(&data.images(1..2)));
    }
}
