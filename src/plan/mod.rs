//! Plan: read an experiment file, expand its axes into points, reject the points that cannot
//! run (with the reason), before anything is launched.

mod experiment;
mod feasibility;
mod matrix;
mod models;
mod parse;
mod point;
mod problems;
mod validate;

pub use crate::records::Axis;
pub use experiment::{
    Backend, BackwardPrefetch, DataSource, DeviceKind, Dtype, Experiment, Fault, FaultKind,
    LaunchSettings, OptimizerSettings, Rule, Settings, Strategy, Timing, MAE_CROP_MIN_SCALE,
};
pub use feasibility::{check, rank_memory_bytes, Machine};
pub use matrix::{expand, point_id, Plan, Rejected, Rejection};
pub use models::{ModelShape, Models};
pub use point::{read_point, sha256_hex, write_point, ParallelSpec, PointSpec, SystemSpec};
pub use problems::{ExperimentError, Problem};

/// Whether `name` is safe as a folder name and on a command line (sweeps, points, systems,
/// accounts): letters, digits, `.`, `_` and `-`, not empty, not starting with `.` (hidden) or
/// `-` (read as an option).
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}
