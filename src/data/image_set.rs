//! Image sets in HDF5, as `shardsweep data import` writes them (readable by h5py):
//!
//! ```text
//! /                  attrs: format = "shardsweep-image-set", format_version = 3,
//!                    layout = "nhwc", seed, val_fraction, source (the imported folder)
//! /images            [n, height, width, channels] u8, chunked by whole images
//!                    (a raster set: uint8, uint16, int16 or float32, byte-shuffled and
//!                    deflated, one image per chunk)
//! /labels            [n] u32, index into /class_names
//! /split             [n] u8: 0 = train, 1 = val
//! /class_names       [classes] string (the folder names, sorted by their bytes)
//! /class_name_bytes  [classes] vlen u8, the same names' bytes (format_version 2)
//! /paths             [n] string, each image's path relative to the source folder
//! /path_bytes        [n] vlen u8, the same paths' bytes (format_version 2)
//! /skipped/path      [k] string, files that could not be imported ...
//! /skipped/path_bytes [k] vlen u8 (format_version 2)
//! /skipped/reason    [k] string ... and why
//! ```
//!
//! A multiband raster set ([`super::raster_import`], format_version 3) adds:
//!
//! ```text
//! /                  attrs: dtype ("uint8", "uint16", "int16", "float32"),
//!                    band_names [c] string (the files' or `--bands`),
//!                    band_mean, band_std, band_p01, band_p99 [c] f64: the train split's
//!                    per-band mean, standard deviation, 1st and 99th percentiles, in the
//!                    samples' own units (absent when the train split is empty)
//! /geo/tiepoint      [n, 6] f64: GeoTIFF ModelTiepointTag (I, J, K, X, Y, Z), NaN if none
//! /geo/pixel_scale   [n, 3] f64: ModelPixelScaleTag (x, y, z), NaN if none
//! /geo/epsg          [n] u16: the CRS's EPSG code from the GeoKey directory, 0 if none
//! ```
//!
//! The loader normalises a raster set's bands by their stored mean and standard deviation,
//! an RGB set's uint8 by ImageNet's.
//!
//! The text datasets write a name byte that is not UTF-8 as `\xNN`; the `_bytes` datasets
//! hold the names exactly (h5py: `bytes(f["path_bytes"][i])`, `os.fsdecode` for a path).
//! Version 2 added them, walks sub-folders of a class and applies EXIF orientation; readers
//! of version 1 files need none of it; version 3 added raster sets (an RGB set is written as
//! before), so every earlier file reads as it did.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File};
use ndarray::s;
use rand::seq::SliceRandom;
use tch::Tensor;

use super::augment::{normalise_resized_as, random_resized_crop, Crop, Normalisation};
use super::loader::{LoaderFigures, Source};
use super::raster::{with_samples, BandDtype, BandStats, Pixels};
use super::raster_import::pixels_of;
use super::synthetic::{sample_rng, AUGMENT_STREAM};
use super::DataError;

pub const FORMAT: &str = "shardsweep-image-set";
pub const FORMAT_VERSION: u32 = 3;
/// Stream of the per-epoch order of the train split (apart from images, masks and crops).
const ORDER_STREAM: u64 = 3 << 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Split {
    Train = 0,
    Val = 1,
}

/// An open image set: metadata in memory, images read one at a time.
pub struct ImageSet {
    path: PathBuf,
    images: Dataset,
    /// [n, height, width, channels]
    shape: [usize; 4],
    pub labels: Vec<u32>,
    pub split: Vec<u8>,
    pub class_names: Vec<String>,
    /// The type of every sample (uint8 for RGB sets).
    pub dtype: BandDtype,
    /// A raster set's band names (empty for an RGB set).
    pub band_names: Vec<String>,
    /// A raster set's train-split statistics (none for an RGB set).
    pub band_stats: Option<BandStats>,
}

