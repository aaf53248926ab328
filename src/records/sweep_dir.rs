//! The sweep's folder, `<results>/<sweep>/`: the names of what it holds beside its points'
//! folders, for the runner, the Slurm submission and the analysis alike.
//!
//! ```text
//! <sweep>/experiment.toml          the experiment file's text as last run or submitted
//! <sweep>/<point>/                 one point (manifest.json, records.h5, point.json, ...)
//! <sweep>/.attempts/<point>/<time> earlier attempts of a point, set aside, never deleted
//! <sweep>/.lock                    held (flock) by the run or submission of the sweep
//! <sweep>/.analysis.lock           held by an analysis of the sweep
//! <sweep>/local_peak.json          the measured matrix-multiply rate local MFU stands on
//! <sweep>/calibration.json         a calibration, placed there: `analyze` then compares
//!                                  each point with its prediction
//! <sweep>/slurm/ledger.jsonl       every Slurm job of the sweep (ledger.json before)
//! ```

use std::path::{Path, PathBuf};

/// The experiment file's text as last run or submitted.
pub const EXPERIMENT_FILE: &str = "experiment.toml";
/// Earlier attempts of points, set aside (`.attempts/<point>/<time>`), never deleted.
pub const ATTEMPTS_DIR: &str = ".attempts";
/// Held (flock) by the run or submission of the sweep.
pub const LOCK_FILE: &str = ".lock";
/// Held (flock) by an analysis of the sweep.
pub const ANALYSIS_LOCK_FILE: &str = ".analysis.lock";
/// The measured matrix-multiply rate that local MFU is measured against.
pub const LOCAL_PEAK_FILE: &str = "local_peak.json";
/// A calibration placed in the sweep: `analyze` then compares each point with its prediction.
pub const CALIBRATION_FILE: &str = "calibration.json";
/// Batch scripts (`submission-NNN/`, `dry-run/`) and the ledger.
pub const SLURM_DIR: &str = "slurm";
/// The journal of every Slurm job of the sweep, one JSON line per entry, in `slurm/`.
pub const LEDGER_FILE: &str = "ledger.jsonl";
/// The ledger as one JSON document, as versions before the journal wrote it.
pub const LEGACY_LEDGER_FILE: &str = "ledger.json";

/// `<results>/<sweep>/<point>`.
pub fn point_dir(results: &Path, sweep: &str, point: &str) -> PathBuf {
    results.join(sweep).join(point)
}

/// The sweep folder a point's folder is in.
pub fn sweep_of(point_dir: &Path) -> Option<&Path> {
    point_dir.parent()
}

/// `<sweep>/experiment.toml`.
pub fn experiment_file(sweep_dir: &Path) -> PathBuf {
    sweep_dir.join(EXPERIMENT_FILE)
}

/// `<sweep>/.lock`.
pub fn lock_file(sweep_dir: &Path) -> PathBuf {
    sweep_dir.join(LOCK_FILE)
}

/// `<sweep>/.analysis.lock`.
pub fn analysis_lock_file(sweep_dir: &Path) -> PathBuf {
    sweep_dir.join(ANALYSIS_LOCK_FILE)
}

/// `<sweep>/local_peak.json`.
pub fn local_peak_file(sweep_dir: &Path) -> PathBuf {
    sweep_dir.join(LOCAL_PEAK_FILE)
}

/// `<sweep>/calibration.json`.
pub fn calibration_file(sweep_dir: &Path) -> PathBuf {
    sweep_dir.join(CALIBRATION_FILE)
}

/// `<sweep>/slurm/`.
pub fn slurm_dir(sweep_dir: &Path) -> PathBuf {
    sweep_dir.join(SLURM_DIR)
}

/// `<sweep>/slurm/ledger.jsonl`.
pub fn ledger_file(sweep_dir: &Path) -> PathBuf {
    slurm_dir(sweep_dir).join(LEDGER_FILE)
}

/// `<sweep>/slurm/ledger.json`, read when the journal is absent.
pub fn legacy_ledger_file(sweep_dir: &Path) -> PathBuf {
    slurm_dir(sweep_dir).join(LEGACY_LEDGER_FILE)
}

/// `<sweep>/.attempts/<point>/`: where the point's earlier attempts are kept.
pub fn attempts_dir(sweep_dir: &Path, point: &str) -> PathBuf {
    sweep_dir.join(ATTEMPTS_DIR).join(point)
}

/// Attempts of `point` set aside so far (0 when none, or the folder cannot be read).
pub fn attempts_set_aside(sweep_dir: &Path, point: &str) -> u32 {
    std::fs::read_dir(attempts_dir(sweep_dir, point)).map_or(0, |d| d.count() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_aside_attempts_are_counted_per_point() {
        let dir = std::env::temp_dir().join(format!("shardsweep-sweep-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(attempts_set_aside(&dir, "p"), 0);
        for time in ["t1", "t2"] {
            std::fs::create_dir_all(attempts_dir(&dir, "p").join(time)).unwrap();
        }
        std::fs::create_dir_all(attempts_dir(&dir, "q").join("t1")).unwrap();
        assert_eq!((attempts_set_aside(&dir, "p"), attempts_set_aside(&dir, "q")), (2, 1));
        assert_eq!(sweep_of(&point_dir(Path::new("r"), "s", "p")), Some(Path::new("r/s")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
