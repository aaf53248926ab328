//! The harness against PyTorch FSDP, side by side in one run: the same MAE, strategy, micro-batch
//! and rank count, both started by torchrun over gloo on this machine, in alternating rounds so
//! that drift and load from the rest of the machine fall on both alike.
//!
//! PyTorch's side is `pytorch_fsdp.py` (FSDP1 with one unit per transformer block, AdamW, fp32,
//! data on hand before the timed loop), embedded in the binary and run with the given torchrun.
//! The harness's side is a gloo point run by `shardsweep worker` under the same torchrun; its
//! step times come from the ranks' spools, less the data phase (PyTorch's side has its data
//! before the timed loop). Each side's figure is the median over timed steps of the slowest
//! rank's step time. FSDP1 on the CPU runs its collectives synchronously (no streams to overlap
//! them on); the harness overlaps them as it does everywhere.
//!
//! With [`Anchor::Eager`] PyTorch's side is the same model in plain eager PyTorch on one device
//! (bf16 autocast for a bf16 point), against a one-rank harness point on that device: the
//! single-GPU comparison of step time and the caching allocator's peak.
//!
//! Either way both sides train exactly the same thing: the same initial weights, each rank's
//! own batches and masking noise as the harness's loader makes them, the harness's learning-rate
//! schedule, and its weight decay (eager: its two groups; FSDP: none on either side, since
//! FSDP1's flat parameters cannot hold two groups). So the two runs' losses are set side by
//! side step by step: the harness's model, sharding and optimizer checked against PyTorch's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::data::{rank_loader, DataError};
use crate::metrics::nan_max;
use crate::plan::{write_point, Backend, PointSpec, Strategy};
use crate::records::{read_spool, spool_path, RecordError};
use crate::train::point_learning_rate;

const SCRIPT: &str = include_str!("pytorch_fsdp.py");

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("the harness's batches for PyTorch's side: {0}")]
    Data(#[from] DataError),
    #[error("cannot start {program}: {source}")]
    Start { program: String, source: std::io::Error },
    #[error("{what} exited with {status}; its output is in {log}")]
    Failed { what: String, status: std::process::ExitStatus, log: String },
    #[error("{path}: {message}")]
    Output { path: String, message: String },
    #[error("no round finished: {}", rounds.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoRound { rounds: Vec<FailedRound> },
}

/// What the harness is set against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// PyTorch FSDP (FSDP1) with the point's strategy and ranks, over gloo on the CPU.
    Fsdp,
    /// Plain PyTorch eager on the point's device, one rank.
    Eager,
}

/// One strategy's result over the rounds that finished: the medians of each side's timed steps,
/// how many there were, on GPUs each side's largest caching-allocator peak over its timed steps,
/// how far apart their losses were, and the rounds that failed twice.
#[derive(Debug)]
pub struct SideBySide {
    pub strategy: Strategy,
    pub harness_s: f64,
    pub pytorch_s: f64,
    pub harness_steps: usize,
    pub pytorch_steps: usize,
    pub torch_version: String,
    pub harness_peak_bytes: Option<u64>,
    pub pytorch_peak_bytes: Option<u64>,
    /// The largest relative difference of a step's loss (the mean over ranks) between the two
    /// sides, |harness - PyTorch| / |PyTorch|, over every step of every round; NaN if a loss
    /// was.
    pub loss_max_rel_diff: f64,
    /// Rounds that finished (each on its first run or its one retry).
    pub rounds: usize,
    /// Rounds that failed on both runs; their folders and logs are kept.
    pub failed: Vec<FailedRound>,
}

impl SideBySide {
    /// How many times faster the harness's step is than PyTorch FSDP's.
    pub fn speedup(&self) -> f64 {
        self.pytorch_s / self.harness_s
    }
}

/// What the PyTorch side writes (`--out`).
#[derive(Deserialize)]
struct PytorchOut {
    torch_version: String,
    step_s: Vec<f64>,
    #[serde(default)]
    peak_allocated_bytes: Option<u64>,
    /// Every step's loss, warm-up included; `null` where it was not finite.
    losses: Vec<Option<f64>>,
}

