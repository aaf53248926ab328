//! Analysis of shardsweep records. It reads only record files (`manifest.json` and
//! `records.h5` of each point), through the record format's own types (`shardsweep-records`,
//! which the harness writes with), never the harness's training code; any tool that reads the
//! same files sees the same numbers.
//!
//! records -> [`tidy`] store (Parquet) -> [`summary`] per point (steady state, statistics, MFU,
//! [`scaling`], [`breakdown`]) -> [`stragglers`], [`compare`] -> [`plot`]s and [`report`].
//! Across many runs of the same points: [`history`] (with [`changepoint`]s and the
//! [`export`]s dashboards read); a sweep kept as one file: [`bundle`].

pub mod bench;
pub mod breakdown;
pub mod bundle;
pub mod changepoint;
pub mod compare;
pub mod export;
pub mod history;
mod history_plot;
mod load;
mod pipeline;
mod plot;
mod point_steps;
pub mod predicted;
mod probe;
pub mod report;
pub mod scaling;
pub mod series;
pub mod stats;
pub mod steady;
pub mod stragglers;
pub mod summary;
pub mod tidy;
pub mod trace;

pub use compare::{compare, CompareOptions, Comparison, Verdict};
pub use load::{load_points, read_manifest, PointRecords};
pub use report::{analyze_sweep, summarize_sweep, Report};
pub use summary::{summarize, PointSummary};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    /// No finished point's records under the sweep folder.
    #[error("no finished records under {}", .0.display())]
    Empty(PathBuf),
    /// Part of the tidy store at `dir` came out empty.
    #[error("the tidy store {}: {what}", dir.display())]
    EmptyStore { dir: PathBuf, what: EmptyPart },
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("plot {}: {message}", path.display())]
    Plot { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Record(#[from] shardsweep_records::RecordError),
    #[error("no point could be compared:\n  {}", if .0.is_empty() { "neither set has a point".to_string() } else { .0.join("\n  ") })]
    NothingCompared(Vec<String>),
    #[error("{side} {}: {source}", path.display())]
    CompareSide { side: &'static str, path: PathBuf, source: Box<AnalysisError> },
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error("the environments differ outside the declared fields (declare them with --declared, or --allow-undeclared):\n  {}", .0.join("\n  "))]
    EnvironmentDiffers(Vec<String>),
}

/// What of the tidy store came out empty ([`AnalysisError::EmptyStore`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmptyPart {
    /// None of the points asked for has a file in the store.
    #[error("no file of the points asked for")]
    Points,
}

impl AnalysisError {
    pub(crate) fn read(path: &std::path::Path, message: impl ToString) -> Self {
        AnalysisError::Read { path: path.to_path_buf(), message: message.to_string() }
    }
}
