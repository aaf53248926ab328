//! Runs every point of a plan in order. Which points run again follows the one retry policy
//! ([`should_run`]); an earlier attempt of a point that runs again is moved into `.attempts/`,
//! never deleted. SIGINT, SIGTERM and SIGHUP stop the point running (finalised as `cancelled`)
//! and the sweep; no point starts after them.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::finalize;
use super::folder::{lock_sweep, point_dir, prepare_point_dir, write_experiment};
use super::{should_run, signals, LaunchError, LocalLauncher, Skip};
use crate::plan::{LaunchSettings, Plan, PointSpec};
use crate::records::{hdf5_without_file_locking, Manifest, Outcome};

pub struct SweepOptions {
    /// Results root; the sweep writes to `<root>/<sweep>/<point>/`.
    pub results: PathBuf,
    /// Re-run points that already finished (their old results are kept under `.attempts/`).
    pub force: bool,
    /// Re-run points that ended oom or nan_loss too.
    pub retry: bool,
    /// Run without the sweep's lock (for file systems without `flock()`).
    pub no_lock: bool,
    /// The experiment file's text, kept beside the results for replay.
    pub experiment_text: String,
    pub exe: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PointResult {
    pub id: String,
    pub outcome: Outcome,
    /// True if the point had already finished and was not run again.
    pub skipped: bool,
    pub message: Option<String>,
}

pub fn run_sweep(
    plan: &Plan,
    launch: &LaunchSettings,
    options: &SweepOptions,
) -> Result<Vec<PointResult>, LaunchError> {
    let sweep_dir = options.results.join(&plan.sweep);
    let _lock = if options.no_lock {
        fs::create_dir_all(&sweep_dir).map_err(LaunchError::io(&sweep_dir))?;
        tracing::warn!(sweep = %plan.sweep, "running without the sweep's lock (--no-lock): a second run of this sweep started meanwhile would overwrite this one's points");
        None
    } else {
        Some(lock_sweep(&sweep_dir, &plan.sweep)?)
    };
    let _signals = signals::catch();
    hdf5_without_file_locking();
    write_experiment(&sweep_dir, &options.experiment_text)?;

    let launcher = LocalLauncher {
        mpirun: launch.mpirun.clone(),
        extra_args: launch.mpirun_args.clone(),
        exe: options.exe.clone(),
    };
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    let sweep_bar = bars.add(ProgressBar::new(plan.points.len() as u64));
    sweep_bar.set_style(
        ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {pos}/{len} points, {elapsed} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    sweep_bar.set_prefix(plan.sweep.clone());

    let mut results = Vec::new();
    for point in &plan.points {
        let dir = point_dir(&options.results, &plan.sweep, &point.id);
        if let Some(stop) = signals::interrupted() {
            tracing::warn!(signal = stop.name(), "stopping: no further point is started");
            break;
        }
        let previous = Manifest::read(&dir).ok().flatten();
        if let Err(skip) =
            should_run(previous.as_ref(), &point.digest(), options.force, options.retry)
        {
            match skip {
                Skip::Finished => {
                    tracing::info!(point = %point.id, "already finished; skipping (use --force to run it again)")
                }
                Skip::WouldRepeat(_) => {
                    tracing::warn!(point = %point.id, "not run again: {}", skip.reason())
                }
            }
            let m = previous.expect("a skipped point has a manifest");
            results.push(PointResult {
                id: point.id.clone(),
                outcome: m.outcome,
                skipped: true,
                message: m.message,
            });
            sweep_bar.inc(1);
            continue;
        }
        prepare_point_dir(&sweep_dir, &dir, point)?;
        let point_bar = bars.add(ProgressBar::new(u64::from(point.settings.steps)));
        point_bar.set_style(
            ProgressStyle::with_template("  {prefix} [{bar:30}] {pos}/{len} steps {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        point_bar.set_prefix(point.id.clone());
        let manifest = run_point(&launcher, point, &dir, launch.timeout_s, |steps| {
            point_bar.set_position(u64::from(steps))
        })?;
        point_bar.finish_and_clear();
        bars.remove(&point_bar);
        let outcome = manifest.outcome;
        match outcome {
            Outcome::Ok => {
                tracing::info!(point = %point.id, duration_s = manifest.duration_s, "ok")
            }
            _ => {
                tracing::warn!(point = %point.id, outcome = outcome.name(), message = manifest.message.as_deref().unwrap_or(""), "point did not finish")
            }
        }
        results.push(PointResult {
            id: point.id.clone(),
            outcome,
            skipped: false,
            message: manifest.message,
        });
        sweep_bar.inc(1);
        if signals::interrupted().is_some() {
            break;
        }
    }
    sweep_bar.finish();
    Ok(results)
}

/// Runs one point in its prepared `dir` and returns its manifest.
fn run_point(
    launcher: &LocalLauncher,
    point: &PointSpec,
    dir: &Path,
    timeout_s: u64,
    mut progress: impl FnMut(u32),
) -> Result<Manifest, LaunchError> {
    let end = launcher
        .run(point, dir, Duration::from_secs(timeout_s), |status| progress(status.steps_done))?;
    Ok(finalize(dir, point, &end)?)
}
