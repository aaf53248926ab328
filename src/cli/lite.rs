//! The commands that never train, and their modules: the ones whose code reaches nothing of
//! libtorch, shared with `shardsweep-torch`'s (cli/mod.rs). `shardsweep` (src/main.rs) runs
//! them itself and `shardsweep-lite` (src/bin/shardsweep-lite.rs) runs only them.

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

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// The analysis allocates and frees a point's columns thousands of times; with the system
/// allocator, returning that memory to the kernel and faulting it back took 4 of its 5 s on
/// 1e8 rows (sys time), against 0.4 s with mimalloc (`bench-analysis`, 3.4 s against 4.9 s).
/// Only the binaries without libtorch allocate through it: a rank's memory cap (an address
/// space limit) and the outcome read from how allocation fails stay the system allocator's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The commands that never train.
#[derive(Parser)]
#[command(
    version,
    about = "shardsweep's commands that never train, without libtorch: plan, predict, analyse"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Expand an experiment file into points and show them, with the points rejected and why.
    Plan(plan::Args),
    /// Predict every point of an experiment: step time by phase, throughput, MFU, peak memory
    /// by category and node-hours, from a system's hardware figures and a calibration.
    Predict(predict::Args),
    /// Image sets from files: import a folder-per-class tree, write rasters or the bundled
    /// digits.
    Data {
        #[command(subcommand)]
        command: data_files::Command,
    },
    #[cfg(feature = "analysis")]
    #[command(flatten)]
    Analysis(analysis::Command),
    #[cfg(feature = "analysis")]
    #[command(flatten)]
    Baselines(baselines::Command),
}

/// Parses `args` (the program's name first) as the command line of the program `name` and
/// runs the command; clap's errors and help end the process here.
pub fn main(name: &'static str, args: Vec<OsString>) -> ExitCode {
    init_logging();
    let matches = Cli::command().name(name).get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    output::pipe_safety_net(move || {
        finish(match cli.command {
            Command::Plan(args) => plan::run(args),
            Command::Predict(args) => predict::run(args),
            Command::Data { command } => data_files::run(command),
            #[cfg(feature = "analysis")]
            Command::Analysis(command) => analysis::run(command),
            #[cfg(feature = "analysis")]
            Command::Baselines(command) => baselines::run(command),
        })
    })
}

/// Whether `args` (the program's name left out) name one of these commands, down to one with
/// no subcommands of its own: `plan` and `data import` do; `data bench`, `data`, `run` and
/// `--help` do not.
#[allow(dead_code, reason = "shardsweep-lite runs only these; shardsweep asks")]
pub fn handles(args: &[OsString]) -> bool {
    let cli = Cli::command();
    let mut command = &cli;
    for arg in args {
        match arg.to_str().and_then(|name| command.find_subcommand(name)) {
            Some(sub) if sub.has_subcommands() => command = sub,
            Some(_) => return true,
            None => return false,
        }
    }
    false
}
