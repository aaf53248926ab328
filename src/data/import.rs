//! `shardsweep data import`: a folder-per-class tree of images (the layout of UC Merced, AID,
//! NWPU-RESISC45 and MillionAID exports) into one image set file (see [`super::image_set`]).
//!
//! A class is a top-level folder; its images are every file below it, in sub-folders too
//! (MillionAID nests scenes in folders of their own), walked depth-first in byte order of
//! the names, hidden files and folders left out. Every file is decoded with the `image` crate
//! (PNG, JPEG, TIFF), turned as its EXIF orientation says it is displayed, converted to RGB and
//! resized to `size` x `size` (the whole image, bilinear; scene sets are square). A file that
//! cannot be read or decoded, or a JPEG cut off before its end (which the decoder would fill
//! in silently), is listed in `/skipped` with the reason and the import goes on. The split is
//! stratified: in each class, images are shuffled with the seed and the class index, and the
//! first floor(n x val_fraction) go to val, so a class of one image stays in train. Classes in
//! byte order of their folder names, images in walk order and this rule are the same as for
//! the flat trees that earlier versions imported, so such a tree gets the same labels and split.
//!
//! Names are kept exactly: `/paths` and `/class_names` are text (a byte that is not UTF-8
//! written `\xNN`), `/path_bytes`, `/class_name_bytes` and `/skipped/path_bytes` the names'
//! bytes as the file system has them.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hdf5::types::{VarLenArray, VarLenUnicode};
use hdf5::File;
use ndarray::{Array1, Array4};
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::image_set::{Split, FORMAT, FORMAT_VERSION};
use super::raster_import::{import_rasters, wants_rasters, RasterOptions};
use super::synthetic::sample_rng;
use super::DataError;
use crate::records::write_hdf5_atomic;

/// Stream of the per-class split shuffle.
pub(super) const SPLIT_STREAM: u64 = 5 << 59;
const CHANNELS: usize = 3;
/// Images per HDF5 chunk: whole images, so reading one touches one chunk.
const CHUNK_IMAGES: usize = 1;

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Side of the stored square images, pixels.
    pub size: u32,
    /// Share of each class held out for validation, in [0, 1).
    pub val_fraction: f64,
    pub seed: u64,
    /// Replace an existing output file.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Relative to the imported folder, as text (see [`escaped`]).
    pub path: String,
    /// The same path's bytes.
    pub path_bytes: Vec<u8>,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ImportReport {
    pub images: usize,
    pub classes: usize,
    pub train: usize,
    pub val: usize,
    pub skipped: Vec<Skipped>,
}

/// The largest image decoded, in pixels (width x height): 64 megapixels, 192 MB as RGB, more
/// than a scene set's images have (UC Merced's are 256 x 256, MillionAID's at most a few
/// thousand pixels a side); with one image decoding per core, this bounds an import's memory.
pub const MAX_PIXELS: u64 = 64_000_000;

/// Images decoded but not yet written: at most [`WRITE_BATCH_IMAGES`], so an import's memory
/// does not grow with the set (a MillionAID export is about 1e6 images).
pub(super) const WRITE_BATCH_IMAGES: usize = 256;

/// What an import keeps of every image besides its pixels.
#[derive(Default)]
pub(super) struct Index {
    pub(super) labels: Vec<u32>,
    /// Relative to the imported folder, as the file system names them.
    pub(super) paths: Vec<PathBuf>,
    pub(super) split: Vec<u8>,
    pub(super) skipped: Vec<Skipped>,
}

impl Index {
    /// What the import of `classes` class folders into this index reports.
    pub(super) fn report(self, classes: usize) -> ImportReport {
        let count = |s: Split| self.split.iter().filter(|&&x| x == s as u8).count();
        ImportReport {
            images: self.labels.len(),
            classes,
            train: count(Split::Train),
            val: count(Split::Val),
            skipped: self.skipped,
        }
    }
}

