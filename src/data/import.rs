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

struct Decoded {
    label: u32,
    path: String,
    pixels: Vec<u8>,
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
    let mut skipped = Vec::new();
    let mut decoded = Vec::new();
    let mut split = Vec::new();
    let relative = |p: &Path| p.strip_prefix(folder).unwrap_or(p).display().to_string();
    for (label, class) in classes.iter().enumerate() {
        let files = match sorted_entries(class) {
            Ok(files) => files,
            Err(e) => {
                skipped
                    .push(Skipped { path: relative(class), reason: format!("cannot list: {e}") });
                continue;
            }
        };
        let first = decoded.len();
        for file in files.iter().filter(|f| !f.is_dir()) {
            match decode(file, options.size) {
                Ok(pixels) => {
                    decoded.push(Decoded { label: label as u32, path: relative(file), pixels })
                }
                Err(reason) => skipped.push(Skipped { path: relative(file), reason }),
            }
        }
        let mut members: Vec<usize> = (first..decoded.len()).collect();
        members.shuffle(&mut sample_rng(options.seed, SPLIT_STREAM, label as u64));
        let val = (members.len() as f64 * options.val_fraction).floor() as usize;
        split.resize(decoded.len(), Split::Train as u8);
        members[..val].iter().for_each(|&i| split[i] = Split::Val as u8);
    }
    if decoded.is_empty() {
        return Err(DataError::Format {
            path: folder.display().to_string(),
            message: format!(
                "no decodable images in {} class folders ({} files skipped)",
                classes.len(),
                skipped.len()
            ),
        });
    }
    let names: Vec<String> = classes
        .iter()
        .map(|c| c.file_name().unwrap_or_default().to_string_lossy().into())
        .collect();
    let report = ImportReport {
        images: decoded.len(),
        classes: names.len(),
        train: split.iter().filter(|&&s| s == Split::Train as u8).count(),
        val: split.iter().filter(|&&s| s == Split::Val as u8).count(),
        skipped,
    };
    let tmp = out.with_extension(format!("h5.tmp-{}", std::process::id()));
    let written = write(&tmp, folder, options, &names, &decoded, &split, &report.skipped)
        .map_err(|source| DataError::Hdf5 { path: out.display().to_string(), source })
        .and_then(|_| std::fs::rename(&tmp, out).map_err(io(out)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|_| report)
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

fn write(
    path: &Path,
    folder: &Path,
    options: &ImportOptions,
    names: &[String],
    decoded: &[Decoded],
    split: &[u8],
    skipped: &[Skipped],
) -> hdf5::Result<()> {
    let file = File::create(path)?;
    let attr_text = |name: &str, value: &str| {
        file.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&text(value))
    };
    attr_text("format", FORMAT)?;
    attr_text("layout", "nhwc")?;
    attr_text("source", &folder.display().to_string())?;
    file.new_attr::<u32>().create("format_version")?.write_scalar(&FORMAT_VERSION)?;
    file.new_attr::<u64>().create("seed")?.write_scalar(&options.seed)?;
    file.new_attr::<f64>().create("val_fraction")?.write_scalar(&options.val_fraction)?;

    let s = options.size as usize;
    let pixels: Vec<u8> = decoded.iter().flat_map(|d| d.pixels.iter().copied()).collect();
    let images = Array4::from_shape_vec((decoded.len(), s, s, CHANNELS), pixels)
        .expect("every image has size x size x 3 pixels");
    file.new_dataset_builder()
        .chunk((CHUNK_IMAGES, s, s, CHANNELS))
        .with_data(images.view())
        .create("images")?;
    let column = |name: &str, values: Array1<VarLenUnicode>| {
        file.new_dataset_builder().with_data(values.view()).create(name).map(|_| ())
    };
    file.new_dataset_builder()
        .with_data(&Array1::from_iter(decoded.iter().map(|d| d.label)))
        .create("labels")?;
    file.new_dataset_builder().with_data(&Array1::from_vec(split.to_vec())).create("split")?;
    column("class_names", names.iter().map(|n| text(n)).collect())?;
    column("paths", decoded.iter().map(|d| text(&d.path)).collect())?;
    let group = file.create_group("skipped")?;
    for (name, values) in [
        ("path", skipped.iter().map(|k| text(&k.path)).collect::<Array1<_>>()),
        ("reason", skipped.iter().map(|k| text(&k.reason)).collect()),
    ] {
        group.new_dataset_builder().with_data(values.view()).create(name)?;
    }
    file.close()
}
