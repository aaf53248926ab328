//! Analysis of shardsweep records. It reads only record files (`manifest.json` and
//! `records.h5` of each point), never the harness's own types, so any tool that reads the same
//! files sees the same numbers.

mod load;
mod plot;
mod report;
mod summary;

pub use load::{load_sweep, PointRecords, SweepRecords};
pub use report::{analyze_sweep, Report};
pub use summary::{summarize, Summary};

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("no finished records under {0}")]
    Empty(String),
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("plot {path}: {message}")]
    Plot { path: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl AnalysisError {
    pub(crate) fn read(path: &std::path::Path, message: impl ToString) -> Self {
        AnalysisError::Read { path: path.display().to_string(), message: message.to_string() }
    }
}
