//! Multiband rasters in memory: the sample types a geospatial image set stores, one image's
//! samples at that type, its georeferencing, and the per-band statistics an import computes.

use std::fmt;

/// The type of every sample of a raster (all its bands share one): a closed set, the types
/// Sentinel-2 (uint16 reflectance), Landsat (uint16, int16) and derived products (float32) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BandDtype {
    U8,
    U16,
    I16,
    F32,
}

impl BandDtype {
    /// numpy's name, as the image set's `dtype` attribute writes it.
    pub fn name(self) -> &'static str {
        match self {
            BandDtype::U8 => "uint8",
            BandDtype::U16 => "uint16",
            BandDtype::I16 => "int16",
            BandDtype::F32 => "float32",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [BandDtype::U8, BandDtype::U16, BandDtype::I16, BandDtype::F32]
            .into_iter()
            .find(|d| d.name() == name)
    }

    pub fn bytes(self) -> usize {
        match self {
            BandDtype::U8 => 1,
            BandDtype::U16 | BandDtype::I16 => 2,
            BandDtype::F32 => 4,
        }
    }
}

impl fmt::Display for BandDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One image's samples, [height, width, bands] row-major (bands interleaved), at their type.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    U8(Vec<u8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    F32(Vec<f32>),
}

/// Runs `$body` with `$v` bound to the samples of `$pixels`, whatever their type.
macro_rules! with_samples {
    ($pixels:expr, $v:ident => $body:expr) => {
        match $pixels {
            $crate::data::raster::Pixels::U8($v) => $body,
            $crate::data::raster::Pixels::U16($v) => $body,
            $crate::data::raster::Pixels::I16($v) => $body,
            $crate::data::raster::Pixels::F32($v) => $body,
        }
    };
}
pub(crate) use with_samples;

impl Pixels {
    pub fn dtype(&self) -> BandDtype {
        match self {
            Pixels::U8(_) => BandDtype::U8,
            Pixels::U16(_) => BandDtype::U16,
            Pixels::I16(_) => BandDtype::I16,
            Pixels::F32(_) => BandDtype::F32,
        }
    }

    pub fn len(&self) -> usize {
        with_samples!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the samples at their type.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().bytes()
    }
}

/// A sample type: converted to fp32 for training and back (rounded, saturating) after
/// resampling.
pub trait Sample: Copy + Send + Sync + 'static {
    fn to_f32(self) -> f32;
    fn from_f32(value: f32) -> Self;
}

macro_rules! integer_sample {
    ($t:ty) => {
        impl Sample for $t {
            fn to_f32(self) -> f32 {
                f32::from(self)
            }
            fn from_f32(value: f32) -> Self {
                // `as` saturates at the type's range (and sends NaN to 0).
                value.round() as $t
            }
        }
    };
}
integer_sample!(u8);
integer_sample!(u16);
integer_sample!(i16);

impl Sample for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(value: f32) -> Self {
        value
    }
}

/// GeoTIFF's georeferencing of one image (OGC GeoTIFF 1.1): the first tie point
/// (`ModelTiepointTag` I, J, K, X, Y, Z), the pixel size (`ModelPixelScaleTag` x, y, z in the
/// CRS's units) and the EPSG code of its CRS (`ProjectedCSTypeGeoKey`, else
/// `GeographicTypeGeoKey`), each absent when the file does not carry it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoTags {
    pub tiepoint: Option<[f64; 6]>,
    pub pixel_scale: Option<[f64; 3]>,
    pub epsg: Option<u16>,
}

/// A decoded raster.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    pub height: usize,
    pub width: usize,
    pub bands: usize,
    /// [height, width, bands].
    pub pixels: Pixels,
    /// Each band's name where the file gives one (GDAL's `DESCRIPTION` items).
    pub band_names: Vec<Option<String>>,
    pub geo: GeoTags,
}

