//! `shardsweep data`'s commands on files, which never touch libtorch (and so are
//! `shardsweep-lite`'s too): `import` turns a folder-per-class tree into an image set file,
//! `digits` writes scikit-learn's bundled handwritten digits as such a tree, and `rasters`
//! writes a tree of synthetic multiband GeoTIFFs (Sentinel-2's shapes).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use shardsweep::data::raster_sample::{write_sample_tree, SampleTree};
use shardsweep::data::tiff_write::{Compression, WriteOptions};
use shardsweep::data::{import_folder_with, BandDtype, ImageSet, ImportOptions, RasterOptions};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Import a folder-per-class tree of PNG/JPEG/TIFF images into one HDF5 image set
    /// (multiband GeoTIFFs keep their bands and sample type).
    Import(ImportArgs),
    /// Write a folder-per-class tree of synthetic multiband GeoTIFFs (EuroSAT-MS's shapes).
    Rasters(RastersArgs),
    /// Write scikit-learn's handwritten digits (8x8 grey, 10 classes) as a folder of PNGs.
    Digits(DigitsArgs),
}

#[derive(clap::Args)]
pub struct ImportArgs {
    folder: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Side of the stored square images, pixels (rasters of this size are stored as they are).
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Band names of a raster set, comma-separated (default: the files' GDAL band
    /// descriptions, else band_1..band_N); implies --raster.
    #[arg(long, value_delimiter = ',')]
    bands: Option<Vec<String>>,
    /// Import TIFFs as rasters even when all are 8-bit grey or RGB (keeps georeferencing).
    #[arg(long)]
    raster: bool,
    /// Share of each class held out for validation (floor per class).
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct RastersArgs {
    /// Folder to write, one subfolder per class.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 4)]
    classes: usize,
    #[arg(long, default_value_t = 64)]
    per_class: usize,
    /// Bands per image (13: Sentinel-2's names B01..B12, B8A).
    #[arg(long, default_value_t = 13)]
    bands: usize,
    /// Side of each square image, pixels.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// uint8, uint16, int16 or float32.
    #[arg(long, default_value = "uint16")]
    dtype: String,
    /// none, lzw, deflate or zstd.
    #[arg(long, default_value = "lzw")]
    compression: String,
    /// Write without the horizontal (or floating-point) predictor.
    #[arg(long)]
    no_predictor: bool,
    /// Bands in planes of their own instead of interleaved.
    #[arg(long)]
    planar: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
pub struct DigitsArgs {
    /// scikit-learn's `datasets/data/digits.csv.gz` (found through .venv's Python if not given).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Folder to write, one subfolder per digit.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Import(args) => import(args),
        Command::Rasters(args) => rasters(args),
        Command::Digits(args) => digits(args),
    }
}

fn import(args: ImportArgs) -> Result<ExitCode> {
    let options = ImportOptions {
        size: args.size,
        val_fraction: args.val_fraction,
        seed: args.seed,
        force: args.force,
    };
    let rasters = RasterOptions { bands: args.bands, raster: args.raster };
    let report = import_folder_with(&args.folder, &args.out, &options, &rasters)?;
    for skipped in &report.skipped {
        errln!("warning: skipped {}: {}", skipped.path, skipped.reason);
    }
    outln!(
        "{}: {} images in {} classes ({} train, {} val), {} skipped",
        args.out.display(),
        report.images,
        report.classes,
        report.train,
        report.val,
        report.skipped.len()
    );
    let set = ImageSet::open(&args.out)?;
    if !set.band_names.is_empty() {
        outln!(
            "{} bands of {} ({}), {} x {} px",
            set.channels(),
            set.dtype,
            set.band_names.join(","),
            set.image_shape()[0],
            set.image_shape()[1]
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn rasters(args: RastersArgs) -> Result<ExitCode> {
    let dtype = BandDtype::from_name(&args.dtype).with_context(|| {
        format!("--dtype {:?}: not uint8, uint16, int16 or float32", args.dtype)
    })?;
    let compression = match args.compression.as_str() {
        "none" => Compression::None,
        "lzw" => Compression::Lzw,
        "deflate" => Compression::Deflate,
        "zstd" => Compression::Zstd,
        other => bail!("--compression {other:?}: not none, lzw, deflate or zstd"),
    };
    if args.bands == 0 || args.size == 0 {
        bail!("--bands {} --size {}: both must be at least 1", args.bands, args.size);
    }
    let write = WriteOptions {
        compression,
        predictor: !args.no_predictor,
        planar: args.planar,
        rows_per_strip: 16,
    };
    let tree = SampleTree {
        classes: args.classes,
        per_class: args.per_class,
        bands: args.bands,
        size: args.size,
        dtype,
        seed: args.seed,
        write,
    };
    write_sample_tree(&args.out, &tree).with_context(|| format!("{}", args.out.display()))?;
    outln!(
        "{}: {} classes x {} GeoTIFFs of {} x {} px, {} bands of {dtype}",
        args.out.display(),
        args.classes,
        args.per_class,
        args.size,
        args.size,
        args.bands
    );
    Ok(ExitCode::SUCCESS)
}

/// scikit-learn's copy of the UCI digits: rows of 64 pixel values in 0..=16 and the label.
fn digits(args: DigitsArgs) -> Result<ExitCode> {
    let csv = match args.csv {
        Some(csv) => csv,
        None => sklearn_digits_csv()?,
    };
    let file = std::fs::File::open(&csv).with_context(|| format!("{}", csv.display()))?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut count = 0;
    for (row, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", csv.display(), row + 1))?;
        let values =
            digits_row(&line).with_context(|| format!("{}: line {}", csv.display(), row + 1))?;
        let pixels: Vec<u8> =
            values[..64].iter().map(|&v| (u32::from(v) * 255 / 16) as u8).collect();
        let dir = args.out.join(values[64].to_string());
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        let path = dir.join(format!("{row:04}.png"));
        image::GrayImage::from_raw(8, 8, pixels)
            .expect("64 pixels")
            .save(&path)
            .with_context(|| format!("{}", path.display()))?;
        count += 1;
    }
    outln!("{}: {count} digits", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// One row of the digits file: 64 pixels in 0..=16 and the digit. Values are whole numbers
/// as the file writes them (`3.0`); anything else (`nan`, `inf`, `1e999`, `2.5`, `-1`) is
/// refused with the value, never cast into range.
fn digits_row(line: &str) -> Result<Vec<u8>> {
    let values = line
        .split(',')
        .map(|v| {
            let v = v.trim();
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x.fract() == 0.0 && (0.0..=16.0).contains(&x) => {
                    Ok(x as u8)
                }
                _ => bail!("{v:?} is not a whole number in 0..=16"),
            }
        })
        .collect::<Result<Vec<u8>>>()?;
    if values.len() != 65 || values[64] > 9 {
        bail!("expected 64 pixels in 0..=16 and a digit, found {} values", values.len());
    }
    Ok(values)
}

/// The digits file of the scikit-learn that setup.sh installs into .venv.
fn sklearn_digits_csv() -> Result<PathBuf> {
    let python = Path::new(".venv/bin/python");
    let output = std::process::Command::new(python)
        .args([
            "-c",
            "import os, sklearn.datasets as d; \
             print(os.path.join(os.path.dirname(d.__file__), 'data', 'digits.csv.gz'))",
        ])
        .output()
        .with_context(|| format!("{}: cannot run (give --csv)", python.display()))?;
    if !output.status.success() {
        bail!(
            "{}: cannot find scikit-learn (run setup.sh or give --csv): {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}