/// Runs `point` (its strategy, model, micro-batch, ranks on one node, warm-up and steps) on both
/// sides for `rounds` rounds, in `work` (one folder per run: `<name>-<round>`, and
/// `<name>-<round>-retry` for a round run again), with `torchrun`. A round whose run fails is run
/// once more; one that fails twice is reported in [`SideBySide::failed`].
///
/// # Errors
/// `work` already holding this comparison's runs, its batches not written, no round finishing
/// ([`AnchorError::NoRound`], each failure naming its log), or no timed steps.
pub fn side_by_side(
    point: &PointSpec,
    anchor: Anchor,
    exe: &Path,
    torchrun: &str,
    rounds: usize,
    work: &Path,
) -> Result<SideBySide, AnchorError> {
    // No loader thread (PyTorch's side has its data before the timed loop, and on a small
    // machine a busy worker thread takes cores from training): each batch is made inside the
    // step and its time taken out of the step's.
    let mut point = PointSpec {
        settings: crate::plan::Settings { backend: Some(Backend::Gloo), ..point.settings.clone() },
        loader_workers: 0,
        ..point.clone()
    };
    if anchor == Anchor::Fsdp {
        // FSDP1's flat parameters mix what the harness decays with what it does not; with no
        // decay on either side both train the same thing (decay costs nothing extra in the
        // harness's fused kernel, and one multiply per flat parameter in PyTorch's).
        point.optimizer.weight_decay = 0.0;
    }
    std::fs::create_dir_all(work).map_err(RecordError::io(work))?;
    // One name per comparison (model, what the harness is set against, micro-batch), so
    // several share a work folder; none replaces an earlier one's runs.
    let against = match anchor {
        Anchor::Fsdp => point.strategy.name().to_string(),
        Anchor::Eager => format!("eager-{}", point.parallel.param_dtype.name()),
    };
    let name = format!("{}-{against}-mb{}", point.model.name, point.micro_batch);
    let first = work.join(format!("{name}-0"));
    if first.exists() {
        return Err(AnchorError::Output {
            path: first.display().to_string(),
            message: "an earlier comparison's runs are there; choose another --work".into(),
        });
    }
    let batch_files: Vec<PathBuf> = (0..point.world_size())
        .map(|rank| work.join(format!("{name}-batches-rank{rank}.f32")))
        .collect();
    for (rank, file) in batch_files.iter().enumerate() {
        write_batches(&point, rank, file)?;
    }
    let runner = Round { point: &point, anchor, exe, torchrun, batch_files: &batch_files };
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Each round is independent: one that crashes (a side's process killed, a
        // library's teardown aborting) is run once more in a folder of its own, and
        // otherwise reported, never allowed to discard the rounds measured.
        match runner.run(&work.join(format!("{name}-{round}"))) {
            Ok(measured) => done.push(measured),
            Err(first) => {
                tracing::warn!("round {round} failed, running it once more: {first}");
                match runner.run(&work.join(format!("{name}-{round}-retry"))) {
                    Ok(measured) => done.push(measured),
                    Err(retry) => failed.push(FailedRound { round, first, retry }),
                }
            }
        }
    }
    // Made again from the point in a moment if needed; at micro-batch 32 on 224-pixel images
    // they are about 19 MB a step and rank. A comparison with a failed round leaves them, so
    // that its `pytorch.json` can be run again by hand.
    if failed.is_empty() {
        for file in &batch_files {
            std::fs::remove_file(file).map_err(RecordError::io(file))?;
        }
    }
    if done.is_empty() {
        return Err(AnchorError::NoRound { rounds: failed });
    }
    let none = |side: &str| AnchorError::Output {
        path: work.display().to_string(),
        message: format!("{side}: no timed steps (steps must exceed warmup_steps)"),
    };
    let harness: Vec<f64> = done.iter().flat_map(|r| r.harness.step_s.iter().copied()).collect();
    let pytorch: Vec<f64> = done.iter().flat_map(|r| r.pytorch.step_s.iter().copied()).collect();
    Ok(SideBySide {
        strategy: point.strategy,
        harness_s: median(&harness).ok_or_else(|| none("harness"))?,
        pytorch_s: median(&pytorch).ok_or_else(|| none("PyTorch FSDP"))?,
        harness_steps: harness.len(),
        pytorch_steps: pytorch.len(),
        torch_version: done[0].pytorch.torch_version.clone(),
        harness_peak_bytes: done.iter().filter_map(|r| r.harness.peak_bytes).max(),
        pytorch_peak_bytes: done.iter().filter_map(|r| r.pytorch.peak_allocated_bytes).max(),
        loss_max_rel_diff: done.iter().map(|r| r.loss_max_rel_diff).fold(0.0, nan_max),
        rounds: done.len(),
        failed,
    })
}