impl Raster {
    /// The raster bilinearly resampled to `size` x `size` (pixel centres aligned), each value
    /// rounded back to the sample type; the same raster when it already has that size, so
    /// samples stored at the source size are the file's exactly.
    pub fn resized(self, size: usize) -> Raster {
        if self.height == size && self.width == size {
            return self;
        }
        let (h, w, c) = (self.height, self.width, self.bands);
        fn resample<T: Sample>(v: &[T], [h, w, c]: [usize; 3], size: usize) -> Vec<T> {
            let axis = |o: usize, len: usize| {
                let x = ((o as f32 + 0.5) * len as f32 / size as f32 - 0.5)
                    .clamp(0.0, (len - 1) as f32);
                let lo = x.floor() as usize;
                (lo, (lo + 1).min(len - 1), x - lo as f32)
            };
            let mut out = Vec::with_capacity(size * size * c);
            for oy in 0..size {
                let (y0, y1, fy) = axis(oy, h);
                for ox in 0..size {
                    let (x0, x1, fx) = axis(ox, w);
                    for b in 0..c {
                        let at = |y: usize, x: usize| v[(y * w + x) * c + b].to_f32();
                        let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                        let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                        out.push(T::from_f32(top * (1.0 - fy) + bottom * fy));
                    }
                }
            }
            out
        }
        let pixels = match &self.pixels {
            Pixels::U8(v) => Pixels::U8(resample(v, [h, w, c], size)),
            Pixels::U16(v) => Pixels::U16(resample(v, [h, w, c], size)),
            Pixels::I16(v) => Pixels::I16(resample(v, [h, w, c], size)),
            Pixels::F32(v) => Pixels::F32(resample(v, [h, w, c], size)),
        };
        Raster { height: size, width: size, pixels, ..self }
    }
}

/// Per-band statistics of the train split, as the image set stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct BandStats {
    pub mean: Vec<f64>,
    /// Population standard deviation.
    pub std: Vec<f64>,
    /// 1st and 99th percentiles (nearest rank: the smallest value with at least 1% / 99% of
    /// the samples at or below it).
    pub p01: Vec<f64>,
    pub p99: Vec<f64>,
}

/// Float samples kept per band for the percentiles of a float32 set: every k-th sample, so
/// that at most about this many are sorted.
const FLOAT_SAMPLES_KEPT: usize = 1 << 20;

/// Accumulates [`BandStats`] image by image: exact sums in f64 and, for integer types, exact
/// histograms; float32 percentiles from a regular subsample of at most [`FLOAT_SAMPLES_KEPT`].
pub struct StatsAccumulator {
    bands: usize,
    /// Samples counted per band (float32: the finite ones).
    count: Vec<u64>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    /// Per band, counts by value + offset (integer types).
    histogram: Vec<Vec<u64>>,
    offset: i64,
    floats: Vec<Vec<f32>>,
    float_stride: usize,
    seen: usize,
}

impl StatsAccumulator {
    /// For images of `bands` bands of `dtype`, about `total_samples_per_band` samples per band
    /// in all (used to space the float subsample).
    pub fn new(bands: usize, dtype: BandDtype, total_samples_per_band: usize) -> Self {
        let (bins, offset) = match dtype {
            BandDtype::U8 => (256, 0),
            BandDtype::U16 => (65536, 0),
            BandDtype::I16 => (65536, 32768),
            BandDtype::F32 => (0, 0),
        };
        Self {
            bands,
            count: vec![0; bands],
            sum: vec![0.0; bands],
            sum_sq: vec![0.0; bands],
            histogram: vec![vec![0; bins]; if bins > 0 { bands } else { 0 }],
            offset,
            floats: vec![Vec::new(); bands],
            float_stride: total_samples_per_band.div_ceil(FLOAT_SAMPLES_KEPT).max(1),
            seen: 0,
        }
    }

    pub fn add(&mut self, pixels: &Pixels) {
        let c = self.bands;
        match pixels {
            Pixels::F32(v) => {
                for (i, px) in v.chunks_exact(c).enumerate() {
                    let keep = (self.seen + i).is_multiple_of(self.float_stride);
                    // NaN and infinities are no-data in float products: left out.
                    for (b, &x) in px.iter().enumerate().filter(|(_, x)| x.is_finite()) {
                        self.count[b] += 1;
                        self.sum[b] += f64::from(x);
                        self.sum_sq[b] += f64::from(x) * f64::from(x);
                        if keep {
                            self.floats[b].push(x);
                        }
                    }
                }
            }
            other => {
                let offset = self.offset;
                let (sum, sum_sq, histogram) =
                    (&mut self.sum, &mut self.sum_sq, &mut self.histogram);
                with_samples!(other, v => for px in v.chunks_exact(c) {
                    for (b, &x) in px.iter().enumerate() {
                        let x = f64::from(x.to_f32());
                        sum[b] += x;
                        sum_sq[b] += x * x;
                        histogram[b][(x as i64 + offset) as usize] += 1;
                    }
                })
            }
        }
        let n = pixels.len() / c.max(1);
        self.seen += n;
        if pixels.dtype() != BandDtype::F32 {
            self.count.iter_mut().for_each(|k| *k += n as u64);
        }
    }

