//! MAE's pretraining augmentation (facebookresearch/mae `main_pretrain.py`):
//! `RandomResizedCrop(size, scale=(0.2, 1.0))`, `RandomHorizontalFlip()`, then normalisation
//! with the ImageNet mean and standard deviation. The crop follows torchvision's
//! `RandomResizedCrop.get_params` (10 tries of area x aspect, then a centre crop); resampling
//! is bilinear (MAE uses bicubic: a smaller kernel, the same geometry).

use rand::Rng;

use super::raster::Sample;

/// torchvision's ImageNet normalisation, as MAE uses for pretraining and probing.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// MAE's smallest crop (see [`crate::plan::MAE_CROP_MIN_SCALE`]): the experiment's default
/// lives with the settings, which the data pipeline reads, not the other way round.
pub use crate::plan::MAE_CROP_MIN_SCALE;
const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// A crop window in source pixels: top, left, height, width, and whether to flip it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
    pub flip: bool,
}

impl Crop {
    pub fn whole(height: usize, width: usize) -> Self {
        Self { top: 0, left: 0, height, width, flip: false }
    }
}

/// A random resized crop and flip of an `height` x `width` image, drawn from `rng`, covering
/// `min_scale` to all of the image's area (torchvision's `scale=(min_scale, 1.0)`).
pub fn random_resized_crop(
    rng: &mut impl Rng,
    height: usize,
    width: usize,
    min_scale: f64,
) -> Crop {
    let area = (height * width) as f64;
    let flip_and = |top, left, h, w, rng: &mut dyn rand::RngCore| Crop {
        top,
        left,
        height: h,
        width: w,
        flip: rng.random_bool(0.5),
    };
    for _ in 0..10 {
        let target = area * rng.random_range(min_scale..=1.0);
        let aspect = rng.random_range(RATIO.0.ln()..RATIO.1.ln()).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if (1..=width).contains(&w) && (1..=height).contains(&h) {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return flip_and(top, left, h, w, rng);
        }
    }
    // Fallback: the largest centre crop within the aspect ratio range.
    let ratio = width as f64 / height as f64;
    let (w, h) = if ratio < RATIO.0 {
        (width, (width as f64 / RATIO.0).round() as usize)
    } else if ratio > RATIO.1 {
        ((height as f64 * RATIO.1).round() as usize, height)
    } else {
        (width, height)
    };
    flip_and((height - h) / 2, (width - w) / 2, h, w, rng)
}

/// Resamples `crop` of `image` (uint8, [height, width, channels] row-major) to `size` x `size`
/// bilinearly (pixel centres aligned, as torchvision's `antialias=False`), then scales to [0, 1]
/// and normalises with the ImageNet statistics into `out` ([channels, size, size] fp32).
/// Channels past the third use the third's statistics.
pub fn normalise_resized(
    image: &[u8],
    shape: [usize; 3],
    crop: Crop,
    size: usize,
    out: &mut [f32],
) {
    resample_normalised(image, shape, crop, size, out, |c, value| {
        let k = c.min(2);
        (value / 255.0 - IMAGENET_MEAN[k]) / IMAGENET_STD[k]
    });
}

/// How the loader scales samples: an RGB set's uint8 to [0, 1] and ImageNet's statistics, a
/// multiband set's samples by its own train split's per-band mean and standard deviation.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalisation {
    ImageNet,
    /// Per band, (x - mean) / std, in the samples' own units.
    Bands {
        mean: Vec<f32>,
        std: Vec<f32>,
    },
}

/// [`normalise_resized`] for samples of any type, normalised as `normalisation` says.
pub fn normalise_resized_as<T: Sample>(
    image: &[T],
    shape: [usize; 3],
    crop: Crop,
    size: usize,
    out: &mut [f32],
    normalisation: &Normalisation,
) {
    match normalisation {
        Normalisation::ImageNet => resample_normalised(image, shape, crop, size, out, |c, v| {
            let k = c.min(2);
            (v / 255.0 - IMAGENET_MEAN[k]) / IMAGENET_STD[k]
        }),
        Normalisation::Bands { mean, std } => {
            resample_normalised(image, shape, crop, size, out, |c, v| (v - mean[c]) / std[c])
        }
    }
}