/// A round that failed twice: its first error and its retry's, each naming its log.
#[derive(Debug)]
pub struct FailedRound {
    pub round: usize,
    pub first: AnchorError,
    pub retry: AnchorError,
}

impl std::fmt::Display for FailedRound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "round {}: {}; run again: {}", self.round, self.first, self.retry)
    }
}

/// What one round runs: both sides of one point, each under torchrun.
struct Round<'a> {
    point: &'a PointSpec,
    anchor: Anchor,
    exe: &'a Path,
    torchrun: &'a str,
    batch_files: &'a [PathBuf],
}

/// One round's measurements on both sides.
struct Measured {
    pytorch: PytorchOut,
    harness: HarnessRun,
    loss_max_rel_diff: f64,
}

impl Round<'_> {
    /// PyTorch's side, then the harness's, in `dir` (created; it must not exist).
    fn run(&self, dir: &Path) -> Result<Measured, AnchorError> {
        let point = self.point;
        std::fs::create_dir_all(dir).map_err(RecordError::io(dir))?;
        let script = dir.join("pytorch_fsdp.py");
        std::fs::write(&script, SCRIPT).map_err(RecordError::io(&script))?;
        let config = dir.join("pytorch.json");
        let settings = pytorch_config(point, self.anchor, self.batch_files);
        crate::records::write_json(&config, &settings)?;
        let out = dir.join("pytorch-out.json");
        let mut python = vec![script.display().to_string()];
        python.extend(["--config".into(), config.display().to_string()]);
        python.extend(["--out".into(), out.display().to_string()]);
        run(self.torchrun, point.world_size(), &python, &dir.join("pytorch.log"), "PyTorch")?;
        let pytorch: PytorchOut = crate::records::read_json(&out)?;
        let pytorch_losses: Vec<f64> =
            pytorch.losses.iter().map(|l| l.unwrap_or(f64::NAN)).collect();

        let point_dir = dir.join("harness");
        std::fs::create_dir_all(&point_dir).map_err(RecordError::io(&point_dir))?;
        write_point(&point_dir, point)?;
        let worker = [
            "--no-python".into(),
            self.exe.display().to_string(),
            "worker".into(),
            point_dir.display().to_string(),
        ];
        let log = dir.join("harness.log");
        run(self.torchrun, point.world_size(), &worker, &log, "the harness")?;
        let harness = read_harness(point, &point_dir)?;
        let loss_max_rel_diff =
            max_rel_diff(&harness.losses, &pytorch_losses).ok_or_else(|| AnchorError::Output {
                path: out.display().to_string(),
                message: format!(
                    "{} losses against the harness's {}",
                    pytorch_losses.len(),
                    harness.losses.len()
                ),
            })?;
        Ok(Measured { pytorch, harness, loss_max_rel_diff })
    }
}

