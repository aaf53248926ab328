//! `shardsweep data import`: a folder-per-class tree of images (the layout of UC Merced, AID,
//! NWPU-RESISC45 and MillionAID exports) into one image set file (see [`super::image_set`]).
//!
//! Every file is decoded with the `image` crate (PNG, JPEG, TIFF), converted to RGB and resized
//! to `size` x `size` (the whole image, bilinear; scene sets are square). A file that cannot be
//! read or decoded is listed in `/skipped` with the reason and the import goes on. The split is
//! stratified: in each class, images are shuffled with the seed and the class index, and the
//! first floor(n x val_fraction) go to val, so a class of one image stays in train.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::File;
use ndarray::{Array1, Array4};
use rand::seq::SliceRandom;

use super::image_set::{Split, FORMAT, FORMAT_VERSION};
use super::synthetic::sample_rng;
use super::DataError;
use crate::records::write_hdf5_atomic;

/// Stream of the per-class split shuffle.
const SPLIT_STREAM: u64 = 5 << 59;
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
    /// Relative to the imported folder.
    pub path: String,
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

/// Images decoded but not yet written: at most [`WRITE_BATCH_IMAGES`], so an import's memory
/// does not grow with the set (a MillionAID export is about 1e6 images).
const WRITE_BATCH_IMAGES: usize = 256;

/// What an import keeps of every image besides its pixels.
#[derive(Default)]
struct Index {
    labels: Vec<u32>,
    paths: Vec<String>,
    split: Vec<u8>,
    skipped: Vec<Skipped>,
}

/// Imports `folder` into `out`, written atomically (a temporary file renamed into place).
/// Errors: the folder cannot be listed, `out` exists and `force` is not set, nothing decodable,
/// or the file cannot be written. Unreadable images are not errors: they are in the report.
pub fn import_folder(
    folder: &Path,
    out: &Path,
    options: &ImportOptions,
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
    let names: Vec<String> = classes
        .iter()
        .map(|c| c.file_name().unwrap_or_default().to_string_lossy().into())
        .collect();
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
    let count = |s: Split| index.split.iter().filter(|&&x| x == s as u8).count();
    Ok(ImportReport {
        images: index.labels.len(),
        classes: names.len(),
        train: count(Split::Train),
        val: count(Split::Val),
        skipped: index.skipped,
    })
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
    let relative = |p: &Path| p.strip_prefix(folder).unwrap_or(p).display().to_string();
    for (label, class) in classes.iter().enumerate() {
        let files = match sorted_entries(class) {
            Ok(files) => files,
            Err(e) => {
                let reason = format!("cannot list: {e}");
                index.skipped.push(Skipped { path: relative(class), reason });
                continue;
            }
        };
        let first = index.labels.len();
        for path in files.iter().filter(|f| !f.is_dir()) {
            match decode(path, options.size) {
                Ok(pixels) => {
                    pending.extend_from_slice(&pixels);
                    index.labels.push(label as u32);
                    index.paths.push(relative(path));
                    if pending.len() >= WRITE_BATCH_IMAGES * s * s * CHANNELS {
                        written = flush(&mut pending, written)?;
                    }
                }
                Err(reason) => index.skipped.push(Skipped { path: relative(path), reason }),
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
    entries.retain(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')));
    entries.sort();
    Ok(entries)
}

/// RGB pixels [size, size, 3] of the image in `file`, or why it cannot be imported.
fn decode(file: &Path, size: u32) -> Result<Vec<u8>, String> {
    let reader = image::ImageReader::open(file)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    if reader.format().is_none() {
        return Err("not an image in a supported format (PNG, JPEG, TIFF)".into());
    }
    let image = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
    let rgb = image.to_rgb8();
    Ok(image::imageops::resize(&rgb, size, size, image::imageops::FilterType::Triangle).into_raw())
}

fn text(s: &str) -> VarLenUnicode {
    // Only an interior NUL fails, and paths and messages cannot hold one.
    s.replace('\0', "?").parse().expect("text without NUL")
}

fn write_attributes(file: &File, folder: &Path, options: &ImportOptions) -> hdf5::Result<()> {
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

/// Labels, split, class names, paths and the files skipped.
fn write_index(file: &File, names: &[String], index: &Index) -> hdf5::Result<()> {
    let column = |name: &str, values: Array1<VarLenUnicode>| {
        file.new_dataset_builder().with_data(values.view()).create(name).map(|_| ())
    };
    file.new_dataset_builder()
        .with_data(&Array1::from_vec(index.labels.clone()))
        .create("labels")?;
    file.new_dataset_builder().with_data(&Array1::from_vec(index.split.clone())).create("split")?;
    column("class_names", names.iter().map(|n| text(n)).collect())?;
    column("paths", index.paths.iter().map(|p| text(p)).collect())?;
    let group = file.create_group("skipped")?;
    for (name, values) in [
        ("path", index.skipped.iter().map(|k| text(&k.path)).collect::<Array1<_>>()),
        ("reason", index.skipped.iter().map(|k| text(&k.reason)).collect()),
    ] {
        group.new_dataset_builder().with_data(values.view()).create(name)?;
    }
    Ok(())
}