/// Imports `folder` into `out`, written atomically (a temporary file renamed into place).
/// Errors: the folder cannot be listed, `out` exists and `force` is not set, nothing decodable,
/// or the file cannot be written. Unreadable images are not errors: they are in the report.
/// A tree of multiband rasters imports as such ([`super::raster_import`]).
pub fn import_folder(
    folder: &Path,
    out: &Path,
    options: &ImportOptions,
) -> Result<ImportReport, DataError> {
    import_folder_with(folder, out, options, &RasterOptions::default())
}

/// [`import_folder`] with the options of a raster import.
pub fn import_folder_with(
    folder: &Path,
    out: &Path,
    options: &ImportOptions,
    rasters: &RasterOptions,
) -> Result<ImportReport, DataError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| DataError::Io { path, source }
    };
    let bad = |message: String| DataError::Format { path: out.display().to_string(), message };
    if out.exists() && !options.force {
        return Err(bad("exists; give --force to replace it".into()));
    }
    if !(0.0..1.0).contains(&options.val_fraction) {
        return Err(bad(format!("val fraction {} is not in [0, 1)", options.val_fraction)));
    }
    if options.size == 0 {
        return Err(bad("size 0: images need at least one pixel".into()));
    }
    let classes = sorted_entries(folder)
        .map_err(io(folder))?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect::<Vec<_>>();
    if wants_rasters(&classes, rasters) {
        return import_rasters(folder, &classes, out, options, rasters);
    }
    let names: Vec<PathBuf> =
        classes.iter().map(|c| PathBuf::from(c.file_name().unwrap_or_default())).collect();
    let mut index = Index::default();
    let written = write_hdf5_atomic(out, |file| {
        write_attributes(file, folder, options)?;
        stream_images(file, folder, &classes, options, &mut index)?;
        if index.labels.is_empty() {
            // Nothing to keep: fail the write so that no file is left.
            return Err(hdf5::Error::from("no decodable images"));
        }
        write_index(file, &names, &index)
    });
    if index.labels.is_empty() {
        return Err(DataError::Format {
            path: folder.display().to_string(),
            message: format!(
                "no decodable images in {} class folders ({} files skipped)",
                classes.len(),
                index.skipped.len()
            ),
        });
    }
    written?;
    Ok(index.report(names.len()))
}

/// Decodes every class's files in name order into `/images` ([n, size, size, 3] u8, grown as
/// images come, written [`WRITE_BATCH_IMAGES`] at a time), keeping labels, paths, the split and
/// the files skipped in `index`.
fn stream_images(
    file: &File,
    folder: &Path,
    classes: &[PathBuf],
    options: &ImportOptions,
    index: &mut Index,
) -> hdf5::Result<()> {
    let s = options.size as usize;
    let images = file
        .new_dataset::<u8>()
        .chunk((CHUNK_IMAGES, s, s, CHANNELS))
        .shape((0.., s, s, CHANNELS))
        .create("images")?;
    let mut pending: Vec<u8> = Vec::with_capacity(WRITE_BATCH_IMAGES * s * s * CHANNELS);
    let flush = |pending: &mut Vec<u8>, written: usize| -> hdf5::Result<usize> {
        let n = pending.len() / (s * s * CHANNELS);
        if n > 0 {
            images.resize((written + n, s, s, CHANNELS))?;
            let block = Array4::from_shape_vec((n, s, s, CHANNELS), std::mem::take(pending))
                .expect("whole images of size x size x 3");
            images.write_slice(&block, ndarray::s![written..written + n, .., .., ..])?;
        }
        Ok(written + n)
    };
    let mut written = 0;
    let relative = |p: &Path| p.strip_prefix(folder).unwrap_or(p).to_path_buf();
    let skip = |p: &Path, reason: String| {
        let path = relative(p);
        Skipped { path: escaped(&path), path_bytes: path.as_os_str().as_bytes().to_vec(), reason }
    };
    for (label, class) in classes.iter().enumerate() {
        let mut files = Vec::new();
        for (path, listed) in class_files(class) {
            match listed {
                Ok(()) => files.push(path),
                Err(reason) => index.skipped.push(skip(&path, reason)),
            }
        }
        let first = index.labels.len();
        // Decoded in parallel a batch at a time, kept in walk order: memory holds one batch
        // of small images and one large image per thread.
        for batch in files.chunks(WRITE_BATCH_IMAGES) {
            let decoded: Vec<_> = batch.par_iter().map(|p| decode(p, options.size)).collect();
            for (path, result) in batch.iter().zip(decoded) {
                match result {
                    Ok(pixels) => {
                        pending.extend_from_slice(&pixels);
                        index.labels.push(label as u32);
                        index.paths.push(relative(path));
                        if pending.len() >= WRITE_BATCH_IMAGES * s * s * CHANNELS {
                            written = flush(&mut pending, written)?;
                        }
                    }
                    Err(reason) => index.skipped.push(skip(path, reason)),
                }
            }
        }
        let mut members: Vec<usize> = (first..index.labels.len()).collect();
        members.shuffle(&mut sample_rng(options.seed, SPLIT_STREAM, label as u64));
        let val = (members.len() as f64 * options.val_fraction).floor() as usize;
        index.split.resize(index.labels.len(), Split::Train as u8);
        members[..val].iter().for_each(|&i| index.split[i] = Split::Val as u8);
    }
    flush(&mut pending, written).map(|_| ())
}

