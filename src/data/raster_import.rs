//! `data import` of multiband rasters: a folder-per-class tree of (Geo)TIFFs whose samples an
//! RGB conversion would lose (more bands than RGB, 16-bit or float samples) becomes an image
//! set that keeps them at their type, [n, size, size, bands], with per-band statistics of the
//! train split, band names and each image's georeferencing (see [`super::image_set`]).
//!
//! Classes, walk order, skipped files and the split are those of the RGB import
//! ([`super::import`]), so the same tree gets the same labels and split either way. Every
//! image must have the same band count and sample type: a folder that mixes them is refused
//! with the counts, never converted. Images of `size` x `size` are stored as the file has them;
//! others are resampled bilinearly and rounded back to their type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File, H5Type};
use ndarray::{s, Array1, Array2, Array4};
use rand::seq::SliceRandom;

use super::image_set::Split;
use super::import::{
    class_files, escaped, write_attributes, write_index, ImportOptions, ImportReport, Index,
    Skipped, SPLIT_STREAM, WRITE_BATCH_IMAGES,
};
use super::raster::{BandDtype, BandStats, GeoTags, Pixels, Raster, StatsAccumulator};
use super::synthetic::sample_rng;
use super::tiff;
use super::DataError;
use crate::records::write_hdf5_atomic;

/// Runs `$body` with `$t` the Rust type of `$dtype`.
macro_rules! with_dtype {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            BandDtype::U8 => {
                type $t = u8;
                $body
            }
            BandDtype::U16 => {
                type $t = u16;
                $body
            }
            BandDtype::I16 => {
                type $t = i16;
                $body
            }
            BandDtype::F32 => {
                type $t = f32;
                $body
            }
        }
    };
}

/// What only a raster import needs.
#[derive(Debug, Clone, Default)]
pub struct RasterOptions {
    /// Band names to store (one per band), instead of those the files carry.
    pub bands: Option<Vec<String>>,
    /// Import as rasters even when every file is 8-bit grey or RGB (which the RGB import
    /// would take), to keep the georeferencing and the samples unconverted.
    pub raster: bool,
}

/// Whether the tree of `classes` imports as rasters: asked for, or a TIFF in it holds samples
/// that the RGB import would convert away or cannot read: bands that are not an 8-bit colour
/// or grey image (GDAL's multispectral files: BlackIsZero with extra samples, 16-bit, float).
/// Only files named `.tif`/`.tiff` are looked at, headers only. A 4-band file that says it is
/// RGB (RGB + NIR as some write it) is taken as RGBA unless `--raster` is given.
pub fn wants_rasters(classes: &[PathBuf], options: &RasterOptions) -> bool {
    if options.raster || options.bands.is_some() {
        return true;
    }
    classes.iter().flat_map(|c| class_files(c)).any(|(path, listed)| {
        listed.is_ok()
            && tiff::has_tiff_extension(&path)
            && tiff::header(&path).is_ok_and(|h| !h.colour_image)
    })
}

/// One file that will be decoded.
struct Candidate {
    label: u32,
    path: PathBuf,
    header: tiff::Header,
    dtype: BandDtype,
}

