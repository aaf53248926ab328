//! Record files: what each rank measured and how each point ended.
//!
//! While a point runs, each rank appends one JSON line per step to `ranks/rank-NNNNN.jsonl`
//! (flushed every step, so a crash loses at most the step in flight). When the run ends, however
//! it ends, [`finalize`] turns those spools into `records.h5` and writes `manifest.json` last:
//! a manifest is the mark of a point that has been accounted for. Both are written atomically.

mod atomic;
pub mod fault;
mod finalize;
mod hdf5_file;
mod manifest;
mod schema;
mod spool;

pub use atomic::write_atomic;
pub use finalize::{classify, earlier_attempts, finalize, RunEnd};
pub use hdf5_file::{hdf5_without_file_locking, write_parameters, write_records, RecordsHeader};
pub use manifest::{Manifest, Outcome, Provenance, RankLayout, SchedulerInfo};
pub use schema::{
    CollectiveKind, CollectiveRecord, MemoryRecord, Phases, RankInfo, SpoolLine, StepRecord,
    UnitRecord, SCHEMA_VERSION,
};
pub use spool::{read_spool, spool_path, RankSpool, SpoolWriter};

/// Now, as an RFC 3339 UTC timestamp with microseconds.
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// File names inside a point's folder.
pub const MANIFEST_FILE: &str = "manifest.json";
pub const RECORDS_FILE: &str = "records.h5";
/// Final parameters, if the point asked for them: one fp32 dataset per unit, named after it.
pub const PARAMETERS_FILE: &str = "parameters.h5";
pub const POINT_FILE: &str = "point.json";
pub const RANKS_DIR: &str = "ranks";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Hdf5 { path: String, source: hdf5::Error },
    #[error("{path}: {source}")]
    Json { path: String, source: serde_json::Error },
}

/// Writes the point a folder is for (`point.json`), which the worker and the supervisor read.
pub fn write_point(
    dir: &std::path::Path,
    point: &crate::plan::PointSpec,
) -> Result<(), RecordError> {
    let json = serde_json::to_vec_pretty(point).expect("a point serialises");
    write_atomic(&dir.join(POINT_FILE), &json)
}

/// The point a folder is for, as [`write_point`] left it.
pub fn read_point(dir: &std::path::Path) -> Result<crate::plan::PointSpec, RecordError> {
    let path = dir.join(POINT_FILE);
    let bytes = std::fs::read(&path).map_err(RecordError::io(&path))?;
    serde_json::from_slice(&bytes)
        .map_err(|source| RecordError::Json { path: path.display().to_string(), source })
}

impl RecordError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| RecordError::Io { path: path.display().to_string(), source }
    }
}
