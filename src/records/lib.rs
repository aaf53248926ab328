//! The record format: what each rank measured and how each point ended, as the harness writes
//! it and the analysis reads it (both through these types; serde and HDF5 only).
//!
//! While a point runs, each rank appends one JSON line per step to `ranks/rank-NNNNN.jsonl`
//! (flushed every step, so a crash loses at most the step in flight). When the run ends, however
//! it ends, the harness turns those spools into `records.h5` ([`write_records`]) and writes
//! `manifest.json` last: a manifest is the mark of a point that has been accounted for. Both are
//! written atomically ([`write_atomic`]). Readers check [`SCHEMA_VERSION`].

#![warn(missing_docs)]

mod atomic;
mod axis;
mod config;
pub mod fault;
mod fingerprint;
mod hdf5_file;
mod hdf5_read;
mod manifest;
pub mod measured;
mod probe;
mod schema;
mod spool;
pub mod sweep_dir;

pub use atomic::{temporary_path, write_atomic, write_atomic_with};
pub use axis::Axis;
pub use config::{
    Backend, BackwardPrefetch, DeviceKind, Dtype, ModelName, ParallelSpec, PointConfig,
    PointSettings, Strategy, SystemSpec, Timing,
};
pub use fingerprint::{Fingerprint, LoadedLibrary, DRIVER_MODULES};
pub use hdf5_file::{
    hdf5_without_file_locking, read_parameters, write_hdf5_atomic, write_parameters, write_records,
    RecordsHeader,
};
pub use hdf5_read::RecordsReader;
pub use manifest::{Manifest, Outcome, Provenance, RankLayout, SchedulerInfo};
pub use probe::{Encoder, Pool, ProbeResult};
pub use schema::{
    CollectiveKind, CollectiveRecord, DeviceMemoryRecord, LoaderRecord, MemoryRecord, Phases,
    RankInfo, SpoolLine, StepRecord, UnitRecord, SCHEMA_VERSION,
};
pub use spool::{read_spool, spool_path, RankSpool, SpoolWriter};

use std::path::PathBuf;

// File names inside a point's folder.

/// The point's account, written last ([`Manifest`]).
pub const MANIFEST_FILE: &str = "manifest.json";
/// Every rank's steps in HDF5, made from the spools when the run ends ([`write_records`]).
pub const RECORDS_FILE: &str = "records.h5";
/// Final parameters, if the point asked for them: one fp32 dataset per unit, named after it.
pub const PARAMETERS_FILE: &str = "parameters.h5";
/// The resolved point configuration, written before the ranks start ([`PointConfig`] reads it).
pub const POINT_FILE: &str = "point.json";
/// The folder of the ranks' spools (`rank-NNNNN.jsonl`, [`spool_path`]).
pub const RANKS_DIR: &str = "ranks";
/// The launcher's standard output (all ranks' together).
pub const STDOUT_FILE: &str = "stdout.log";
/// The launcher's standard error (all ranks' together).
pub const STDERR_FILE: &str = "stderr.log";

/// Why a record file could not be read or written; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading, writing or renaming the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder the operation was on.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The HDF5 library failed on the file (missing, truncated, a missing dataset).
    #[error("{}: {source}", path.display())]
    Hdf5 {
        /// The HDF5 file.
        path: PathBuf,
        /// What the HDF5 library said.
        source: hdf5::Error,
    },
    /// The file's JSON did not parse as the expected type, or a value did not serialise.
    #[error("{}: {source}", path.display())]
    Json {
        /// The JSON file (or spool) read or written.
        path: PathBuf,
        /// What serde_json said, with the line and column.
        source: serde_json::Error,
    },
    /// Another record schema version wrote the file.
    #[error("{}: written with record schema version {found}; this build reads version {expected} (re-run the point, or analyse it with the shardsweep version that wrote it)", path.display())]
    Schema {
        /// The record file.
        path: PathBuf,
        /// The version the file states (a manifest without one reads as 0).
        found: u32,
        /// The version this build reads ([`SCHEMA_VERSION`]).
        expected: u32,
    },
}

impl RecordError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| RecordError::Io { path: path.to_path_buf(), source }
    }

    /// Wraps an HDF5 error with the path of the file it happened in.
    pub fn hdf5(path: &std::path::Path) -> impl Fn(hdf5::Error) -> Self + '_ {
        move |source| RecordError::Hdf5 { path: path.to_path_buf(), source }
    }
}

/// Reads a JSON record file (`point.json`, `manifest.json`, a ledger) into `T`.
///
/// # Errors
/// [`RecordError::Io`] if it cannot be read, [`RecordError::Json`] if it does not parse as `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, RecordError> {
    let bytes = std::fs::read(path).map_err(RecordError::io(path))?;
    serde_json::from_slice(&bytes)
        .map_err(|source| RecordError::Json { path: path.to_path_buf(), source })
}

/// Writes `value` as pretty JSON to `path` atomically ([`write_atomic`]).
pub fn write_json<T: serde::Serialize>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), RecordError> {
    let json = serde_json::to_vec_pretty(value)
        .map_err(|source| RecordError::Json { path: path.to_path_buf(), source })?;
    write_atomic(path, &json)
}

/// Checks a record file's schema version against the one this build reads.
///
/// # Errors
/// [`RecordError::Schema`] naming the file and both versions.
pub fn check_schema(path: &std::path::Path, found: u32) -> Result<(), RecordError> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(RecordError::Schema { path: path.to_path_buf(), found, expected: SCHEMA_VERSION })
    }
}