/// Imports the rasters under `classes` of `folder` into `out` (see the module's text).
///
/// # Errors
/// Mixed band counts or sample types (with the counts and a file of each), `--bands` of
/// another length than the files' bands, nothing decodable, or the file cannot be written.
pub fn import_rasters(
    folder: &Path,
    classes: &[PathBuf],
    out: &Path,
    options: &ImportOptions,
    rasters: &RasterOptions,
) -> Result<ImportReport, DataError> {
    let relative = |p: &Path| p.strip_prefix(folder).unwrap_or(p).to_path_buf();
    let skip = |p: &Path, reason: String| {
        let path = relative(p);
        let path_bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
        Skipped { path: escaped(&path), path_bytes, reason }
    };
    let refuse =
        |message: String| DataError::Format { path: folder.display().to_string(), message };
    let mut index = Index::default();
    let mut candidates = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        for (path, listed) in class_files(class) {
            let header = listed.and_then(|()| tiff_header(&path));
            match header.and_then(|h| h.dtype.clone().map(|d| (h, d))) {
                Ok((header, dtype)) => {
                    candidates.push(Candidate { label: label as u32, path, header, dtype })
                }
                Err(reason) => index.skipped.push(skip(&path, reason)),
            }
        }
    }
    let first = candidates.first().ok_or_else(|| {
        refuse(format!(
            "no decodable rasters in {} class folders ({} files skipped)",
            classes.len(),
            index.skipped.len()
        ))
    })?;
    let (bands, dtype) = (first.header.bands, first.dtype);
    refuse_mixed(&candidates, "bands", |c| c.header.bands.to_string(), &relative)
        .map_err(refuse)?;
    refuse_mixed(&candidates, "sample type", |c| c.dtype.to_string(), &relative).map_err(refuse)?;
    if let Some(names) = rasters.bands.as_ref().filter(|n| n.len() != bands) {
        return Err(refuse(format!(
            "--bands names {} bands ({}), the files have {bands}",
            names.len(),
            names.join(",")
        )));
    }
    let size = options.size as usize;
    let mut geo = Vec::new();
    let mut names = rasters.bands.clone();
    let written = write_hdf5_atomic(out, |file| {
        write_attributes(file, folder, options)?;
        let images = with_dtype!(dtype, T => create_images::<T>(file, size, bands))?;
        let mut pending = Vec::new();
        let mut written = 0;
        let mut class_start = 0;
        for (k, candidate) in candidates.iter().enumerate() {
            match decode(&candidate.path) {
                Ok(raster) => {
                    if names.is_none() && raster.band_names.iter().all(Option::is_some) {
                        names = Some(raster.band_names.iter().flatten().cloned().collect());
                    }
                    geo.push(raster.geo.clone());
                    pending.push(raster.resized(size).pixels);
                    index.labels.push(candidate.label);
                    index.paths.push(relative(&candidate.path));
                    if pending.len() >= WRITE_BATCH_IMAGES {
                        written = append(&images, written, &mut pending, size, bands)?;
                    }
                }
                Err(reason) => index.skipped.push(skip(&candidate.path, reason)),
            }
            let class_ends = candidates.get(k + 1).is_none_or(|c| c.label != candidate.label);
            if class_ends {
                split_class(&mut index, class_start, candidate.label, options);
                class_start = index.labels.len();
            }
        }
        append(&images, written, &mut pending, size, bands)?;
        if index.labels.is_empty() {
            return Err(hdf5::Error::from("no decodable rasters"));
        }
        let computed = train_statistics(&images, &index, bands, dtype, size)?;
        let names =
            names.clone().unwrap_or_else(|| (1..=bands).map(|b| format!("band_{b}")).collect());
        write_band_attributes(file, dtype, &names, computed.as_ref())?;
        write_geo(file, &geo)?;
        let class_names: Vec<PathBuf> =
            classes.iter().map(|c| PathBuf::from(c.file_name().unwrap_or_default())).collect();
        write_index(file, &class_names, &index)
    });
    if index.labels.is_empty() {
        return Err(refuse(format!(
            "no decodable rasters in {} class folders ({} files skipped)",
            classes.len(),
            index.skipped.len()
        )));
    }
    written?;
    Ok(index.report(classes.len()))
}

/// The header of a file that should be a TIFF, or why it is skipped.
fn tiff_header(path: &Path) -> Result<tiff::Header, String> {
    let mut start = [0u8; 4];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut start))
        .map_err(|e| format!("cannot open: {e}"));
    read?;
    if !tiff::is_tiff(&start) {
        return Err("not a TIFF (a folder of multiband rasters imports TIFF files only)".into());
    }
    tiff::header(path)
}

fn decode(path: &Path) -> Result<Raster, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot open: {e}"))?;
    tiff::decode(&bytes)
}

/// `Err` with every distinct value of `key` among the candidates, its count and its first
/// file, when there is more than one.
fn refuse_mixed(
    candidates: &[Candidate],
    what: &str,
    key: impl Fn(&Candidate) -> String,
    relative: &impl Fn(&Path) -> PathBuf,
) -> Result<(), String> {
    let mut seen: BTreeMap<String, (usize, &Path)> = BTreeMap::new();
    for c in candidates {
        seen.entry(key(c)).or_insert((0, &c.path)).0 += 1;
    }
    if seen.len() < 2 {
        return Ok(());
    }
    let counts: Vec<String> = seen
        .iter()
        .map(|(value, (n, first))| {
            format!("{n} files with {what} {value} (first {})", escaped(&relative(first)))
        })
        .collect();
    Err(format!(
        "mixed {what}: {}; an image set holds one kind, import each into a set of its own",
        counts.join(", ")
    ))
}

/// The stratified split of the class whose images start at `first` (the RGB import's rule).
fn split_class(index: &mut Index, first: usize, label: u32, options: &ImportOptions) {
    let mut members: Vec<usize> = (first..index.labels.len()).collect();
    members.shuffle(&mut sample_rng(options.seed, SPLIT_STREAM, u64::from(label)));
    let val = (members.len() as f64 * options.val_fraction).floor() as usize;
    index.split.resize(index.labels.len(), Split::Train as u8);
    members[..val].iter().for_each(|&i| index.split[i] = Split::Val as u8);
}

/// `/images`, [0.., size, size, bands] of `T`, one image per chunk, byte-shuffled and
/// deflated where this HDF5 has deflate (neighbouring 16-bit samples share their high byte).
fn create_images<T: H5Type>(file: &File, size: usize, bands: usize) -> hdf5::Result<Dataset> {
    let builder = file.new_dataset::<T>().chunk((1, size, size, bands));
    let builder =
        if hdf5::filters::deflate_available() { builder.shuffle().deflate(4) } else { builder };
    builder.shape((0.., size, size, bands)).create("images")
}

