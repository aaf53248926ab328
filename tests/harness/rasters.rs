//! Multispectral rasters as they come: a folder of 13-band uint16 GeoTIFFs (LZW with the
//! horizontal predictor, planar and interleaved, as GDAL writes Sentinel-2 chips) imports with
//! its bands, statistics and georeferencing, every sample exactly; a folder mixing band counts
//! is refused with the counts; and a 13-channel MAE trains on the set to the same losses on
//! one rank and on four.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use shardsweep::data::raster_sample::SENTINEL2_BANDS;
use shardsweep::data::tiff_write::{self, Compression, WriteOptions};
use shardsweep::data::{
    import_folder, import_folder_with, BandDtype, GeoTags, ImageSet, ImageSetSource, ImportOptions,
    LoaderFigures, Pixels, Raster, RasterOptions, Source, Split,
};

use crate::common::{global_losses, manifest, Sweep};

const SIDE: usize = 16;
const BANDS: usize = 13;

/// Held by each test of this file while it writes or reads sets or runs sweeps. A process
/// started while a set is being written inherits HDF5's descriptor and with it the file's
/// flock() (HDF5 1.10 opens without close-on-exec), so a set written beside this file's sweep
/// could stay locked until the sweep ends.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn options() -> ImportOptions {
    ImportOptions { size: SIDE as u32, val_fraction: 0.25, seed: 3, force: false }
}

/// Image `i`: smooth reflectance-like bands plus noise, with a few samples at the type's
/// extremes so that nothing in between (a cast, a scaling) can pass unnoticed.
fn raster(i: u64) -> Raster {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i);
    let samples = (0..SIDE * SIDE * BANDS)
        .map(|k| {
            let (pixel, band) = (k / BANDS, k % BANDS);
            let base = 500.0 + 300.0 * band as f64 + 40.0 * ((pixel % SIDE) as f64).sin();
            match rng.random_range(0..100) {
                0 => 0,
                1 => u16::MAX,
                _ => (base + rng.random_range(0.0..200.0)) as u16,
            }
        })
        .collect();
    Raster {
        height: SIDE,
        width: SIDE,
        bands: BANDS,
        pixels: Pixels::U16(samples),
        band_names: vec![None; BANDS],
        geo: GeoTags {
            tiepoint: Some([0.0, 0.0, 0.0, 600_000.0 + 160.0 * i as f64, 5_300_040.0, 0.0]),
            pixel_scale: Some([10.0, 10.0, 0.0]),
            epsg: Some(32632),
        },
    }
}

/// Two classes of six chips, odd ones planar, even ones interleaved; file name -> raster.
fn write_tree(root: &Path) -> Vec<(PathBuf, Raster)> {
    let names: Vec<String> = SENTINEL2_BANDS.iter().map(|b| b.to_string()).collect();
    let mut written = Vec::new();
    for (c, class) in ["forest", "river"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..6 {
            let raster = raster((c * 6 + i) as u64);
            let planar = i % 2 == 1;
            let write = WriteOptions {
                compression: Compression::Lzw,
                predictor: true,
                planar,
                rows_per_strip: 5,
            };
            let path = PathBuf::from(class).join(format!("chip_{i}.tif"));
            tiff_write::write(&root.join(&path), &raster, &names, write).unwrap();
            written.push((path, raster));
        }
    }
    written
}

fn samples(pixels: &Pixels) -> &[u16] {
    match pixels {
        Pixels::U16(v) => v,
        other => panic!("uint16 expected, {:?}", other.dtype()),
    }
}

