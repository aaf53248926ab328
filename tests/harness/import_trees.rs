//! `data import` on the trees real image sets come as: classes with sub-folders (MillionAID),
//! JPEGs that carry an EXIF orientation, files cut off half-way, names that are not UTF-8; and
//! a flat tree keeps the labels and split that earlier versions gave it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use shardsweep::data::{import_folder, ImageSet, ImportOptions};

fn options(val_fraction: f64, seed: u64) -> ImportOptions {
    ImportOptions { size: 8, val_fraction, seed, force: false }
}

fn solid(path: &Path, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(6, 5, image::Rgb(rgb)).save(path).unwrap();
}

/// A JPEG, 32 x 16: left half red, right half blue.
fn halves_jpeg() -> Vec<u8> {
    let image = image::RgbImage::from_fn(32, 16, |x, _| {
        image::Rgb(if x < 16 { [250, 0, 0] } else { [0, 0, 250] })
    });
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    image.write_with_encoder(encoder).unwrap();
    bytes
}

/// `jpeg` with an EXIF block (APP1, big-endian TIFF, one IFD entry) giving `orientation`,
/// right after the start-of-image marker, as cameras write it.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // padding, no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The colour at row `y`, column `x` of image `i` (8 x 8 RGB).
fn pixel(set: &ImageSet, i: usize, x: usize, y: usize) -> [u8; 3] {
    let p = set.read(i).unwrap();
    let at = (y * 8 + x) * 3;
    [p[at], p[at + 1], p[at + 2]]
}

fn is_red(p: [u8; 3]) -> bool {
    p[0] > 200 && p[2] < 60
}

fn is_blue(p: [u8; 3]) -> bool {
    p[2] > 200 && p[0] < 60
}

#[test]
fn a_jpeg_with_an_exif_orientation_is_imported_as_it_is_displayed() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("scene")).unwrap();
    let jpeg = halves_jpeg();
    // 1: as stored; 3: turned half a turn; 6: a quarter turn clockwise; 8: counter-clockwise.
    for orientation in [1, 3, 6, 8] {
        let path = tree.join(format!("scene/o{orientation}.jpg"));
        std::fs::write(path, with_orientation(&jpeg, orientation)).unwrap();
    }
    let out = dir.path().join("set.h5");
    import_folder(&tree, &out, &options(0.0, 0)).unwrap();
    let set = ImageSet::open(&out).unwrap();
    // Image i of o1, o3, o6, o8: where red is (corners of the 8 x 8 image).
    let top_left = |s: &ImageSet, i| pixel(s, i, 1, 1);
    let top_right = |s: &ImageSet, i| pixel(s, i, 6, 1);
    let bottom_left = |s: &ImageSet, i| pixel(s, i, 1, 6);
    assert!(is_red(top_left(&set, 0)) && is_blue(top_right(&set, 0)), "as stored");
    assert!(is_blue(top_left(&set, 1)) && is_red(top_right(&set, 1)), "half a turn");
    // Clockwise, the left half goes to the top; counter-clockwise, to the bottom.
    assert!(is_red(top_left(&set, 2)) && is_red(top_right(&set, 2)), "{:?}", pixel(&set, 2, 6, 1));
    assert!(is_blue(bottom_left(&set, 2)));
    assert!(is_blue(top_left(&set, 3)) && is_red(bottom_left(&set, 3)));
}

#[test]
fn images_in_sub_folders_of_a_class_are_imported_under_the_top_folder() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tree = dir.path().join("million-aid");
    // MillionAID: first-level scene class, then second- and third-level folders.
    for (path, rgb) in [
        ("agriculture/arable_land/dry_field/P0001.png", [10, 200, 10]),
        ("agriculture/arable_land/paddy_field/P0002.png", [20, 200, 10]),
        ("agriculture/greenhouse/P0003.png", [30, 200, 10]),
        ("agriculture/P0000.png", [40, 200, 10]),
        ("water_area/lake/P0004.png", [10, 10, 200]),
        ("water_area/.cache/thumb.png", [0, 0, 0]),
    ] {
        solid(&tree.join(path), rgb);
    }
    let out = dir.path().join("set.h5");
    let report = import_folder(&tree, &out, &options(0.0, 0)).unwrap();
    assert_eq!((report.images, report.classes, report.skipped.len()), (5, 2, 0));
    let set = ImageSet::open(&out).unwrap();
    assert_eq!(set.class_names, ["agriculture", "water_area"]);
    assert_eq!(set.labels, [0, 0, 0, 0, 1]);
    let paths = h5py(&out, "print('\\n'.join(p.decode() for p in f['paths'][:]))");
    assert_eq!(
        paths.lines().collect::<Vec<_>>(),
        [
            "agriculture/P0000.png",
            "agriculture/arable_land/dry_field/P0001.png",
            "agriculture/arable_land/paddy_field/P0002.png",
            "agriculture/greenhouse/P0003.png",
            "water_area/lake/P0004.png",
        ],
        "depth-first in name order; hidden folders left out"
    );
    // A link from inside a class back up to it is walked once, and named.
    std::os::unix::fs::symlink(tree.join("agriculture"), tree.join("agriculture/greenhouse/up"))
        .unwrap();
    let looped = dir.path().join("looped.h5");
    let report = import_folder(&tree, &looped, &options(0.0, 0)).unwrap();
    assert_eq!(report.images, 5);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.skipped[0].path, "agriculture/greenhouse/up");
}