impl ImageSet {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let name = path.display().to_string();
        let h5 = |source| DataError::Hdf5 { path: name.clone(), source };
        let bad = |message: String| DataError::Format { path: name.clone(), message };
        if !path.is_file() {
            return Err(
                bad("no such image set file (make one with shardsweep data import)".into()),
            );
        }
        let file = File::open(path).map_err(h5)?;
        let format = file
            .attr("format")
            .and_then(|a| a.read_scalar::<VarLenUnicode>())
            .map(|v| v.to_string())
            .unwrap_or_default();
        if format != FORMAT {
            return Err(bad(format!(
                "attribute format is {format:?}, expected {FORMAT:?} (made by shardsweep data import)"
            )));
        }
        let images = file.dataset("images").map_err(h5)?;
        let shape: [usize; 4] = images
            .shape()
            .try_into()
            .map_err(|s| bad(format!("key images has shape {s:?}, expected [n, h, w, c]")))?;
        let labels = file.dataset("labels").and_then(|d| d.read_raw::<u32>()).map_err(h5)?;
        let split = file.dataset("split").and_then(|d| d.read_raw::<u8>()).map_err(h5)?;
        let class_names = file
            .dataset("class_names")
            .and_then(|d| d.read_raw::<VarLenUnicode>())
            .map_err(h5)?
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>();
        if labels.len() != shape[0] || split.len() != shape[0] {
            return Err(bad(format!(
                "{} images but {} labels and {} split entries",
                shape[0],
                labels.len(),
                split.len()
            )));
        }
        if let Some(label) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
            return Err(bad(format!(
                "key labels has value {label}, but there are {} classes",
                class_names.len()
            )));
        }
        let dtype = dataset_dtype(&images).map_err(bad)?;
        let band_names = match file.attr("band_names") {
            Ok(a) => {
                a.read_raw::<VarLenUnicode>().map_err(h5)?.iter().map(|v| v.to_string()).collect()
            }
            Err(_) => Vec::new(),
        };
        let band_stats = band_stats(&file, shape[3]).map_err(bad)?;
        Ok(Self {
            path: path.to_path_buf(),
            images,
            shape,
            labels,
            split,
            class_names,
            dtype,
            band_names,
            band_stats,
        })
    }

    pub fn len(&self) -> usize {
        self.shape[0]
    }

    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    pub fn channels(&self) -> usize {
        self.shape[3]
    }

    /// [height, width, channels] of every image.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.shape[1], self.shape[2], self.shape[3]]
    }

    /// Indices of the images in `split`, ascending.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.split[i] == split as u8).collect()
    }

    /// Image `i` of a uint8 set as [height, width, channels].
    ///
    /// # Errors
    /// The set's samples are of another type (see [`Self::read_pixels`]), or HDF5 fails.
    pub fn read(&self, i: usize) -> Result<Vec<u8>, DataError> {
        match self.read_pixels(i)? {
            Pixels::U8(v) => Ok(v),
            other => Err(DataError::Format {
                path: self.path.display().to_string(),
                message: format!("key images holds {} samples, not uint8", other.dtype()),
            }),
        }
    }

    /// Image `i` at its sample type, [height, width, channels].
    pub fn read_pixels(&self, i: usize) -> Result<Pixels, DataError> {
        let h5 = |source| DataError::Hdf5 { path: self.path.display().to_string(), source };
        let at = s![i, .., .., ..];
        let raw = |d: &Dataset| -> hdf5::Result<Pixels> {
            Ok(match self.dtype {
                BandDtype::U8 => {
                    pixels_of(d.read_slice::<u8, _, ndarray::Ix3>(at)?.into_raw_vec_and_offset().0)
                }
                BandDtype::U16 => {
                    pixels_of(d.read_slice::<u16, _, ndarray::Ix3>(at)?.into_raw_vec_and_offset().0)
                }
                BandDtype::I16 => {
                    pixels_of(d.read_slice::<i16, _, ndarray::Ix3>(at)?.into_raw_vec_and_offset().0)
                }
                BandDtype::F32 => {
                    pixels_of(d.read_slice::<f32, _, ndarray::Ix3>(at)?.into_raw_vec_and_offset().0)
                }
            })
        };
        raw(&self.images).map_err(h5)
    }

    /// How the loader normalises this set's samples: by the stored per-band statistics (a
    /// band whose samples are all equal is only centred), else ImageNet's for uint8.
    ///
    /// # Errors
    /// A set of 16-bit or float samples without statistics (an empty train split).
    pub fn normalisation(&self) -> Result<Normalisation, DataError> {
        match (&self.band_stats, self.dtype) {
            (Some(stats), _) => Ok(Normalisation::Bands {
                mean: stats.mean.iter().map(|&m| m as f32).collect(),
                std: stats.std.iter().map(|&s| if s > 0.0 { s as f32 } else { 1.0 }).collect(),
            }),
            (None, BandDtype::U8) => Ok(Normalisation::ImageNet),
            (None, dtype) => Err(DataError::Format {
                path: self.path.display().to_string(),
                message: format!("{dtype} samples but no attribute band_mean to normalise them by"),
            }),
        }
    }

    /// Bytes of one stored image as read (uncompressed) and, on average, in the file.
    pub fn image_bytes(&self) -> (u64, f64) {
        let read = (self.shape[1] * self.shape[2] * self.shape[3] * self.dtype.bytes()) as u64;
        let stored = self.images.storage_size() as f64 / self.len().max(1) as f64;
        (read, stored)
    }

    /// The images of `split` without augmentation (whole image resized to `size`, normalised),
    /// as [n, channels, size, size] fp32, and their labels [n] int64: the probe's inputs.
    pub fn tensors(&self, split: Split, size: usize) -> Result<(Tensor, Tensor), DataError> {
        let indices = self.indices(split);
        let per_image = self.channels() * size * size;
        let mut pixels = vec![0.0f32; indices.len() * per_image];
        let [h, w, _] = self.image_shape();
        let normalisation = self.normalisation()?;
        for (&i, out) in indices.iter().zip(pixels.chunks_exact_mut(per_image)) {
            let crop = Crop::whole(h, w);
            with_samples!(&self.read_pixels(i)?, v => normalise_resized_as(v, self.image_shape(), crop, size, out, &normalisation));
        }
        let labels: Vec<i64> = indices.iter().map(|&i| i64::from(self.labels[i])).collect();
        let n = indices.len() as i64;
        Ok((
            Tensor::from_slice(&pixels).view([n, self.channels() as i64, size as i64, size as i64]),
            Tensor::from_slice(&labels),
        ))
    }
}

