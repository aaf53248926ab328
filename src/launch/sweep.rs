//! Runs every point of a plan in order. Which points run again follows the one retry policy
//! ([`should_run`]); an earlier attempt of a point that runs again is moved into `.attempts/`,
//! never deleted. SIGINT, SIGTERM and SIGHUP stop the point running (finalised as `cancelled`)
//! and the sweep; no point starts after them.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::finalize;
use super::supervise::live_launcher;
use super::{should_run, signals, LaunchError, LocalLauncher, Skip};
use crate::metrics::timestamp;
use crate::plan::{write_point, LaunchSettings, Plan, PointSpec};
use crate::records::fault::Fault;
use crate::records::{hdf5_without_file_locking, write_atomic, Manifest, Outcome};

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

pub fn point_dir(results: &Path, sweep: &str, point: &str) -> PathBuf {
    results.join(sweep).join(point)
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
    write_atomic(&sweep_dir.join("experiment.toml"), options.experiment_text.as_bytes())?;

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

/// Gives a point a fresh folder holding only its `point.json`; an earlier attempt there is
/// moved into `.attempts/`.
pub(crate) fn prepare_point_dir(
    sweep_dir: &Path,
    dir: &Path,
    point: &PointSpec,
) -> Result<(), LaunchError> {
    if let Some((what, stop)) = live_launcher(dir) {
        return Err(LaunchError::LauncherAlive {
            point: point.id.clone(),
            what,
            stop,
            dir: dir.display().to_string(),
        });
    }
    if dir.exists() {
        let kept = set_aside(sweep_dir, dir, &point.id)?;
        tracing::info!(point = %point.id, kept = %kept.display(), "previous attempt moved aside");
    }
    fs::create_dir_all(dir).map_err(LaunchError::io(dir))?;
    Ok(write_point(dir, point)?)
}

/// Creates the sweep's folder and locks it against a second run or submission; the lock lasts
/// as long as the returned file is open.
pub(crate) fn lock_sweep(sweep_dir: &Path, sweep: &str) -> Result<File, LaunchError> {
    fs::create_dir_all(sweep_dir).map_err(LaunchError::io(sweep_dir))?;
    let lock_path = sweep_dir.join(".lock");
    let lock = File::create(&lock_path).map_err(LaunchError::io(&lock_path))?;
    let cannot = |source| LaunchError::CannotLock { path: lock_path.display().to_string(), source };
    if Fault::NoFlock.planted() {
        return Err(cannot(std::io::Error::from_raw_os_error(libc::ENOLCK)));
    }
    // Only "would block" means another run holds it; any other failure is the file system's.
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(LaunchError::Locked(sweep.to_string())),
        Err(std::fs::TryLockError::Error(e)) => Err(cannot(e)),
    }
}

/// Moves a point's folder to `.attempts/<point>/<timestamp>` and returns where it went.
fn set_aside(sweep_dir: &Path, dir: &Path, point: &str) -> Result<PathBuf, LaunchError> {
    let attempts = sweep_dir.join(".attempts").join(point);
    fs::create_dir_all(&attempts).map_err(LaunchError::io(&attempts))?;
    let target = attempts.join(timestamp().replace(':', "-"));
    fs::rename(dir, &target).map_err(LaunchError::io(dir))?;
    Ok(target)
}
