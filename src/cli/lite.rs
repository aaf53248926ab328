//! The command modules of `shardsweep-lite` (src/bin/shardsweep-lite.rs): the ones whose code
//! reaches nothing of libtorch, shared with `shardsweep`'s (cli/mod.rs).

#[macro_use]
#[path = "output.rs"]
pub mod output;
#[cfg(feature = "analysis")]
#[path = "analysis.rs"]
pub mod analysis;
#[cfg(feature = "analysis")]
#[path = "baselines.rs"]
pub mod baselines;
#[cfg(feature = "analysis")]
#[path = "bench_analysis.rs"]
pub mod bench_analysis;
#[path = "common.rs"]
mod common;
#[path = "data_files.rs"]
pub mod data_files;
#[path = "long_table.rs"]
mod long_table;
#[path = "plan.rs"]
pub mod plan;
#[path = "predict.rs"]
pub mod predict;

pub use common::*;
