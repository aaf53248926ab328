//! `shardsweep-lite`: the commands that never train (`plan`, `predict`, `analyze`, `compare`,
//! `trace`, `bench-analysis`, `bundle`, `history`, and `data import`, `rasters`, `digits`),
//! the same code as `shardsweep`'s, in a binary that does not link libtorch. Loading libtorch
//! (CUDA builds especially) costs `shardsweep` about 0.7 s and 0.5 GiB of resident memory
//! before `main`; this binary starts in milliseconds. Anything else is `shardsweep`'s.

#[path = "../cli/lite.rs"]
mod cli;

use std::process::ExitCode;

/// The analysis allocates and frees a point's columns thousands of times; with the system
/// allocator, returning that memory to the kernel and faulting it back took 4 of its 5 s on
/// 1e8 rows (sys time), against 0.4 s with mimalloc (`bench-analysis`, 3.4 s against 4.9 s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shardsweep-lite",
    version,
    about = "shardsweep's commands that never train, without libtorch: plan, predict, analyse"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Expand an experiment file into points and show them, with the points rejected and why.
    Plan(cli::plan::Args),
    /// Predict every point of an experiment (as `shardsweep predict`).
    Predict(cli::predict::Args),
    /// Image sets from files: import, rasters, digits (as `shardsweep data`).
    Data {
        #[command(subcommand)]
        command: cli::data_files::Command,
    },
    #[cfg(feature = "analysis")]
    #[command(flatten)]
    Analysis(cli::analysis::Command),
    #[cfg(feature = "analysis")]
    #[command(flatten)]
    Baselines(cli::baselines::Command),
}

fn main() -> ExitCode {
    cli::init_logging();
    let cli = Cli::parse();
    cli::output::pipe_safety_net(move || {
        cli::finish(match cli.command {
            Command::Plan(args) => cli::plan::run(args),
            Command::Predict(args) => cli::predict::run(args),
            Command::Data { command } => cli::data_files::run(command),
            #[cfg(feature = "analysis")]
            Command::Analysis(command) => cli::analysis::run(command),
            #[cfg(feature = "analysis")]
            Command::Baselines(command) => cli::baselines::run(command),
        })
    })
}
