//! Synthetic images, as in the study's performance runs: smooth random colour patterns (a few
//! plane waves per channel plus a little noise) that an MAE can learn to inpaint, so losses
//! fall and numerical comparisons across strategies are meaningful.
//!
//! Each wave is evaluated separably, sin(fx*x + fy*y + p) = sin(fx*x)cos(fy*y + p) +
//! cos(fx*x)sin(fy*y + p), so a sample costs O(size) sines and two multiply-adds per pixel and
//! wave instead of one sine per pixel and wave. The pixel noise comes from a counter-based
//! generator (the SplitMix64 finaliser of Steele, Lea and Flood, OOPSLA 2014, applied to a
//! per-sample key plus the pixel's position), which is a few integer operations per pixel in
//! this crate's own optimised code; the wave parameters come from a per-sample ChaCha8 stream.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;
use tch::Tensor;

use super::loader::{LoaderFigures, Source};
use super::DataError;

/// Random streams are separated by purpose so images, masks and augmentation never share numbers.
const IMAGE_STREAM: u64 = 0;
pub(crate) const AUGMENT_STREAM: u64 = 1 << 61;
const MASK_STREAM: u64 = 1 << 62;
const WAVES_PER_CHANNEL: usize = 3;

/// The SplitMix64 output function: a bijective 64-bit mix (Steele, Lea and Flood 2014).
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Pixel noise of one sample: uniform in [-0.05, 0.05) from (key, counter).
fn pixel_noise(key: u64, counter: u64) -> f32 {
    let bits = splitmix64(key.wrapping_add(counter.wrapping_mul(0x9E37_79B9_7F4A_7C15))) >> 40;
    (bits as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
}

/// The random stream of global sample `index` for one purpose: a pure function of
/// (seed, stream, index), whoever asks and in whatever order.
pub(crate) fn sample_rng(seed: u64, stream: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream + index);
    rng
}

#[derive(Debug, Clone, Copy)]
pub struct SyntheticImages {
    pub seed: u64,
    pub image_size: i64,
    pub channels: i64,
}

impl SyntheticImages {
    /// Writes the image of global sample `index`, [channels, size, size] fp32, into `out`.
    pub fn fill_image(&self, index: u64, out: &mut [f32]) {
        let s = self.image_size as usize;
        let mut rng = sample_rng(self.seed, IMAGE_STREAM, index);
        let freq = std::f32::consts::TAU / s as f32;
        // Per wave: sin and cos of fx*x over x, amplitude-scaled cos and sin of fy*y + p over y.
        let mut tables = vec![[0f32; 4]; WAVES_PER_CHANNEL * s];
        let key = splitmix64(self.seed ^ splitmix64(index));
        for (c, plane) in out.chunks_exact_mut(s * s).take(self.channels as usize).enumerate() {
            for w in 0..WAVES_PER_CHANNEL {
                let fx = rng.random_range(-3.0f32..3.0) * freq;
                let fy = rng.random_range(-3.0f32..3.0) * freq;
                let phase = rng.random_range(0.0..std::f32::consts::TAU);
                let amp = rng.random_range(0.2f32..0.6);
                for i in 0..s {
                    let (sx, cx) = (fx * i as f32).sin_cos();
                    let (sy, cy) = (fy * i as f32 + phase).sin_cos();
                    tables[w * s + i] = [sx, cx, amp * cy, amp * sy];
                }
            }
            for (y, row) in plane.chunks_exact_mut(s).enumerate() {
                let first = ((c * s + y) * s) as u64;
                for (x, pixel) in row.iter_mut().enumerate() {
                    let mut value = pixel_noise(key, first + x as u64);
                    for w in 0..WAVES_PER_CHANNEL {
                        let [sx, cx, _, _] = tables[w * s + x];
                        let [_, _, acy, asy] = tables[w * s + y];
                        value += sx * acy + cx * asy;
                    }
                    *pixel = value;
                }
            }
        }
    }
}