/// Writes `rank`'s micro-batches of `point` (one per step: no accumulation) for every step, as
/// its loader makes them, to `path`: images [steps, micro_batch, channels, size, size], then
/// masking noise [steps, micro_batch, patches], raw little-endian fp32.
fn write_batches(point: &PointSpec, rank: usize, path: &Path) -> Result<(), AnchorError> {
    assert_eq!(point.parallel.accumulation, 1, "one micro-batch a step");
    let mut loader = rank_loader(point, rank, 0)?;
    let file = std::fs::File::create(path).map_err(RecordError::io(path))?;
    let mut file = std::io::BufWriter::new(file);
    // Images in step order go straight to the file; the noise (a patch's worth per image)
    // waits in memory to follow them.
    let mut noise = Vec::new();
    while let Some(batch) = loader.next_batch() {
        let batch = batch?;
        let values = |t: &tch::Tensor| {
            Vec::<f32>::try_from(t.flatten(0, -1)).map_err(|e| AnchorError::Output {
                path: path.display().to_string(),
                message: e.to_string(),
            })
        };
        let images: Vec<u8> = values(&batch.images)?.iter().flat_map(|v| v.to_le_bytes()).collect();
        file.write_all(&images).map_err(RecordError::io(path))?;
        noise.extend(values(&batch.noise)?.iter().flat_map(|v| v.to_le_bytes()));
    }
    file.write_all(&noise).and_then(|()| file.flush()).map_err(RecordError::io(path))?;
    Ok(())
}

/// The harness's learning rate at every step of `point`.
fn lr_schedule(point: &PointSpec) -> Vec<f64> {
    (0..point.settings.steps).map(|step| point_learning_rate(point, step)).collect()
}

/// The largest |a - b| / |b| over paired values, NaN if any is (a diverged loss must not
/// read as agreement); `None` unless both have the same, non-zero length.
fn max_rel_diff(a: &[f64], b: &[f64]) -> Option<f64> {
    (a.len() == b.len() && !a.is_empty())
        .then(|| a.iter().zip(b).map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0, nan_max))
}

/// The PyTorch side's configuration: the point's model, batch, steps and optimizer, the
/// harness's learning rate at every step, and each rank's batches (`data`, in rank order).
fn pytorch_config(point: &PointSpec, anchor: Anchor, data: &[PathBuf]) -> serde_json::Value {
    let m = &point.model;
    let o = &point.optimizer;
    let s = &point.settings;
    serde_json::json!({
        "model": {
            "image_size": m.image_size, "channels": m.channels, "patch": m.patch,
            "width": m.width, "depth": m.depth, "mlp": m.mlp, "heads": m.heads,
            "decoder_width": m.decoder_width, "decoder_depth": m.decoder_depth,
            "decoder_mlp": m.decoder_mlp, "decoder_heads": m.decoder_heads,
            "mask_ratio": m.mask_ratio,
        },
        "micro_batch": point.micro_batch,
        "steps": s.steps - s.warmup_steps,
        "warmup_steps": s.warmup_steps,
        "strategy": match anchor {
            Anchor::Fsdp => point.strategy.name(),
            Anchor::Eager => "eager",
        },
        "device": s.device.name(),
        "param_dtype": point.parallel.param_dtype.name(),
        "threads_per_rank": s.threads_per_rank,
        "seed": s.seed,
        "lr": point.peak_lr(),
        "lr_schedule": lr_schedule(point),
        "data": data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "weight_decay": o.weight_decay, "beta1": o.beta1, "beta2": o.beta2, "eps": o.eps,
    })
}

/// torchrun starting `ranks` copies of `program` (a Python script and its arguments, or
/// `--no-python` and a program) on this machine, output to `log`.
fn run(
    torchrun: &str,
    ranks: u32,
    program: &[String],
    log: &Path,
    what: &str,
) -> Result<(), AnchorError> {
    let file = std::fs::File::create(log).map_err(RecordError::io(log))?;
    let err = file.try_clone().map_err(RecordError::io(log))?;
    let status = Command::new(torchrun)
        .args(["--standalone", "--nproc-per-node", &ranks.to_string()])
        .args(program)
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|source| AnchorError::Start { program: torchrun.into(), source })?;
    if !status.success() {
        return Err(AnchorError::Failed {
            what: what.into(),
            status,
            log: log.display().to_string(),
        });
    }
    Ok(())
}

