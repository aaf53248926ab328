//! A folder-per-class tree of synthetic multiband GeoTIFFs of the shapes real chips come in
//! (EuroSAT-MS: 64 x 64 px, 13 uint16 Sentinel-2 bands of reflectance x 10000, UTM
//! georeferencing at 10 m), for runs and measurements without a real set. Each band is the
//! synthetic source's smooth pattern of that channel mapped to a reflectance-like range; the
//! files are written by [`super::tiff_write`].

use std::path::Path;

use super::raster::{BandDtype, GeoTags, Pixels, Raster};
use super::synthetic::SyntheticImages;
use super::tiff_write::{self, WriteOptions};

/// Sentinel-2's 13 bands in the order of its L1C products and EuroSAT-MS.
pub const SENTINEL2_BANDS: [&str; 13] =
    ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"];

/// What [`write_sample_tree`] writes.
#[derive(Debug, Clone)]
pub struct SampleTree {
    pub classes: usize,
    pub per_class: usize,
    pub bands: usize,
    /// Side of each square image, pixels.
    pub size: usize,
    pub dtype: BandDtype,
    pub seed: u64,
    pub write: WriteOptions,
}

/// Band names of `bands` bands: Sentinel-2's for 13, else `B1`..`Bn`.
pub fn band_names(bands: usize) -> Vec<String> {
    if bands == SENTINEL2_BANDS.len() {
        SENTINEL2_BANDS.iter().map(|b| b.to_string()).collect()
    } else {
        (1..=bands).map(|b| format!("B{b}")).collect()
    }
}

/// The raster of image `index`: band b is channel b of the synthetic pattern (about -1.5..1.5)
/// mapped to 1000 + 2000 x value (uint16, int16), 128 + 40 x value (uint8) or the value itself
/// (float32); tie point 640 m apart per image in UTM zone 33N (EPSG 32633), 10 m pixels.
pub fn sample_raster(tree: &SampleTree, index: u64) -> Raster {
    let (s, c) = (tree.size, tree.bands);
    let source = SyntheticImages { seed: tree.seed, image_size: s as i64, channels: c as i64 };
    let mut planes = vec![0.0f32; c * s * s];
    source.fill_image(index, &mut planes);
    let value = |i: usize| planes[(i % c) * s * s + i / c];
    let n = s * s * c;
    let pixels = match tree.dtype {
        BandDtype::U8 => {
            Pixels::U8((0..n).map(|i| (128.0 + 40.0 * value(i)).round() as u8).collect())
        }
        BandDtype::U16 => {
            Pixels::U16((0..n).map(|i| (1000.0 + 2000.0 * value(i)).round() as u16).collect())
        }
        BandDtype::I16 => {
            Pixels::I16((0..n).map(|i| (1000.0 + 2000.0 * value(i)).round() as i16).collect())
        }
        BandDtype::F32 => Pixels::F32((0..n).map(value).collect()),
    };
    let offset = index as f64 * s as f64 * 10.0;
    Raster {
        height: s,
        width: s,
        bands: c,
        pixels,
        band_names: vec![None; c],
        geo: GeoTags {
            tiepoint: Some([0.0, 0.0, 0.0, 300_000.0 + offset, 5_000_040.0, 0.0]),
            pixel_scale: Some([10.0, 10.0, 0.0]),
            epsg: Some(32633),
        },
    }
}

/// Writes `tree` under `dir`: `class_K/img_NNNN.tif`, Sentinel-2 band names in each file.
///
/// # Errors
/// A folder or file cannot be written.
pub fn write_sample_tree(dir: &Path, tree: &SampleTree) -> std::io::Result<()> {
    let names = band_names(tree.bands);
    for class in 0..tree.classes {
        let folder = dir.join(format!("class_{class}"));
        std::fs::create_dir_all(&folder)?;
        for i in 0..tree.per_class {
            let index = (class * tree.per_class + i) as u64;
            let path = folder.join(format!("img_{i:04}.tif"));
            tiff_write::write(&path, &sample_raster(tree, index), &names, tree.write)?;
        }
    }
    Ok(())
}
