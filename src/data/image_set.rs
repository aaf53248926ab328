//! Image sets in HDF5, as `shardsweep data import` writes them (readable by h5py):
//!
//! ```text
//! /                  attrs: format = "shardsweep-image-set", format_version = 2,
//!                    layout = "nhwc", seed, val_fraction, source (the imported folder)
//! /images            [n, height, width, channels] u8, chunked by whole images
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
//! The text datasets write a name byte that is not UTF-8 as `\xNN`; the `_bytes` datasets
//! hold the names exactly (h5py: `bytes(f["path_bytes"][i])`, `os.fsdecode` for a path).
//! Version 2 added them, walks sub-folders of a class and applies EXIF orientation; readers
//! of version 1 files need none of it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File};
use ndarray::s;
use rand::seq::SliceRandom;
use tch::Tensor;

use super::augment::{normalise_resized, random_resized_crop, Crop};
use super::loader::{LoaderFigures, Source};
use super::synthetic::{sample_rng, AUGMENT_STREAM};
use super::DataError;

pub const FORMAT: &str = "shardsweep-image-set";
pub const FORMAT_VERSION: u32 = 2;
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
        Ok(Self { path: path.to_path_buf(), images, shape, labels, split, class_names })
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

    /// Image `i` as uint8 [height, width, channels].
    pub fn read(&self, i: usize) -> Result<Vec<u8>, DataError> {
        let image = self
            .images
            .read_slice::<u8, _, ndarray::Ix3>(s![i, .., .., ..])
            .map_err(|source| DataError::Hdf5 { path: self.path.display().to_string(), source })?;
        Ok(image.into_raw_vec_and_offset().0)
    }

    /// The images of `split` without augmentation (whole image resized to `size`, normalised),
    /// as [n, channels, size, size] fp32, and their labels [n] int64: the probe's inputs.
    pub fn tensors(&self, split: Split, size: usize) -> Result<(Tensor, Tensor), DataError> {
        let indices = self.indices(split);
        let per_image = self.channels() * size * size;
        let mut pixels = vec![0.0f32; indices.len() * per_image];
        let [h, w, _] = self.image_shape();
        for (&i, out) in indices.iter().zip(pixels.chunks_exact_mut(per_image)) {
            normalise_resized(&self.read(i)?, self.image_shape(), Crop::whole(h, w), size, out);
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
        Ok(Self { set, train, seed, size, crop_min_scale, order })
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

    /// Images are decoded once, at import: the loader reads uint8 pixels and augments them.
    fn fill(
        &self,
        index: u64,
        out: &mut [f32],
        figures: &mut LoaderFigures,
    ) -> Result<(), DataError> {
        let start = Instant::now();
        let image = self.set.read(self.image_of(index))?;
        let read = Instant::now();
        let [h, w, _] = self.set.image_shape();
        let mut rng = sample_rng(self.seed, AUGMENT_STREAM, index);
        let crop = random_resized_crop(&mut rng, h, w, self.crop_min_scale);
        normalise_resized(&image, self.set.image_shape(), crop, self.size, out);
        figures.read_bytes += image.len() as u64;
        figures.read_s += (read - start).as_secs_f64();
        figures.augment_s += read.elapsed().as_secs_f64();
        Ok(())
    }
}