    /// The statistics; `None` when a band has no (finite) sample.
    pub fn finish(mut self) -> Option<BandStats> {
        if self.count.contains(&0) {
            return None;
        }
        let n: Vec<f64> = self.count.iter().map(|&k| k as f64).collect();
        let mean: Vec<f64> = self.sum.iter().zip(&n).map(|(s, n)| s / n).collect();
        let std = (0..self.bands)
            .map(|b| (self.sum_sq[b] / n[b] - mean[b] * mean[b]).max(0.0).sqrt())
            .collect();
        let (mut p01, mut p99) = (Vec::new(), Vec::new());
        for b in 0..self.bands {
            let n = n[b];
            if let Some(histogram) = self.histogram.get(b) {
                let rank = |q: f64| (q * n).ceil().max(1.0) as u64;
                let at = |target: u64| {
                    let mut seen = 0;
                    let bin = histogram.iter().position(|&k| {
                        seen += k;
                        seen >= target
                    });
                    bin.unwrap_or(histogram.len() - 1) as f64 - self.offset as f64
                };
                p01.push(at(rank(0.01)));
                p99.push(at(rank(0.99)));
            } else {
                let v = &mut self.floats[b];
                v.sort_by(f32::total_cmp);
                let at = |q: f64| {
                    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
                    f64::from(v[rank - 1])
                };
                p01.push(at(0.01));
                p99.push(at(0.99));
            }
        }
        Some(BandStats { mean, std, p01, p99 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_statistics_are_exact() {
        // Band 0: 0..=99; band 1: 1000 - 10 x (0..=99).
        let mut acc = StatsAccumulator::new(2, BandDtype::U16, 100);
        let values: Vec<u16> = (0..100u16).flat_map(|i| [i, 1000 - 10 * i]).collect();
        acc.add(&Pixels::U16(values[..80].to_vec()));
        acc.add(&Pixels::U16(values[80..].to_vec()));
        let s = acc.finish().unwrap();
        assert_eq!(s.mean, [49.5, 505.0]);
        assert!((s.std[0] - 833.25f64.sqrt()).abs() < 1e-9, "{:?}", s.std);
        assert_eq!((s.p01[0], s.p99[0]), (0.0, 98.0));
        assert_eq!((s.p01[1], s.p99[1]), (10.0, 990.0));
        let mut signed = StatsAccumulator::new(1, BandDtype::I16, 3);
        signed.add(&Pixels::I16(vec![-300, 5, 7]));
        assert_eq!(signed.finish().unwrap().p01, [-300.0]);
        let mut floats = StatsAccumulator::new(1, BandDtype::F32, 100);
        let mut values: Vec<f32> = (0..100).map(|i| i as f32 / 4.0).collect();
        values.extend([f32::NAN, f32::INFINITY]);
        floats.add(&Pixels::F32(values));
        let f = floats.finish().unwrap();
        assert_eq!((f.p01[0], f.p99[0], f.mean[0]), (0.0, 24.5, 12.375), "no-data left out");
    }

    #[test]
    fn resizing_keeps_a_same_size_raster_and_rounds_integers() {
        let raster = Raster {
            height: 2,
            width: 2,
            bands: 1,
            pixels: Pixels::U16(vec![0, 10, 20, 31]),
            band_names: vec![None],
            geo: GeoTags::default(),
        };
        assert_eq!(raster.clone().resized(2), raster);
        let one = raster.resized(1);
        assert_eq!(one.pixels, Pixels::U16(vec![15]), "mean 15.25 rounds to 15");
    }
}
