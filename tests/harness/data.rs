//! Image sets and the loader: import of a folder-per-class tree (with files that cannot be
//! imported), and the same global batch whatever the rank count and the prefetching.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use shardsweep::data::{
    import_folder, rank_batches, ImageSet, ImageSetSource, ImportOptions, Loader, Source, Split,
    SyntheticImages,
};
use tch::Tensor;

/// A tree of solid-colour images: class `a` with four PNGs, `b` with a JPEG, a TIFF, a PNG, a
/// corrupt PNG and an unreadable file (a link to nothing), `c` with one PNG.
fn make_tree(root: &Path) {
    let solid = |rgb: [u8; 3], w: u32, h: u32| image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    for class in ["a", "b", "c"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
    }
    for i in 0..4u8 {
        solid([10 * i, 200, 30], 12, 9).save(root.join(format!("a/{i}.png"))).unwrap();
    }
    solid([250, 0, 0], 20, 20).save(root.join("b/red.jpg")).unwrap();
    solid([0, 0, 250], 16, 16).save(root.join("b/blue.tif")).unwrap();
    solid([0, 250, 0], 8, 8).save(root.join("b/green.png")).unwrap();
    std::fs::write(root.join("b/corrupt.png"), b"\x89PNG but not really").unwrap();
    std::os::unix::fs::symlink(root.join("nowhere.png"), root.join("b/unreadable.png")).unwrap();
    solid([7, 7, 7], 5, 5).save(root.join("c/only.png")).unwrap();
}

fn options(force: bool) -> ImportOptions {
    ImportOptions { size: 8, val_fraction: 0.5, seed: 1, force }
}

#[test]
fn import_lists_skips_and_splits_and_h5py_reads_it() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (tree, out) = (dir.path().join("tree"), dir.path().join("set.h5"));
    make_tree(&tree);
    let report = import_folder(&tree, &out, &options(false)).unwrap();
    assert_eq!((report.images, report.classes), (8, 3));
    let skipped: Vec<(&str, &str)> =
        report.skipped.iter().map(|s| (s.path.as_str(), s.reason.as_str())).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].0 == "b/corrupt.png" && skipped[0].1.starts_with("cannot decode"));
    assert!(skipped[1].0 == "b/unreadable.png" && skipped[1].1.starts_with("cannot open"));
    // floor(n x 0.5) per class: a 2 of 4, b 1 of 3, c none of its one image.
    assert_eq!((report.train, report.val), (5, 3));

    let set = ImageSet::open(&out).unwrap();
    assert_eq!(set.class_names, ["a", "b", "c"]);
    assert_eq!(set.labels, [0, 0, 0, 0, 1, 1, 1, 2]);
    assert_eq!(set.image_shape(), [8, 8, 3]);
    assert_eq!(set.split[7], Split::Train as u8, "a one-image class stays in train");
    assert_eq!(set.split[..4].iter().filter(|&&s| s == Split::Val as u8).count(), 2);
    // Sorted by name in each class: b/blue.tif, b/green.png, b/red.jpg.
    assert_eq!(&set.read(4).unwrap()[..3], [0, 0, 250]);
    assert_eq!(&set.read(5).unwrap()[..3], [0, 250, 0]);
    let red = set.read(6).unwrap();
    assert!(red.chunks(3).all(|p| p[0] > 240 && p[1] < 10 && p[2] < 10), "JPEG is lossy, barely");

    // The split is a seeded rule: the same seed gives the same split, another seed another.
    let again = dir.path().join("again.h5");
    import_folder(&tree, &again, &options(false)).unwrap();
    assert_eq!(ImageSet::open(&again).unwrap().split, set.split);
    let other: Vec<Vec<u8>> = (2..8)
        .map(|seed| {
            let path = dir.path().join(format!("seed{seed}.h5"));
            import_folder(&tree, &path, &ImportOptions { seed, ..options(false) }).unwrap();
            ImageSet::open(&path).unwrap().split
        })
        .collect();
    assert!(other.iter().any(|s| *s != set.split));

    // No overwrite without force; with force, the file is replaced whole.
    let error = import_folder(&tree, &out, &options(false)).unwrap_err().to_string();
    assert!(error.contains("set.h5") && error.contains("--force"), "{error}");
    import_folder(&tree, &out, &options(true)).unwrap();

    let script = "import h5py, sys; f = h5py.File(sys.argv[1]); \
        print(f.attrs['layout'], f['images'].shape, f['images'].dtype, f['images'].chunks, \
        f['labels'][:].tolist(), [n.decode() for n in f['class_names'][:]], \
        f['paths'][7].decode(), [p.decode() for p in f['skipped/path'][:]])";
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let out = Command::new(python).args(["-c", script]).arg(&out).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "nhwc (8, 8, 8, 3) uint8 (1, 8, 8, 3) [0, 0, 0, 0, 1, 1, 1, 2] ['a', 'b', 'c'] \
         c/only.png ['b/corrupt.png', 'b/unreadable.png']"
    );
}