#[test]
fn a_file_cut_off_half_way_is_skipped_named_and_counted() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("scene")).unwrap();
    let jpeg = halves_jpeg();
    std::fs::write(tree.join("scene/whole.jpg"), &jpeg).unwrap();
    // Cut inside the scan data (past the headers), where decoders fill in grey silently.
    std::fs::write(tree.join("scene/cut.jpg"), &jpeg[..jpeg.len() * 3 / 4]).unwrap();
    std::fs::write(tree.join("scene/no-end.jpg"), &jpeg[..jpeg.len() - 2]).unwrap();
    let png = std::fs::read({
        solid(&tree.join("scene/p.png"), [1, 2, 3]);
        tree.join("scene/p.png")
    })
    .unwrap();
    std::fs::write(tree.join("scene/cut.png"), &png[..png.len() * 2 / 3]).unwrap();
    let out = dir.path().join("set.h5");
    let import = import_at_8_px(env!("CARGO_BIN_EXE_shardsweep"), &tree, &out).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&import.stdout), String::from_utf8_lossy(&import.stderr));
    assert!(import.status.success(), "{stderr}");
    assert!(stdout.contains("2 images in 1 classes") && stdout.contains("3 skipped"), "{stdout}");
    for name in ["scene/cut.jpg", "scene/no-end.jpg", "scene/cut.png"] {
        let line = stderr.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{stderr}"));
        assert!(line.contains("skipped"), "{line}");
    }
    let cut = stderr.lines().find(|l| l.contains("scene/cut.jpg")).unwrap();
    assert!(cut.contains("cut off"), "{cut}");
    let skipped = h5py(&out, "print(sorted(p.decode() for p in f['skipped/path'][:]))");
    assert_eq!(skipped.trim(), "['scene/cut.jpg', 'scene/cut.png', 'scene/no-end.jpg']");
}

#[test]
fn names_that_are_not_utf8_are_kept_byte_for_byte() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tree = dir.path().join("tree");
    let path = |bytes: &[u8]| tree.join(OsStr::from_bytes(bytes));
    // Latin-1 names, as old archives hold them: "été/café.png", "été/cafè.png".
    solid(&path(b"\xe9t\xe9/caf\xe9.png"), [200, 0, 0]);
    solid(&path(b"\xe9t\xe9/caf\xe8.png"), [0, 200, 0]);
    solid(&path("\u{e9}t\u{e9}/caf\u{e9}.png".as_bytes()), [0, 0, 200]);
    let out = dir.path().join("set.h5");
    let report = import_folder(&tree, &out, &options(0.0, 0)).unwrap();
    assert_eq!((report.images, report.classes), (3, 2));
    let script = "import os; \
        print([bytes(b) for b in f['class_name_bytes'][:]]); \
        print([bytes(b) for b in f['path_bytes'][:]]); \
        print([p.decode() for p in f['paths'][:]]); \
        print(os.path.exists(os.path.join(os.fsencode(f.attrs['source']), bytes(f['path_bytes'][0]))))";
    let printed = h5py(&out, script);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], r"[b'\xc3\xa9t\xc3\xa9', b'\xe9t\xe9']", "sorted by bytes");
    assert_eq!(
        lines[1],
        r"[b'\xc3\xa9t\xc3\xa9/caf\xc3\xa9.png', b'\xe9t\xe9/caf\xe8.png', b'\xe9t\xe9/caf\xe9.png']"
    );
    // Text keeps the two Latin-1 names apart (no U+FFFD for both).
    assert_eq!(
        lines[2],
        r"['été/café.png', '\\xe9t\\xe9/caf\\xe8.png', '\\xe9t\\xe9/caf\\xe9.png']"
    );
    assert_eq!(lines[3], "True", "a stored path opens the file");
}

/// Labels and split of the tree below as `data import --size 4 --val-fraction 0.3 --seed 3`
/// gave them before sub-folders, EXIF orientation and cut-off files were handled (recorded
/// with that version's binary): the rule (classes in name order, files in name order, a
/// seeded shuffle per class) must not move.
const EARLIER_LABELS: [u32; 17] = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3];
const EARLIER_SPLIT: [u8; 17] = [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0];

