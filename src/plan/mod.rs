//! Plan: read an experiment file, expand its axes into points, reject the points that cannot
//! run (with the reason), before anything is launched.

mod experiment;
mod feasibility;
mod matrix;
mod point;
mod problems;
mod validate;

pub use experiment::{
    Backend, BackwardPrefetch, DataSource, DeviceKind, Dtype, Experiment, Fault, FaultKind,
    LaunchSettings, OptimizerSettings, Settings, Strategy, AXES,
};
pub use feasibility::{check, rank_memory_bytes, Machine};
pub use matrix::{expand, point_id, Plan, Rejected};
pub use point::{ParallelSpec, PointSpec, SystemSpec};
pub use problems::{ExperimentError, Problem};