/// Every micro-batch of `steps` steps of rank `rank` of `world`, concatenated per step.
fn rank_steps(source: &Arc<dyn Source>, world: u32, rank: usize, workers: usize) -> Vec<Tensor> {
    const GLOBAL: u32 = 8;
    let accumulation = 2;
    let micro = GLOBAL / world / accumulation;
    let batches = rank_batches(3, GLOBAL, rank, micro, accumulation);
    let mut loader = Loader::new(Arc::clone(source), batches, 4, 16, workers);
    let mut steps = Vec::new();
    for _ in 0..3 {
        let parts: Vec<Tensor> = (0..accumulation)
            .map(|_| {
                let batch = loader.next_batch().unwrap().unwrap();
                // Masks travel with the images, keyed by the same sample.
                Tensor::cat(&[batch.images.flatten(1, -1), batch.noise], 1)
            })
            .collect();
        steps.push(Tensor::cat(&parts, 0));
    }
    assert!(loader.next_batch().is_none());
    steps
}

/// The global batch of each step, put together from every rank's share.
fn global_steps(source: &Arc<dyn Source>, world: u32, workers: usize) -> Vec<Tensor> {
    let ranks: Vec<Vec<Tensor>> =
        (0..world as usize).map(|r| rank_steps(source, world, r, workers)).collect();
    (0..3).map(|s| Tensor::cat(&ranks.iter().map(|r| &r[s]).collect::<Vec<_>>(), 0)).collect()
}

#[test]
fn same_global_batch_on_1_2_and_4_ranks_with_and_without_prefetching() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    make_tree(&dir.path().join("tree"));
    let path = dir.path().join("set.h5");
    import_folder(&dir.path().join("tree"), &path, &options(false)).unwrap();
    let set = ImageSet::open(&path).unwrap();
    let sources: [Arc<dyn Source>; 2] = [
        Arc::new(SyntheticImages { seed: 4, image_size: 16, channels: 3 }),
        Arc::new(ImageSetSource::new(set, 4, 16, 0.2).unwrap()),
    ];
    for source in &sources {
        let reference = global_steps(source, 1, 0);
        assert!(!reference[0].equal(&reference[1]), "steps see different samples");
        for world in [1, 2, 4] {
            for workers in [0, 1, 3] {
                let steps = global_steps(source, world, workers);
                for (step, (got, want)) in steps.iter().zip(&reference).enumerate() {
                    assert!(got.equal(want), "world {world}, {workers} workers, step {step}");
                }
            }
        }
    }
}

#[test]
fn prefetching_workers_fill_the_queue_ahead_of_a_slow_consumer() {
    let source: Arc<dyn Source> = Arc::new(SyntheticImages { seed: 0, image_size: 8, channels: 3 });
    let mut loader = Loader::new(source, rank_batches(6, 2, 0, 2, 1), 0, 4, 2);
    let mut depths = Vec::new();
    while let Some(batch) = loader.next_batch() {
        depths.push(batch.unwrap().figures.queue_depth);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(depths.len(), 6);
    // Bounded by 2 batches per worker; once the consumer is slow, the queue is full.
    assert!(depths.iter().all(|&d| d <= 4), "{depths:?}");
    assert!(depths[2..5].iter().all(|&d| d >= 2), "{depths:?}");
}
