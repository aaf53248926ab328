//! The handling of a sweep's folder that the local runner and the Slurm submission share:
//! its lock, the experiment file kept beside the results, and a point's fresh folder with an
//! earlier attempt set aside in `.attempts/` (the names are the record format's,
//! [`crate::records::sweep_dir`], which the analysis reads by too).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::supervise::live_launcher;
use super::LaunchError;
use crate::metrics::timestamp;
use crate::plan::{write_point, PointSpec};
use crate::records::fault::Fault;
pub use crate::records::sweep_dir::point_dir;
use crate::records::{sweep_dir, write_atomic};

/// Keeps the experiment file's text beside the results, for replay.
pub(crate) fn write_experiment(sweep_dir: &Path, text: &str) -> Result<(), LaunchError> {
    Ok(write_atomic(&sweep_dir::experiment_file(sweep_dir), text.as_bytes())?)
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
    let lock_path = sweep_dir::lock_file(sweep_dir);
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
    let attempts = sweep_dir::attempts_dir(sweep_dir, point);
    fs::create_dir_all(&attempts).map_err(LaunchError::io(&attempts))?;
    let target = attempts.join(timestamp().replace(':', "-"));
    fs::rename(dir, &target).map_err(LaunchError::io(dir))?;
    Ok(target)
}