/// Bilinear resampling of `crop` to `size` x `size`, each interpolated value of channel c
/// mapped by `normalise(c, value)` into `out` ([channels, size, size]).
fn resample_normalised<T: Sample>(
    image: &[T],
    [height, width, channels]: [usize; 3],
    crop: Crop,
    size: usize,
    out: &mut [f32],
    normalise: impl Fn(usize, f32) -> f32,
) {
    let sy = crop.height as f32 / size as f32;
    let sx = crop.width as f32 / size as f32;
    let coord = |o: usize, scale: f32, start: usize, len: usize, limit: usize| {
        let c = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
        let lo = c.floor() as usize;
        let hi = (lo + 1).min(len - 1);
        ((start + lo).min(limit - 1), (start + hi).min(limit - 1), c - lo as f32)
    };
    let xs: Vec<_> = (0..size)
        .map(|o| {
            let o = if crop.flip { size - 1 - o } else { o };
            coord(o, sx, crop.left, crop.width, width)
        })
        .collect();
    for oy in 0..size {
        let (y0, y1, fy) = coord(oy, sy, crop.top, crop.height, height);
        for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..channels {
                let at = |y: usize, x: usize| image[(y * width + x) * channels + c].to_f32();
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                out[(c * size + oy) * size + ox] = normalise(c, top * (1.0 - fy) + bottom * fy);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crops_stay_inside_and_keep_scale_and_ratio() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..500 {
            let c = random_resized_crop(&mut rng, 40, 30, MAE_CROP_MIN_SCALE);
            assert!(c.top + c.height <= 40 && c.left + c.width <= 30);
            assert!(c.height >= 1 && c.width >= 1);
            // Rounding the sides moves the area by at most about one row and one column.
            let area = (c.height * c.width) as f64;
            assert!(area >= 0.2 * 1200.0 - 40.0 - 30.0, "{c:?}");
            let big = random_resized_crop(&mut rng, 40, 30, 0.9);
            assert!((big.height * big.width) as f64 >= 0.9 * 1200.0 - 40.0 - 30.0, "{big:?}");
        }
    }

    #[test]
    fn whole_crop_at_the_same_size_is_the_normalised_image() {
        let image: Vec<u8> = (0..4 * 4 * 3).map(|v| (v * 5) as u8).collect();
        let mut out = vec![0.0; 3 * 4 * 4];
        normalise_resized(&image, [4, 4, 3], Crop::whole(4, 4), 4, &mut out);
        let expected = (f32::from(image[(2 * 4 + 1) * 3 + 1]) / 255.0 - 0.456) / 0.224;
        assert!((out[(4 + 2) * 4 + 1] - expected).abs() < 1e-5);
        let mut flipped = vec![0.0; 3 * 4 * 4];
        let crop = Crop { flip: true, ..Crop::whole(4, 4) };
        normalise_resized(&image, [4, 4, 3], crop, 4, &mut flipped);
        assert_eq!(flipped[(4 + 2) * 4 + 2], out[(4 + 2) * 4 + 1]);
    }

    #[test]
    fn bands_are_normalised_by_their_own_statistics() {
        // Two bands of uint16: band 0 = 1000 + 10 x pixel, band 1 = 3000.
        let image: Vec<u16> = (0..9u16).flat_map(|i| [1000 + 10 * i, 3000]).collect();
        let norm = Normalisation::Bands { mean: vec![1040.0, 2000.0], std: vec![20.0, 500.0] };
        let mut out = vec![0.0; 2 * 9];
        normalise_resized_as(&image, [3, 3, 2], Crop::whole(3, 3), 3, &mut out, &norm);
        assert_eq!(out[..9], [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]);
        assert!(out[9..].iter().all(|&v| v == 2.0));
    }
}