impl SyntheticImages {
    /// Images of the global samples `indices`, as [len, channels, size, size] fp32 on the CPU.
    pub fn images(&self, indices: Range<u64>) -> Tensor {
        let per_image = self.image_shape().iter().product::<usize>();
        let n = (indices.end - indices.start) as usize;
        let mut pixels = vec![0.0; n * per_image];
        for (index, out) in indices.zip(pixels.chunks_exact_mut(per_image)) {
            self.fill_image(index, out);
        }
        Tensor::from_slice(&pixels).view([
            n as i64,
            self.channels,
            self.image_size,
            self.image_size,
        ])
    }

    /// MAE masking noise of the global samples `indices`: [len, patches] uniform in [0, 1).
    pub fn mask_noise(&self, indices: Range<u64>, patches: i64) -> Tensor {
        let n = (indices.end - indices.start) as usize;
        let mut noise = vec![0.0; n * patches as usize];
        for (index, out) in indices.zip(noise.chunks_exact_mut(patches as usize)) {
            fill_mask_noise(self.seed, index, out);
        }
        Tensor::from_slice(&noise).view([n as i64, patches])
    }
}

impl Source for SyntheticImages {
    fn image_shape(&self) -> [usize; 3] {
        let s = self.image_size as usize;
        [self.channels as usize, s, s]
    }

    /// Generation counts as decoding: it is what turns a sample index into pixels.
    fn fill(
        &self,
        index: u64,
        out: &mut [f32],
        figures: &mut LoaderFigures,
    ) -> Result<(), DataError> {
        let start = std::time::Instant::now();
        self.fill_image(index, out);
        figures.decode_s += start.elapsed().as_secs_f64();
        Ok(())
    }
}

/// MAE masking noise of global sample `index`: `patches` values uniform in [0, 1).
pub fn fill_mask_noise(seed: u64, index: u64, out: &mut [f32]) {
    let key = splitmix64(seed ^ splitmix64(MASK_STREAM ^ index));
    for (i, v) in out.iter_mut().enumerate() {
        *v = pixel_noise(key, i as u64) * 10.0 + 0.5;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(data: &SyntheticImages, index: u64) -> Vec<f32> {
        let mut out = vec![0.0; data.image_shape().iter().product()];
        data.fill_image(index, &mut out);
        out
    }

    #[test]
    fn samples_depend_only_on_seed_and_global_index() {
        let data = SyntheticImages { seed: 7, image_size: 16, channels: 3 };
        assert_eq!(image(&data, 3), image(&data, 3));
        assert_ne!(image(&data, 3), image(&data, 4));
        assert_ne!(image(&data, 3), image(&SyntheticImages { seed: 8, ..data }, 3));
        let (mut a, mut b) = ([0.0; 8], [0.0; 8]);
        fill_mask_noise(7, 5, &mut a);
        fill_mask_noise(7, 5, &mut b);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
    }

    #[test]
    fn separable_waves_match_direct_evaluation() {
        // The same draws evaluated one sine per pixel and wave, as the definition reads.
        let data = SyntheticImages { seed: 3, image_size: 12, channels: 2 };
        let fast = image(&data, 9);
        let s = 12usize;
        let mut rng = sample_rng(3, IMAGE_STREAM, 9);
        let freq = std::f32::consts::TAU / s as f32;
        for c in 0..2 {
            let waves: Vec<[f32; 4]> = (0..WAVES_PER_CHANNEL)
                .map(|_| {
                    [
                        rng.random_range(-3.0f32..3.0) * freq,
                        rng.random_range(-3.0f32..3.0) * freq,
                        rng.random_range(0.0..std::f32::consts::TAU),
                        rng.random_range(0.2f32..0.6),
                    ]
                })
                .collect();
            for y in 0..s {
                for x in 0..s {
                    let direct: f32 = waves
                        .iter()
                        .map(|[fx, fy, p, a]| a * (fx * x as f32 + fy * y as f32 + p).sin())
                        .sum::<f32>()
                        + pixel_noise(splitmix64(3 ^ splitmix64(9)), ((c * s + y) * s + x) as u64);
                    assert!((direct - fast[c * s * s + y * s + x]).abs() < 1e-4);
                }
            }
        }
    }
}
