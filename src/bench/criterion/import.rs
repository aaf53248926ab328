//! `data import` of a folder the benchmark makes: 3 classes, 70 scene images of 1,536 x 1,536
//! (PNG, JPEG and TIFF in turn, textured so they compress as photographs do) and one
//! decompression bomb (a PNG of a few hundred bytes whose header says 16,384 x 16,384, refused
//! from its header), imported at 64 px. Goal: the whole command under 3 s and 500 MB.
//!
//! `cargo bench --bench import`; with `IMPORT_BENCH_DIR=DIR` the folder is made there and kept,
//! for timing `shardsweep data import DIR --out FILE --size 64` as a whole process.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use shardsweep::data::{import_folder, ImportOptions};

const SIDE: u32 = 1536;
const IMAGES: usize = 70;

/// A textured RGB image: gradients and a hash of the pixel's position, different per image.
fn scene(seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let h = (x.wrapping_mul(73_856_093)
            ^ y.wrapping_mul(19_349_663)
            ^ seed.wrapping_mul(83_492_791))
        .wrapping_mul(2_654_435_761)
            >> 27;
        let g = |v: u32, k: u32| ((v * k / SIDE + h) % 256) as u8;
        image::Rgb([g(x, 200), g(y, 180), g(x + y, 120)])
    })
}

/// The PNG header of a 16,384 x 16,384 grey image with one row of data.
fn bomb() -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let side = 16_384u32;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &vec![0u8; side as usize + 1]).unwrap();
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

fn make_folder(root: &Path) {
    for i in 0..IMAGES {
        let class = root.join(["farmland", "forest", "harbor"][i % 3]);
        std::fs::create_dir_all(&class).unwrap();
        // Every class gets each format.
        let ext = ["png", "jpg", "tif"][(i / 3) % 3];
        scene(i as u32).save(class.join(format!("{i:03}.{ext}"))).unwrap();
    }
    std::fs::write(root.join("harbor/bomb.png"), bomb()).unwrap();
}

fn import(c: &mut Criterion) {
    let temp = tempfile::tempdir().unwrap();
    let root = std::env::var_os("IMPORT_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().join("tree"));
    if !root.exists() {
        make_folder(&root);
    }
    let out = temp.path().join("set.h5");
    let options = ImportOptions { size: 64, val_fraction: 0.2, seed: 0, force: true };
    let mut group = c.benchmark_group("import");
    group.sample_size(10);
    group.bench_function("import_71_files", |b| {
        b.iter(|| {
            let report = import_folder(&root, &out, &options).unwrap();
            assert_eq!((report.images, report.skipped.len()), (IMAGES, 1));
        })
    });
    group.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
