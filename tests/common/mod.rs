//! Helpers for tests that run the real `shardsweep` binary (and through it, real mpirun).
//!
//! # Test tiers
//!
//! A plain `cargo test` runs the pure and in-process tests and the short end-to-end ones (a
//! developer's loop). The real-launcher tier runs only when [`TIER_VAR`] is `full`
//! (`SHARDSWEEP_TEST_TIER=full cargo test`, as the README's test command and so CI do): the
//! tests on the local Slurm cluster, the torchrun and PyTorch comparisons, the long probes and
//! sweeps, and every strategy on two backends. Such a test starts with
//! `if !full_tier("why") { return; }`, which says on stderr that it was skipped and why.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The environment variable that selects the test tier: `full` runs every test, anything else
/// (or nothing) leaves the real-launcher tier out.
pub const TIER_VAR: &str = "SHARDSWEEP_TEST_TIER";

/// Whether this test of the real-launcher tier runs: true with `SHARDSWEEP_TEST_TIER=full`.
/// Else it says on stderr (uncaptured) that the test (by its thread's name) is skipped, and `why` it is in
/// the full tier, and returns false: the test then returns without asserting anything.
pub fn full_tier(why: &str) -> bool {
    if std::env::var(TIER_VAR).is_ok_and(|tier| tier == "full") {
        return true;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    // Straight to stderr: `eprintln!` in a test that passes is captured and never shown.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped {test} ({why}): it runs with {TIER_VAR}=full");
    false
}

pub struct Sweep {
    pub dir: tempfile::TempDir,
    pub experiment: PathBuf,
}

impl Sweep {
    /// An experiment file `text` in a fresh folder, with its results beside it. Folders go
    /// under cargo's target tmp dir: sweeps shared through statics are never dropped.
    pub fn new(text: &str) -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let experiment = dir.path().join("experiment.toml");
        std::fs::write(&experiment, text).unwrap();
        Self { dir, experiment }
    }

    pub fn results(&self) -> PathBuf {
        self.dir.path().join("results")
    }

    pub fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardsweep"));
        command.arg("run").arg(&self.experiment).arg("--results").arg(self.results()).args(extra);
        command
    }

    pub fn run(&self, extra: &[&str]) -> Output {
        let output = self.command(extra).output().unwrap();
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        output
    }

    /// `shardsweep <subcommand> <args>` with this sweep's results folder, against the local
    /// Slurm cluster.
    pub fn shardsweep(&self, subcommand: &str, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardsweep"));
        command
            .arg(subcommand)
            .args(args)
            .arg("--results")
            .arg(self.results())
            .env("SLURM_CONF", slurm_conf());
        command.current_dir(env!("CARGO_MANIFEST_DIR"));
        let output = command.output().unwrap();
        eprintln!(
            "$ shardsweep {subcommand} {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    pub fn point(&self, sweep: &str, point: &str) -> PathBuf {
        self.results().join(sweep).join(point)
    }
}

/// An experiment of one small point (vit-tiny, no_shard, one node of two ranks, micro-batch 2)
/// run for `steps` steps.
pub fn one_point(name: &str, steps: u32) -> String {
    format!(
        r#"
name = "{name}"
[axes]
model = ["vit-tiny"]
strategy = ["no_shard"]
nodes = [1]
ranks_per_node = [2]
micro_batch = [2]
[settings]
steps = {steps}
warmup_steps = 1
"#
    )
}

pub fn manifest(point_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(point_dir.join("manifest.json")).unwrap()).unwrap()
}

/// A [ranks, steps] dataset of `records.h5`.
pub fn table(file: &hdf5::File, name: &str) -> ndarray::Array2<f64> {
    file.dataset(name).unwrap().read_2d::<f64>().unwrap()
}

pub fn column<T: hdf5::H5Type>(file: &hdf5::File, name: &str) -> Vec<T> {
    file.dataset(name).unwrap().read_raw::<T>().unwrap()
}

/// Per step, the mean over ranks of the ranks' losses: the loss on the global batch.
pub fn global_losses(point_dir: &Path) -> Vec<f64> {
    let file = hdf5::File::open(point_dir.join("records.h5")).unwrap();
    let loss = table(&file, "steps/loss");
    loss.columns().into_iter().map(|c| c.mean().unwrap()).collect()
}

/// The one-node Slurm cluster of `slurm/local/cluster.sh`, started once (idempotently) for all
/// tests of a file; returns its `SLURM_CONF`.
pub fn slurm_conf() -> &'static Path {
    static CONF: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CONF.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/local/cluster.sh");
        let output = Command::new(&script).arg("up").output().unwrap();
        assert!(
            output.status.success(),
            "the local Slurm cluster did not start:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let env = Command::new(&script).arg("env").output().unwrap();
        let line = String::from_utf8(env.stdout).unwrap();
        PathBuf::from(
            line.trim()
                .strip_prefix("export SLURM_CONF=")
                .expect("cluster.sh env prints SLURM_CONF"),
        )
    })
}

/// Waits until rank 0 of `point_dir` has finished `steps` steps.
pub fn wait_for_steps(point_dir: &std::path::Path, steps: usize) {
    let spool = point_dir.join("ranks/rank-00000.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while std::fs::read_to_string(&spool)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"type\":\"step\""))
        .count()
        < steps
    {
        assert!(std::time::Instant::now() < deadline, "the point never got going");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// What a finished `shardsweep` command left: its exit code (-1 if a signal ended it), its
/// stdout and its stderr.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `shardsweep ARGS` from the crate root, whatever its exit status.
pub fn shardsweep_run(args: &[&std::ffi::OsStr]) -> Ran {
    let out = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// `shardsweep ARGS` from the crate root: its stdout, once it succeeded (else a panic with its
/// stderr).
pub fn shardsweep_ok(args: &[&std::ffi::OsStr]) -> String {
    let ran = shardsweep_run(args);
    assert!(ran.code == 0, "{}", ran.stderr);
    ran.stdout
}