/// Entries of `dir`, sorted by name, hidden files left out.
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.retain(|p| !p.file_name().is_some_and(|n| n.as_bytes().starts_with(b".")));
    entries.sort();
    Ok(entries)
}

/// Every file under a class folder, depth-first with each folder's entries in name order (for
/// a flat folder, its files in name order, as before sub-folders were walked), each with `Ok`
/// or why it cannot be imported: a folder that cannot be listed, or one already walked (a
/// link back up the tree).
pub(super) fn class_files(class: &Path) -> Vec<(PathBuf, Result<(), String>)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    walk(class, &mut seen, &mut out);
    out
}

fn walk(dir: &Path, seen: &mut BTreeSet<(u64, u64)>, out: &mut Vec<(PathBuf, Result<(), String>)>) {
    if let Ok(meta) = std::fs::metadata(dir) {
        if !seen.insert((meta.dev(), meta.ino())) {
            out.push((dir.to_path_buf(), Err("a folder already walked (a link to it)".into())));
            return;
        }
    }
    match sorted_entries(dir) {
        Ok(entries) => {
            for entry in entries {
                if entry.is_dir() {
                    walk(&entry, seen, out);
                } else {
                    out.push((entry, Ok(())));
                }
            }
        }
        Err(e) => out.push((dir.to_path_buf(), Err(format!("cannot list: {e}")))),
    }
}

/// `path` as text: UTF-8 names as they are, each byte that is not UTF-8 as `\xNN` (lower-case
/// hex), so that two such names stay apart; the exact bytes are kept beside.
pub fn escaped(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out += chunk.valid();
        for byte in chunk.invalid() {
            out += &format!("\\x{byte:02x}");
        }
    }
    out
}

