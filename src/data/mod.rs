//! Training data. Every image and every MAE mask is a pure function of (seed, global sample
//! index), so the same global batch is reproduced whatever the number of ranks and however the
//! batch is split among them; a [`Loader`] prepares each rank's share ahead of the step.

mod augment;
mod image_set;
mod import;
mod jpeg;
mod loader;
pub mod raster;
mod raster_import;
pub mod raster_sample;
mod synthetic;
pub mod tiff;
pub mod tiff_write;

pub use augment::{
    normalise_resized, normalise_resized_as, random_resized_crop, Crop, Normalisation,
    IMAGENET_MEAN, IMAGENET_STD, MAE_CROP_MIN_SCALE,
};
pub use image_set::{ImageSet, ImageSetSource, Split};
pub use import::{
    escaped, import_folder, import_folder_with, ImportOptions, ImportReport, Skipped,
};
pub use loader::{rank_batches, Batch, Loader, LoaderFigures, Source, PREFETCH_PER_WORKER};
pub use raster::{BandDtype, BandStats, GeoTags, Pixels, Raster};
pub use raster_import::RasterOptions;
pub use synthetic::{fill_mask_noise, SyntheticImages};

use std::sync::Arc;

use crate::model::ModelConfig;
use crate::plan::{DataSource, PointSpec};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Hdf5 { path: String, source: hdf5::Error },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Record(#[from] crate::records::RecordError),
}

/// The loader of rank `rank` of `point`: its share of every step's global batch from the
/// point's source, with `workers` filling ahead (what the rank trains on, whoever asks).
///
/// # Errors
/// The source cannot be opened (see [`open_source`]).
pub fn rank_loader(point: &PointSpec, rank: usize, workers: usize) -> Result<Loader, DataError> {
    let s = &point.settings;
    let source = open_source(&point.data, s.seed, &point.model, s.crop_min_scale())?;
    let batches = rank_batches(
        s.steps,
        point.global_batch(),
        rank,
        point.micro_batch,
        point.parallel.accumulation,
    );
    Ok(Loader::new(source, batches, s.seed, point.model.patches(), workers))
}

/// The source a point trains on: synthetic images of the model's shape, or an image set
/// augmented to the model's image size with crops of at least `crop_min_scale` of the area.
pub fn open_source(
    data: &DataSource,
    seed: u64,
    model: &ModelConfig,
    crop_min_scale: f64,
) -> Result<Arc<dyn Source>, DataError> {
    Ok(match data {
        DataSource::Synthetic => Arc::new(SyntheticImages {
            seed,
            image_size: model.image_size,
            channels: model.channels,
        }),
        DataSource::File(path) => {
            let set = ImageSet::open(path)?;
            if set.channels() != model.channels as usize {
                return Err(DataError::Format {
                    path: path.display().to_string(),
                    message: format!(
                        "images have {} channels, model {} takes {}",
                        set.channels(),
                        model.name,
                        model.channels
                    ),
                });
            }
            Arc::new(ImageSetSource::new(set, seed, model.image_size as usize, crop_min_scale)?)
        }
    })
}