/// Training images from a set's train split: global sample i is image order_e[i mod n] of
/// epoch e = i / n (a seeded shuffle per epoch), cropped, flipped and normalised with a crop
/// drawn from (seed, i), so a sample is a pure function of the seed and its global index.
pub struct ImageSetSource {
    set: ImageSet,
    train: Vec<usize>,
    seed: u64,
    size: usize,
    /// The smallest random crop, as a fraction of the image's area.
    crop_min_scale: f64,
    normalisation: Normalisation,
    order: Mutex<(u64, Vec<usize>)>,
}

impl ImageSetSource {
    /// Samples of `set`'s train split at `size` x `size`, cropped to at least `crop_min_scale`
    /// of each image's area (MAE: [`super::augment::MAE_CROP_MIN_SCALE`]).
    pub fn new(
        set: ImageSet,
        seed: u64,
        size: usize,
        crop_min_scale: f64,
    ) -> Result<Self, DataError> {
        let train = set.indices(Split::Train);
        if train.is_empty() {
            return Err(DataError::Format {
                path: set.path.display().to_string(),
                message: "key split has no train images (0)".into(),
            });
        }
        let order = Mutex::new((u64::MAX, Vec::new()));
        let normalisation = set.normalisation()?;
        Ok(Self { set, train, seed, size, crop_min_scale, normalisation, order })
    }

    fn image_of(&self, index: u64) -> usize {
        let n = self.train.len() as u64;
        let epoch = index / n;
        let mut order = self.order.lock().expect("epoch order");
        if order.0 != epoch {
            let mut shuffled = self.train.clone();
            shuffled.shuffle(&mut sample_rng(self.seed, ORDER_STREAM, epoch));
            *order = (epoch, shuffled);
        }
        order.1[(index % n) as usize]
    }
}

impl Source for ImageSetSource {
    fn image_shape(&self) -> [usize; 3] {
        [self.set.channels(), self.size, self.size]
    }

    /// Images are decoded once, at import: the loader reads samples at their stored type
    /// (uint8, or a raster set's) and augments them.
    fn fill(
        &self,
        index: u64,
        out: &mut [f32],
        figures: &mut LoaderFigures,
    ) -> Result<(), DataError> {
        let start = Instant::now();
        let image = self.set.read_pixels(self.image_of(index))?;
        let read = Instant::now();
        let [h, w, _] = self.set.image_shape();
        let mut rng = sample_rng(self.seed, AUGMENT_STREAM, index);
        let crop = random_resized_crop(&mut rng, h, w, self.crop_min_scale);
        let shape = self.set.image_shape();
        let norm = &self.normalisation;
        with_samples!(&image, v => normalise_resized_as(v, shape, crop, self.size, out, norm));
        figures.read_bytes += image.byte_len() as u64;
        figures.read_s += (read - start).as_secs_f64();
        figures.augment_s += read.elapsed().as_secs_f64();
        Ok(())
    }
}

/// The sample type of `/images`, or what it is instead.
fn dataset_dtype(images: &Dataset) -> Result<BandDtype, String> {
    use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
    let descriptor = images.dtype().and_then(|t| t.to_descriptor()).map_err(|e| e.to_string())?;
    match descriptor {
        TypeDescriptor::Unsigned(IntSize::U1) => Ok(BandDtype::U8),
        TypeDescriptor::Unsigned(IntSize::U2) => Ok(BandDtype::U16),
        TypeDescriptor::Integer(IntSize::U2) => Ok(BandDtype::I16),
        TypeDescriptor::Float(FloatSize::U4) => Ok(BandDtype::F32),
        other => Err(format!("key images has type {other:?}, not uint8, uint16, int16 or float32")),
    }
}

/// The per-band statistics attributes, if the set has them (all four, `bands` values each).
fn band_stats(file: &File, bands: usize) -> Result<Option<BandStats>, String> {
    let read = |name: &str| -> Result<Option<Vec<f64>>, String> {
        let Ok(attr) = file.attr(name) else { return Ok(None) };
        let values = attr.read_raw::<f64>().map_err(|e| format!("attribute {name}: {e}"))?;
        if values.len() != bands {
            return Err(format!(
                "attribute {name} has {} values, the images {bands} bands",
                values.len()
            ));
        }
        Ok(Some(values))
    };
    let (Some(mean), Some(std), Some(p01), Some(p99)) =
        (read("band_mean")?, read("band_std")?, read("band_p01")?, read("band_p99")?)
    else {
        return Ok(None);
    };
    Ok(Some(BandStats { mean, std, p01, p99 }))
}
