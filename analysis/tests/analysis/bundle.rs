//! Bundles: a sweep packed into one file compares exactly as its folder does; a bundle that was
//! altered, truncated or given an extra file is refused, naming the file.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::fixture::{noise, sweep, Point};
use shardsweep_analysis::bundle::{
    open_sweep, write_bundle, BundleError, BundleOptions, Harness, BUNDLE_FILE,
};
use shardsweep_analysis::report::compare_sweeps;
use shardsweep_analysis::CompareOptions;

fn options(force: bool) -> BundleOptions {
    BundleOptions { force, harness: Harness { version: "0.1.0".into(), commit: "abc".into() } }
}

/// Two points of 40 noisy steps; `slow` scales point b's backward phase.
fn write_sweep(dir: &Path, seed: u64, slow: f64) {
    for (name, nodes) in [("a", 1), ("b", 2)] {
        let mut p = Point::new(name, nodes, 40);
        let factor = if name == "b" { slow } else { 1.0 };
        p.phases = Box::new(move |r, s| {
            let n = |k: u64| 1.0 + 0.02 * noise(seed * 10 + k, r, s);
            [0.01 * n(1), 0.1 * n(2), 0.2 * factor * n(3), 0.03 * n(4), 0.0]
        });
        p.write(dir);
    }
    // What a real sweep folder holds beside the points.
    let write = |path: PathBuf, text: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(dir.join("experiment.toml"), "name = \"x\"\n");
    write(dir.join("slurm/job-001.sh"), "#!/bin/bash\nsrun shardsweep supervise\n");
    write(dir.join("a/job.sh"), "#!/bin/bash\n");
    write(dir.join("a/ranks/rank-00000.jsonl"), "{}\n");
    write(dir.join("a/stdout.log"), "log\n");
    write(dir.join(".attempts/a/1/manifest.json"), "{}");
}

/// The bundle's archive rewritten by `change` (member name, contents) -> new contents, or
/// `None` to drop it; `extra` members appended before bundle.json.
fn rewrite(
    bundle: &Path,
    to: &Path,
    change: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>,
    extra: &[(&str, &[u8])],
) {
    let bytes = zstd::decode_all(std::fs::File::open(bundle).unwrap()).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut builder = tar::Builder::new(Vec::new());
    let append = |builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, data).unwrap();
    };
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if name == BUNDLE_FILE {
            for (extra_name, extra_data) in extra {
                append(&mut builder, extra_name, extra_data);
            }
        }
        if let Some(data) = change(&name, data) {
            append(&mut builder, &name, &data);
        }
    }
    let tar = builder.into_inner().unwrap();
    std::fs::write(to, zstd::encode_all(tar.as_slice(), 3).unwrap()).unwrap();
}

