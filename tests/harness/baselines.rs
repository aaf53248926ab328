//! `bundle` and `history` through the binaries: a bundle made by `shardsweep-lite` compares in
//! `shardsweep` as its folder does, a tampered one is refused, and `history` over folders and
//! a bundle finds the change where it was planted and writes beside the bundle by default.

use std::path::Path;
use std::process::{Command, Output};

use crate::fixture::{noise, Point};

/// Run `k` of a nightly sweep: two points, backward 15% slower and torch 2.14.0 from run 3 on.
fn write_run(dir: &Path, k: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let factor = if k >= 3 { 1.15 } else { 1.0 };
    for (name, nodes) in [("a", 1), ("b", 2)] {
        let mut p = Point::new(name, nodes, 40);
        p.phases = Box::new(move |r, s| {
            let n = |i: u64| 1.0 + 0.02 * noise(k * 10 + i, r, s);
            [0.01 * n(1), 0.1 * n(2), 0.2 * factor * n(3), 0.03 * n(4), 0.0]
        });
        p.torch_version = if k >= 3 { "2.14.0" } else { "2.13.0" }.into();
        let path = p.write(dir).join("manifest.json");
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        manifest["started_at"] = format!("2026-01-0{k}T02:00:00Z").into();
        std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    }
}

fn run(binary: &str, args: &[&str], cwd: &Path) -> Output {
    let output = Command::new(binary).args(args).current_dir(cwd).output().unwrap();
    eprintln!(
        "$ {binary} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn bundles_compare_as_their_folders_and_history_finds_the_planted_change() {
    let (lite, full) = (env!("CARGO_BIN_EXE_shardsweep-lite"), env!("CARGO_BIN_EXE_shardsweep"));
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cwd = root.path();
    for k in 1..=5 {
        write_run(&cwd.join(format!("nightly-0{k}")), k);
    }
    let made = run(lite, &["bundle", "nightly-01", "-o", "before.tar.zst"], cwd);
    assert!(made.status.success());
    let again = run(lite, &["bundle", "nightly-01", "-o", "before.tar.zst"], cwd);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(run(full, &["bundle", "nightly-01", "-o", "before.tar.zst", "--force"], cwd)
        .status
        .success());
    assert!(run(full, &["bundle", "nightly-05"], cwd).status.success(), "default name");
    assert!(cwd.join("nightly-05.tar.zst").is_file());

    let folders = run(full, &["compare", "nightly-01", "nightly-02", "--out", "folders"], cwd);
    let bundled = run(full, &["compare", "before.tar.zst", "nightly-02", "--out", "bundled"], cwd);
    assert!(folders.status.success() && bundled.status.success());
    let csv = |dir: &str| std::fs::read_to_string(cwd.join(dir).join("comparison.csv")).unwrap();
    assert_eq!(csv("bundled"), csv("folders"));
    assert_eq!(bundled.stdout, folders.stdout, "the same table");

    // One byte of a record file changed inside the archive.
    let bytes = zstd::decode_all(std::fs::File::open(cwd.join("before.tar.zst")).unwrap()).unwrap();
    let mut tar = bytes.clone();
    let at = bytes.windows(4).position(|w| w == b"\x89HDF").unwrap() + 600;
    tar[at] ^= 0xff;
    std::fs::write(cwd.join("tampered.tar.zst"), zstd::encode_all(tar.as_slice(), 3).unwrap())
        .unwrap();
    let refused = run(full, &["compare", "tampered.tar.zst", "nightly-02"], cwd);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && message.contains("a/records.h5"), "{message}");

    let history = run(
        lite,
        &["history", "nightly-04", "nightly-01", "nightly-05.tar.zst", "nightly-02", "nightly-03"],
        cwd,
    );
    assert!(history.status.success());
    let table = String::from_utf8_lossy(&history.stdout);
    assert!(table.contains("ordered by start time"), "{table}");
    let steps: Vec<&str> = table.lines().filter(|l| l.contains("step_s")).collect();
    assert_eq!(steps.len(), 2, "{table}");
    assert!(
        steps.iter().all(|l| l.contains("nightly-03: +7.") && l.contains("torch_version")),
        "{table}"
    );
    // The last run is the bundle: the history goes beside it, not into its unpacked copy.
    let out = cwd.join("nightly-05/report/history");
    for file in ["history.jsonl", "history.csv", "bmf/nightly-05.json", "otava/otava.yaml"] {
        assert!(out.join(file).is_file(), "{file}");
    }
}