#[test]
fn a_13_band_geotiff_folder_imports_with_bands_statistics_and_tags_exactly() {
    let _serial = serial();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (tree, out) = (dir.path().join("s2"), dir.path().join("s2.h5"));
    let written = write_tree(&tree);
    let report = import_folder(&tree, &out, &options()).unwrap();
    assert_eq!((report.images, report.classes, report.skipped.len()), (12, 2, 0));
    // floor(6 x 0.25) = 1 per class held out.
    assert_eq!((report.train, report.val), (10, 2));

    let set = ImageSet::open(&out).unwrap();
    assert_eq!((set.dtype, set.image_shape()), (BandDtype::U16, [SIDE, SIDE, BANDS]));
    assert_eq!(set.band_names, SENTINEL2_BANDS);
    let file = hdf5::File::open(&out).unwrap();
    let paths: Vec<String> = file
        .dataset("paths")
        .unwrap()
        .read_raw::<hdf5::types::VarLenUnicode>()
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect();
    let tiepoints = file.dataset("geo/tiepoint").unwrap().read_2d::<f64>().unwrap();
    let scales = file.dataset("geo/pixel_scale").unwrap().read_2d::<f64>().unwrap();
    let epsg = file.dataset("geo/epsg").unwrap().read_raw::<u16>().unwrap();
    assert_eq!(file.attr("format_version").unwrap().read_scalar::<u32>().unwrap(), 3);
    let images = file.dataset("images").unwrap();
    assert_eq!(images.chunk(), Some(vec![1, SIDE, SIDE, BANDS]), "one image per chunk");
    if hdf5::filters::deflate_available() {
        assert!(images.storage_size() < (12 * SIDE * SIDE * BANDS * 2) as u64, "compressed");
    }
    let mut train_values = vec![Vec::new(); BANDS];
    for (i, path) in paths.iter().enumerate() {
        let (_, source) = written.iter().find(|(p, _)| p.to_str() == Some(path)).unwrap();
        let stored = set.read_pixels(i).unwrap();
        assert_eq!(samples(&stored), samples(&source.pixels), "{path}: every sample as written");
        let geo = source.geo.clone();
        assert_eq!(tiepoints.row(i).to_vec(), geo.tiepoint.unwrap(), "{path}");
        assert_eq!(scales.row(i).to_vec(), geo.pixel_scale.unwrap(), "{path}");
        assert_eq!(epsg[i], 32632, "{path}");
        if set.split[i] == Split::Train as u8 {
            for (k, &v) in samples(&stored).iter().enumerate() {
                train_values[k % BANDS].push(v);
            }
        }
    }
    // The statistics are the train split's, computed here from the samples themselves.
    let stats = set.band_stats.clone().expect("statistics");
    for (band, values) in train_values.iter_mut().enumerate() {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        values.sort();
        let rank = |q: f64| f64::from(values[(q * n).ceil() as usize - 1]);
        assert!((stats.mean[band] - mean).abs() < 1e-9 * mean, "band {band} mean");
        assert!((stats.std[band] - var.sqrt()).abs() < 1e-6 * var.sqrt(), "band {band} std");
        assert_eq!((stats.p01[band], stats.p99[band]), (rank(0.01), rank(0.99)), "band {band}");
    }

    // The loader normalises each band by those statistics: a whole-image crop (scale 1,
    // square, so the crop is the image) flipped or not, at the stored size.
    let source = ImageSetSource::new(ImageSet::open(&out).unwrap(), 0, SIDE, 1.0).unwrap();
    let mut out_values = vec![0.0; BANDS * SIDE * SIDE];
    source.fill(0, &mut out_values, &mut LoaderFigures::default()).unwrap();
    let plane_means: Vec<f32> = (0..BANDS)
        .map(|b| {
            out_values[b * SIDE * SIDE..(b + 1) * SIDE * SIDE].iter().sum::<f32>()
                / (SIDE * SIDE) as f32
        })
        .collect();
    let spread: f32 = plane_means.iter().map(|m| m.abs()).fold(0.0, f32::max);
    assert!(spread < 2.0, "bands are centred on their own means, not ImageNet's: {plane_means:?}");

    // --bands names them instead, and must match the band count.
    let named = dir.path().join("named.h5");
    let bands: Vec<String> = (0..BANDS).map(|b| format!("band{b}")).collect();
    let rasters = RasterOptions { bands: Some(bands.clone()), raster: false };
    import_folder_with(&tree, &named, &options(), &rasters).unwrap();
    assert_eq!(ImageSet::open(&named).unwrap().band_names, bands);
    let short = RasterOptions { bands: Some(bands[..4].to_vec()), raster: false };
    let error = import_folder_with(&tree, &dir.path().join("short.h5"), &options(), &short)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--bands names 4 bands") && error.contains("the files have 13"),
        "{error}"
    );
}

#[test]
fn a_folder_of_3_and_13_band_rasters_is_refused_with_the_counts() {
    let _serial = serial();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (tree, out) = (dir.path().join("mixed"), dir.path().join("mixed.h5"));
    write_tree(&tree);
    let rgb = Raster {
        bands: 3,
        pixels: Pixels::U16((0..SIDE * SIDE * 3).map(|v| v as u16).collect()),
        band_names: vec![None; 3],
        ..raster(99)
    };
    let write = WriteOptions {
        compression: Compression::Deflate,
        predictor: false,
        planar: false,
        rows_per_strip: 8,
    };
    for i in 0..2 {
        let path = tree.join(format!("river/rgb_{i}.tif"));
        tiff_write::write(&path, &rgb, &[], write).unwrap();
    }
    let error = import_folder(&tree, &out, &options()).unwrap_err().to_string();
    assert!(error.contains("mixed bands"), "{error}");
    assert!(error.contains("12 files with bands 13 (first forest/chip_0.tif)"), "{error}");
    assert!(error.contains("2 files with bands 3 (first river/rgb_0.tif)"), "{error}");
    assert!(!out.exists(), "nothing written");
}

/// The 13-band set at 16 px, made once per test binary.
fn thirteen_band_set() -> &'static Path {
    static SET: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = SET.get_or_init(|| {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let (tree, out) = (dir.path().join("s2"), dir.path().join("s2.h5"));
        write_tree(&tree);
        import_folder(&tree, &out, &options()).unwrap();
        (dir, out)
    });
    path
}