/// RGB pixels [size, size, 3] of the image in `file`, turned as its EXIF orientation says, or
/// why it cannot be imported.
fn decode(file: &Path, size: u32) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot open: {e}"))?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes));
    // The name's extension first, then the content's signature where it has one.
    if let Ok(format) = image::ImageFormat::from_path(file) {
        reader.set_format(format);
    }
    let reader = reader.with_guessed_format().map_err(|e| format!("cannot read: {e}"))?;
    let scaled = match reader.format() {
        None => return Err("not an image in a supported format (PNG, JPEG, TIFF)".into()),
        Some(image::ImageFormat::Jpeg) => {
            // The general JPEG decoder fills a scan cut off half-way with grey, saying nothing.
            super::jpeg::complete(&bytes)?;
            super::jpeg::decode_scaled(&bytes, size, MAX_PIXELS)?
        }
        Some(_) => None,
    };
    let (mut image, orientation) = match scaled {
        Some(decoded) => decoded,
        None => {
            let mut decoder = reader.into_decoder().map_err(|e| format!("cannot decode: {e}"))?;
            // A decompression bomb (a small file of a huge image) is refused from its header,
            // before its pixels are allocated.
            let (width, height) = image::ImageDecoder::dimensions(&decoder);
            check_pixels(width, height, MAX_PIXELS)?;
            // An EXIF block that cannot be read leaves the image as stored, as viewers show it.
            let orientation = image::ImageDecoder::orientation(&mut decoder)
                .unwrap_or(image::metadata::Orientation::NoTransforms);
            let image = image::DynamicImage::from_decoder(decoder)
                .map_err(|e| format!("cannot decode: {e}"))?;
            (image, orientation)
        }
    };
    image.apply_orientation(orientation);
    // Converted in place where it is RGB already (no copy of a large image).
    let rgb = image.into_rgb8();
    Ok(image::imageops::resize(&rgb, size, size, image::imageops::FilterType::Triangle).into_raw())
}

/// `Err` (the refusal) for an image of more than `max_pixels`: a decompression bomb, or an
/// image to tile first.
pub(super) fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<(), String> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(format!(
            "refused: {width} x {height} pixels ({:.0} megapixels) is more than the {} megapixels an image may have (a decompression bomb, or an image to tile first)",
            pixels as f64 / 1e6,
            max_pixels / 1_000_000
        ));
    }
    Ok(())
}

fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

fn text(s: &str) -> VarLenUnicode {
    // Only an interior NUL fails, and paths and messages cannot hold one.
    s.replace('\0', "?").parse().expect("text without NUL")
}

pub(super) fn write_attributes(
    file: &File,
    folder: &Path,
    options: &ImportOptions,
) -> hdf5::Result<()> {
    let attr_text = |name: &str, value: &str| {
        file.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&text(value))
    };
    attr_text("format", FORMAT)?;
    attr_text("layout", "nhwc")?;
    attr_text("source", &folder.display().to_string())?;
    file.new_attr::<u32>().create("format_version")?.write_scalar(&FORMAT_VERSION)?;
    file.new_attr::<u64>().create("seed")?.write_scalar(&options.seed)?;
    file.new_attr::<f64>().create("val_fraction")?.write_scalar(&options.val_fraction)
}

/// Labels, split, class names, paths (as text and as bytes) and the files skipped.
pub(super) fn write_index(file: &File, names: &[PathBuf], index: &Index) -> hdf5::Result<()> {
    let column = |group: &hdf5::Group, name: &str, values: Array1<VarLenUnicode>| {
        group.new_dataset_builder().with_data(values.view()).create(name).map(|_| ())
    };
    let bytes = |group: &hdf5::Group, name: &str, values: Vec<&[u8]>| {
        let values: Array1<VarLenArray<u8>> =
            values.into_iter().map(VarLenArray::from_slice).collect();
        group.new_dataset_builder().with_data(values.view()).create(name).map(|_| ())
    };
    file.new_dataset_builder()
        .with_data(&Array1::from_vec(index.labels.clone()))
        .create("labels")?;
    file.new_dataset_builder().with_data(&Array1::from_vec(index.split.clone())).create("split")?;
    column(file, "class_names", names.iter().map(|n| text(&escaped(n))).collect())?;
    bytes(file, "class_name_bytes", names.iter().map(|n| path_bytes(n)).collect())?;
    column(file, "paths", index.paths.iter().map(|p| text(&escaped(p))).collect())?;
    bytes(file, "path_bytes", index.paths.iter().map(|p| path_bytes(p)).collect())?;
    let group = file.create_group("skipped")?;
    column(&group, "path", index.skipped.iter().map(|k| text(&k.path)).collect())?;
    bytes(&group, "path_bytes", index.skipped.iter().map(|k| k.path_bytes.as_slice()).collect())?;
    column(&group, "reason", index.skipped.iter().map(|k| text(&k.reason)).collect())
}