#[test]
fn a_bundle_compares_exactly_as_its_folder_does() {
    let (root, before) = sweep("before");
    write_sweep(&before, 1, 1.0);
    let after = root.path().join("after");
    write_sweep(&after, 2, 1.10);
    let compare = |b: &Path, a: &Path, out: &str| {
        let (c, _) =
            compare_sweeps(b, a, &root.path().join(out), &CompareOptions::default()).unwrap();
        format!("{:?} {:?} {:?}", c.environment, c.changes, c.unmatched)
    };
    let from_folders = compare(&before, &after, "out-folders");

    let file = root.path().join("before.tar.zst");
    let account = write_bundle(&before, &file, &options(false)).unwrap();
    assert_eq!(account.sweep, "before");
    let paths: Vec<&str> = account.files.iter().map(|f| f.path.as_str()).collect();
    for carried in [
        "a/manifest.json",
        "a/records.h5",
        "a/job.sh",
        "b/manifest.json",
        "b/records.h5",
        "experiment.toml",
        "slurm/job-001.sh",
    ] {
        assert!(paths.contains(&carried), "{carried} not in {paths:?}");
    }
    assert!(paths
        .iter()
        .all(|p| !p.contains("ranks") && !p.contains("tidy") && !p.ends_with(".log")));
    let left: Vec<&str> = account.left_out.iter().map(|l| l.path.as_str()).collect();
    for skipped in [".attempts/", "tidy/", "a/ranks/", "a/stdout.log"] {
        assert!(left.contains(&skipped), "{skipped} not in {left:?}");
    }
    assert!(account.files.iter().all(|f| f.sha256.len() == 64));

    // An existing bundle is kept unless forced.
    assert!(matches!(write_bundle(&before, &file, &options(false)), Err(BundleError::Exists(_))));
    write_bundle(&before, &file, &options(true)).unwrap();

    let opened = open_sweep(&file).unwrap();
    assert_eq!(opened.name(), "before");
    assert_eq!(opened.dir().file_name().unwrap(), "before");
    assert_eq!(opened.home(), root.path().join("before"));
    assert!(opened.dir().join("slurm/job-001.sh").is_file());
    assert!(!opened.dir().join("a/ranks").exists());
    assert_eq!(compare(opened.dir(), &after, "out-bundle"), from_folders);

    // The unpacked copy lasts as long as its source; a folder opens as itself.
    let unpacked = opened.dir().to_path_buf();
    drop(opened);
    assert!(!unpacked.exists());
    let folder = open_sweep(&before).unwrap();
    assert_eq!(folder.dir(), before);
    assert!(folder.account().is_none());
}

#[test]
fn an_altered_truncated_or_padded_bundle_is_refused_naming_the_file() {
    let (root, dir) = sweep("nightly");
    write_sweep(&dir, 1, 1.0);
    let file = root.path().join("nightly.tar.zst");
    write_bundle(&dir, &file, &options(false)).unwrap();
    open_sweep(&file).expect("the bundle as written opens");

    // One byte of a manifest changed, its size kept: the digest differs.
    let tampered = root.path().join("tampered.tar.zst");
    rewrite(
        &file,
        &tampered,
        |name, mut data| {
            if name == "nightly/a/manifest.json" {
                let at = data.iter().position(|&b| b == b'7').unwrap_or(10);
                data[at] = if data[at] == b'8' { b'9' } else { b'8' };
            }
            Some(data)
        },
        &[],
    );
    let message = open_sweep(&tampered).unwrap_err().to_string();
    assert!(message.contains("a/manifest.json") && message.contains("SHA-256"), "{message}");

    // A file removed, one added.
    let dropped = root.path().join("dropped.tar.zst");
    rewrite(&file, &dropped, |name, data| (name != "nightly/b/records.h5").then_some(data), &[]);
    let error = open_sweep(&dropped).unwrap_err();
    assert!(
        matches!(&error, BundleError::Missing { file, .. } if file == "b/records.h5"),
        "{error}"
    );
    let padded = root.path().join("padded.tar.zst");
    rewrite(&file, &padded, |_, data| Some(data), &[("nightly/c/manifest.json", b"{}")]);
    let error = open_sweep(&padded).unwrap_err();
    assert!(
        matches!(&error, BundleError::Unlisted { file, .. } if file == "c/manifest.json"),
        "{error}"
    );
    let escaping = root.path().join("escaping.tar.zst");
    rewrite(&file, &escaping, |_, data| Some(data), &[("other/x.json", b"{}")]);
    assert!(matches!(open_sweep(&escaping), Err(BundleError::UnsafeEntry { .. })));

    // Cut short: the archive cannot be read to its end.
    let bytes = std::fs::read(&file).unwrap();
    let truncated = root.path().join("truncated.tar.zst");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let message = open_sweep(&truncated).unwrap_err().to_string();
    assert!(message.contains("truncated.tar.zst"), "{message}");
    assert!(message.contains("truncated or corrupted"), "{message}");

    // Neither a folder nor a file.
    assert!(matches!(open_sweep(&root.path().join("absent")), Err(BundleError::NotFound(_))));
}