fn earlier_tree(root: &Path) -> PathBuf {
    let tree = root.join("tree");
    for (class, n) in [("forest", 5), ("harbor", 7), ("lone", 1), ("river", 4)] {
        for i in 0..n {
            solid(&tree.join(format!("{class}/{i:02}.png")), [i * 20, 100, 50]);
        }
    }
    tree
}

#[test]
fn a_flat_tree_keeps_the_labels_and_split_earlier_versions_gave_it() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tree = earlier_tree(dir.path());
    let out = dir.path().join("set.h5");
    import_folder(&tree, &out, &ImportOptions { size: 4, ..options(0.3, 3) }).unwrap();
    let set = ImageSet::open(&out).unwrap();
    assert_eq!(set.class_names, ["forest", "harbor", "lone", "river"]);
    assert_eq!(set.labels, EARLIER_LABELS);
    assert_eq!(set.split, EARLIER_SPLIT);

    // A class of the new kinds of files, sorted after them, moves none of theirs.
    let extra = tree.join("zz-scenes");
    std::fs::create_dir_all(extra.join("nested/deeper")).unwrap();
    std::fs::write(extra.join("rotated.jpg"), with_orientation(&halves_jpeg(), 6)).unwrap();
    std::fs::write(extra.join("cut.jpg"), &halves_jpeg()[..300]).unwrap();
    solid(&extra.join("nested/deeper/a.png"), [9, 9, 9]);
    solid(&extra.join(OsStr::from_bytes(b"nested/caf\xe9.png")), [9, 9, 9]);
    let more = dir.path().join("more.h5");
    import_folder(&tree, &more, &ImportOptions { size: 4, ..options(0.3, 3) }).unwrap();
    let set = ImageSet::open(&more).unwrap();
    assert_eq!(set.class_names, ["forest", "harbor", "lone", "river", "zz-scenes"]);
    assert_eq!(set.labels[..17], EARLIER_LABELS);
    assert_eq!(set.split[..17], EARLIER_SPLIT);
    assert_eq!(set.labels[17..], [4, 4, 4]);
}

/// What `script` prints with `f` the open HDF5 file `path` (h5py in `.venv`).
fn h5py(path: &Path, script: &str) -> String {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let script = format!("import h5py, sys; f = h5py.File(sys.argv[1]); {script}");
    let out = Command::new(python).args(["-c", &script]).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PNG of a few hundred bytes whose header says `width` x `height` grey pixels (its one data
/// chunk holds a single row): what a decompression bomb looks like before it is decoded.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grey, deflate, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    let row = vec![0u8; width as usize + 1];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &row).unwrap();
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn a_decompression_bomb_is_refused_from_its_header() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tree = dir.path().join("tree");
    solid(&tree.join("scene/ok.png"), [9, 9, 9]);
    // 256 megapixels: 256 MB as grey, 768 MB as RGB, if it were decoded.
    std::fs::write(tree.join("scene/bomb.png"), png_header_only(16_384, 16_384)).unwrap();
    let report = import_folder(&tree, &dir.path().join("set.h5"), &options(0.0, 0)).unwrap();
    assert_eq!(report.images, 1);
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    let reason = &report.skipped[0].reason;
    assert!(
        report.skipped[0].path == "scene/bomb.png"
            && reason.contains("refused: 16384 x 16384 pixels (268 megapixels)"),
        "{reason}"
    );
}

/// `EXE data import TREE --out OUT --size 8`.
fn import_at_8_px(exe: &str, tree: &Path, out: &Path) -> Command {
    let mut command = Command::new(exe);
    command.args(["data", "import"]).arg(tree).arg("--out").arg(out).args(["--size", "8"]);
    command
}

#[test]
fn the_binaries_without_libtorch_import_the_set_the_one_with_it_imports() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sea")).unwrap();
    std::fs::write(tree.join("sea/o6.jpg"), with_orientation(&halves_jpeg(), 6)).unwrap();
    solid(&tree.join("land/a.png"), [10, 200, 10]);
    let import = |exe: &str, name: &str| {
        let out = dir.path().join(name);
        let status = import_at_8_px(exe, &tree, &out).status().unwrap();
        assert!(status.success(), "{exe}");
        ImageSet::open(&out).unwrap()
    };
    let full = import(env!("CARGO_BIN_EXE_shardsweep-torch"), "full.h5");
    assert_eq!(full.len(), 2);
    for (exe, name) in [
        (env!("CARGO_BIN_EXE_shardsweep"), "front.h5"),
        (env!("CARGO_BIN_EXE_shardsweep-lite"), "lite.h5"),
    ] {
        let set = import(exe, name);
        for i in 0..2 {
            assert_eq!(full.read(i).unwrap(), set.read(i).unwrap(), "{exe}: image {i}");
        }
    }
}