/// What the harness's side of a round measured.
struct HarnessRun {
    /// The slowest rank's step time, less its data phase, of each step after the warm-up.
    step_s: Vec<f64>,
    /// The largest caching-allocator peak of those steps (GPU runs).
    peak_bytes: Option<u64>,
    /// Every step's loss, the mean over ranks (as PyTorch's side reports it).
    losses: Vec<f64>,
}

fn read_harness(point: &PointSpec, dir: &Path) -> Result<HarnessRun, AnchorError> {
    let warmup = point.settings.warmup_steps as usize;
    let mut peak = None;
    // Folded with `nan_max`: a rank whose time is NaN makes the step's NaN, never its peer's.
    let mut slowest = vec![0.0f64; point.settings.steps as usize];
    let mut losses = vec![0.0f64; slowest.len()];
    let world = point.world_size();
    for rank in 0..world {
        let path: PathBuf = spool_path(dir, rank);
        let spool = read_spool(&path)?;
        if spool.steps.len() != slowest.len() {
            return Err(AnchorError::Output {
                path: path.display().to_string(),
                message: format!("{} steps of {}", spool.steps.len(), slowest.len()),
            });
        }
        for ((s, loss), step) in slowest.iter_mut().zip(&mut losses).zip(&spool.steps) {
            *s = nan_max(*s, step.phases.step_s - step.phases.data_s);
            *loss += step.loss / f64::from(world);
        }
        let device = spool.steps[warmup..].iter().filter_map(|s| s.device_memory.as_ref());
        peak = peak.max(device.map(|d| d.allocated_peak_bytes).max());
    }
    // A time that is not a positive number is no measurement: say which step, never take a
    // median over it.
    if let Some(step) = slowest.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(AnchorError::Output {
            path: dir.display().to_string(),
            message: format!("step {step}: the slowest rank's step time is {}", slowest[step]),
        });
    }
    Ok(HarnessRun { step_s: slowest.split_off(warmup), peak_bytes: peak, losses })
}

fn median(samples: &[f64]) -> Option<f64> {
    (!samples.is_empty()).then(|| super::median(samples.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pytorch_config_carries_the_points_model_and_schedule() {
        let point = crate::bench::bench_point("vit-tiny", 2, 4, 10);
        let files = [PathBuf::from("b0.f32"), PathBuf::from("b1.f32")];
        let config = pytorch_config(&point, Anchor::Fsdp, &files);
        assert_eq!(config["model"]["width"], point.model.width);
        assert_eq!(config["steps"], 10);
        assert_eq!(config["strategy"], "full_shard");
        assert_eq!(config["lr"], point.peak_lr());
        assert_eq!(
            (config["device"].as_str(), config["param_dtype"].as_str()),
            (Some("cpu"), Some("fp32"))
        );
        assert_eq!(config["lr_schedule"].as_array().map(Vec::len), Some(10));
        assert_eq!(config["data"], serde_json::json!(["b0.f32", "b1.f32"]));
        let eager = pytorch_config(&point, Anchor::Eager, &files[..1]);
        assert_eq!(eager["strategy"], "eager");
    }

    #[test]
    fn a_diverged_loss_is_no_agreement() {
        assert_eq!(max_rel_diff(&[1.0, 2.2], &[1.0, 2.0]), Some(0.10000000000000009));
        assert!(max_rel_diff(&[f64::NAN, 2.0], &[1.0, 2.0]).unwrap().is_nan());
        assert!(max_rel_diff(&[2.0, 1.0], &[2.0, f64::NAN]).unwrap().is_nan());
        assert_eq!(max_rel_diff(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(max_rel_diff(&[], &[]), None);
        assert!(nan_max(0.5, f64::NAN).is_nan() && nan_max(f64::NAN, 0.5).is_nan());
    }
}