fn sweep(name: &str, axes: &str) -> (Sweep, PathBuf) {
    let set = thirteen_band_set().display().to_string();
    let text = format!(
        "name = \"{name}\"\n{axes}\ndata = [\"{set}\"]\n[models.vit-tiny-s2]\nin_channels = 13\nwidth = 64\ndepth = 2\nheads = 4\npatch = 8\nimage_size = 32\ndecoder_width = 64\ndecoder_depth = 1\ndecoder_heads = 4\n[settings]\nsteps = 6\nwarmup_steps = 1\n[optimizer]\nbase_lr = 0.1\nlr_warmup_steps = 2\n"
    );
    let sweep = Sweep::new(&text);
    let output = sweep.run(&["--no-analysis"]);
    assert!(output.status.success(), "sweep {name} failed");
    let dir = sweep.results().join(name);
    (sweep, dir)
}

fn points(dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    points.sort();
    points
}

#[test]
fn a_13_channel_mae_trains_to_the_same_losses_on_one_rank_and_on_four() {
    let _serial = serial();
    let (_one, one) = sweep(
        "s2-one",
        "[axes]\nmodel = [\"vit-tiny-s2\"]\nstrategy = [\"no_shard\"]\nnodes = [1]\nranks_per_node = [1]\nmicro_batch = [8]",
    );
    let (_four, four) = sweep(
        "s2-four",
        "[axes]\nmodel = [\"vit-tiny-s2\"]\nstrategy = [\"no_shard\", \"full_shard\", \"shard_grad_op\", \"hybrid_shard\"]\nnodes = [2]\nranks_per_node = [2]\nmicro_batch = [2]",
    );
    let reference = &points(&one)[0];
    let expected = global_losses(reference);
    assert_eq!(expected.len(), 6);
    assert!(expected.iter().all(|l| l.is_finite() && *l > 0.0), "{expected:?}");
    let sharded = points(&four);
    assert_eq!(sharded.len(), 4);
    for point in sharded {
        let name = point.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(manifest(&point)["outcome"], "ok", "{name}");
        for (step, (a, b)) in expected.iter().zip(global_losses(&point)).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs(),
                "{name} step {step}: loss {b} vs {a} on one rank"
            );
        }
    }
}

/// What the RGB import skipped before ("does not support the color type"): float32 with the
/// floating-point predictor, and 3 bands of uint8 that say BlackIsZero (GDAL's multispectral
/// files); both import at their type. An 8-bit RGB TIFF still takes the RGB import.
#[test]
fn float32_and_three_band_uint8_rasters_import_at_their_type() {
    let _serial = serial();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let float = Raster {
        bands: 2,
        pixels: Pixels::F32((0..SIDE * SIDE * 2).map(|v| (v as f32 * 0.01).cos() * 0.3).collect()),
        band_names: vec![None; 2],
        ..raster(7)
    };
    let grey3 = Raster {
        bands: 3,
        pixels: Pixels::U8((0..SIDE * SIDE * 3).map(|v| (v * 3) as u8).collect()),
        band_names: vec![None; 3],
        ..raster(8)
    };
    let write = WriteOptions {
        compression: Compression::Deflate,
        predictor: true,
        planar: false,
        rows_per_strip: 3,
    };
    for (name, raster) in [("float", &float), ("grey3", &grey3)] {
        let tree = dir.path().join(name);
        std::fs::create_dir_all(tree.join("only")).unwrap();
        tiff_write::write(&tree.join("only/a.tif"), raster, &[], write).unwrap();
        let out = dir.path().join(format!("{name}.h5"));
        let report = import_folder(&tree, &out, &options()).unwrap();
        assert_eq!((report.images, report.skipped.len()), (1, 0), "{name}");
        let set = ImageSet::open(&out).unwrap();
        assert_eq!(set.dtype, raster.pixels.dtype(), "{name}");
        assert_eq!(set.read_pixels(0).unwrap(), raster.pixels, "{name}");
        assert_eq!(
            set.band_names,
            (1..=raster.bands).map(|b| format!("band_{b}")).collect::<Vec<_>>()
        );
    }
    let rgb = dir.path().join("rgb");
    std::fs::create_dir_all(rgb.join("only")).unwrap();
    image::RgbImage::from_pixel(SIDE as u32, SIDE as u32, image::Rgb([9, 99, 199]))
        .save(rgb.join("only/a.tif"))
        .unwrap();
    import_folder(&rgb, &dir.path().join("rgb.h5"), &options()).unwrap();
    let set = ImageSet::open(&dir.path().join("rgb.h5")).unwrap();
    assert!(set.band_names.is_empty() && set.band_stats.is_none(), "an RGB set as before");
    assert_eq!(set.read(0).unwrap()[..3], [9, 99, 199]);
}
