//! One module per command: each holds its clap arguments and the function that runs it.
//! `src/bin/shardsweep-torch.rs` only parses and dispatches.

#[macro_use]
pub mod output;
#[cfg(feature = "analysis")]
pub mod analysis;
#[cfg(feature = "analysis")]
pub mod baselines;
pub mod bench;
#[cfg(feature = "analysis")]
pub mod bench_analysis;
pub mod calibrate;
mod common;
pub mod data;
mod data_files;
mod long_table;
pub mod plan;
pub mod predict;
pub mod probe;
pub mod run;
pub mod slurm;
pub mod worker;

use std::path::{Path, PathBuf};

pub use common::*;
use shardsweep::plan::Experiment;

/// c10d's own timeout for the store and every collective: a lost rank fails the others within
/// it (torch.distributed's default is 30 minutes; points have their own, shorter limits), and
/// ranks that srun starts far apart still meet.
#[cfg(any(feature = "gloo", feature = "cuda"))]
pub const C10D_TIMEOUT_MS: i64 = 10 * 60 * 1000;

/// The one of `choices` whose `name` is `text` (a clap value parser for a subset of a closed
/// set), or an error listing them.
pub fn one_of<T: Copy>(
    text: &str,
    choices: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    choices.iter().copied().find(|&c| name(c) == text).ok_or_else(|| {
        format!(
            "{text:?}: one of {}",
            choices.iter().map(|&c| name(c)).collect::<Vec<_>>().join(", ")
        )
    })
}

/// A sweep's results folder from an experiment file or the folder itself.
pub fn sweep_dir(target: &Path, results: &Path) -> anyhow::Result<PathBuf> {
    if target.is_dir() {
        return Ok(target.to_path_buf());
    }
    Ok(results.join(Experiment::load(target)?.name))
}