/// Writes the pending images after the `written` ones; the new count.
fn append(
    images: &Dataset,
    written: usize,
    pending: &mut Vec<Pixels>,
    size: usize,
    bands: usize,
) -> hdf5::Result<usize> {
    let n = pending.len();
    if n == 0 {
        return Ok(written);
    }
    images.resize((written + n, size, size, bands))?;
    let shape = (n, size, size, bands);
    let block = std::mem::take(pending);
    let rows = s![written..written + n, .., .., ..];
    match block[0].dtype() {
        BandDtype::U8 => images.write_slice(
            &concat(block, shape, |p| match p {
                Pixels::U8(v) => v,
                _ => unreachable!(),
            }),
            rows,
        ),
        BandDtype::U16 => images.write_slice(
            &concat(block, shape, |p| match p {
                Pixels::U16(v) => v,
                _ => unreachable!(),
            }),
            rows,
        ),
        BandDtype::I16 => images.write_slice(
            &concat(block, shape, |p| match p {
                Pixels::I16(v) => v,
                _ => unreachable!(),
            }),
            rows,
        ),
        BandDtype::F32 => images.write_slice(
            &concat(block, shape, |p| match p {
                Pixels::F32(v) => v,
                _ => unreachable!(),
            }),
            rows,
        ),
    }?;
    Ok(written + n)
}

/// Images of one sample type (refused otherwise before any is decoded) as one block.
fn concat<T>(
    block: Vec<Pixels>,
    shape: (usize, usize, usize, usize),
    samples: impl Fn(Pixels) -> Vec<T>,
) -> Array4<T> {
    let all: Vec<T> = block.into_iter().flat_map(samples).collect();
    Array4::from_shape_vec(shape, all).expect("whole images of size x size x bands")
}

/// Statistics of the train images, read back from `/images`.
fn train_statistics(
    images: &Dataset,
    index: &Index,
    bands: usize,
    dtype: BandDtype,
    size: usize,
) -> hdf5::Result<Option<BandStats>> {
    let train: Vec<usize> =
        (0..index.split.len()).filter(|&i| index.split[i] == Split::Train as u8).collect();
    let mut acc = StatsAccumulator::new(bands, dtype, train.len() * size * size);
    for i in train {
        let pixels = with_dtype!(dtype, T => {
            let v = images.read_slice::<T, _, ndarray::Ix3>(s![i, .., .., ..])?;
            pixels_of(v.into_raw_vec_and_offset().0)
        });
        acc.add(&pixels);
    }
    Ok(acc.finish())
}

/// Samples of a known type as [`Pixels`].
pub(super) trait IntoPixels {
    fn into_pixels(self) -> Pixels;
}
macro_rules! into_pixels {
    ($t:ty, $variant:ident) => {
        impl IntoPixels for Vec<$t> {
            fn into_pixels(self) -> Pixels {
                Pixels::$variant(self)
            }
        }
    };
}
into_pixels!(u8, U8);
into_pixels!(u16, U16);
into_pixels!(i16, I16);
into_pixels!(f32, F32);

pub(super) fn pixels_of<V: IntoPixels>(v: V) -> Pixels {
    v.into_pixels()
}

/// Root attributes of a raster set: `dtype`, `band_names` and, when the train split has
/// images, `band_mean`, `band_std`, `band_p01`, `band_p99` (each [bands] f64).
fn write_band_attributes(
    file: &File,
    dtype: BandDtype,
    names: &[String],
    stats: Option<&BandStats>,
) -> hdf5::Result<()> {
    let text = |s: &str| s.replace('\0', "?").parse::<VarLenUnicode>().expect("text without NUL");
    file.new_attr::<VarLenUnicode>().create("dtype")?.write_scalar(&text(dtype.name()))?;
    let names: Array1<VarLenUnicode> = names.iter().map(|n| text(n)).collect();
    file.new_attr_builder().with_data(&names).create("band_names")?;
    if let Some(stats) = stats {
        for (name, values) in [
            ("band_mean", &stats.mean),
            ("band_std", &stats.std),
            ("band_p01", &stats.p01),
            ("band_p99", &stats.p99),
        ] {
            file.new_attr_builder().with_data(&Array1::from(values.clone())).create(name)?;
        }
    }
    Ok(())
}

/// `/geo`: `tiepoint` [n, 6] and `pixel_scale` [n, 3] f64 (NaN where a file has none), `epsg`
/// [n] u16 (0 where none).
fn write_geo(file: &File, geo: &[GeoTags]) -> hdf5::Result<()> {
    let group = file.create_group("geo")?;
    let n = geo.len();
    let tie = Array2::from_shape_fn((n, 6), |(i, j)| geo[i].tiepoint.map_or(f64::NAN, |t| t[j]));
    let scale =
        Array2::from_shape_fn((n, 3), |(i, j)| geo[i].pixel_scale.map_or(f64::NAN, |t| t[j]));
    let epsg: Array1<u16> = geo.iter().map(|g| g.epsg.unwrap_or(0)).collect();
    group.new_dataset_builder().with_data(&tie).create("tiepoint")?;
    group.new_dataset_builder().with_data(&scale).create("pixel_scale")?;
    group.new_dataset_builder().with_data(&epsg).create("epsg")?;
    Ok(())
}
