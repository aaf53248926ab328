//! `shardsweep-torch`: every command of `shardsweep`, in the binary that links libtorch; parses
//! and dispatches, each command lives in `cli/`. `shardsweep` (src/main.rs) runs the commands
//! that never train itself and becomes this binary for the rest.

#[path = "../cli/mod.rs"]
mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shardsweep",
    version,
    about = "Sweeps of FSDP-style sharded MAE training: plan, run, measure, analyse"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Expand an experiment file into points and show them, with the points rejected and why.
    Plan(cli::plan::Args),
    /// Predict every point of an experiment: step time by phase, throughput, MFU, peak memory
    /// by category and node-hours, from a system's hardware figures and a calibration.
    Predict(cli::predict::Args),
    /// Fit the performance model's parameters for a system to measurements and write them.
    Calibrate(cli::calibrate::Args),
    /// Run every point of an experiment locally, then analyse the sweep.
    Run(cli::run::Args),
    #[cfg(feature = "analysis")]
    #[command(flatten)]
    Analysis(cli::analysis::Command),
    #[cfg(feature = "analysis")]
    #[command(flatten)]
    Baselines(cli::baselines::Command),
    /// Measure what the harness costs: its collectives (MPI, gloo) against bare MPI calls of the
    /// same size, training steps with instrumentation against steps without; with
    /// --pytorch-fsdp its training step against PyTorch FSDP's, with --pytorch-eager one device's
    /// against PyTorch eager's.
    Bench(cli::bench::Args),
    /// Image sets: import a folder-per-class tree, write the bundled digits, time the loader.
    Data(cli::data::Args),
    /// Train a linear classifier on a point's frozen encoder features; report top-1 and top-5.
    Probe(cli::probe::Args),
    /// Render an experiment's points into batch jobs for a Slurm system and submit them.
    Submit(cli::slurm::SubmitArgs),
    /// Submit again the points that never ran or ended in a way a retry can change
    /// (failed, timeout, node_fail, cancelled; never oom or nan_loss); finished points stay.
    Resume(cli::slurm::ResumeArgs),
    /// Show where each submitted point stands (scheduler state and records).
    Status(cli::slurm::SweepArgs),
    /// Record how each point of ended jobs finished, including points a job's end cut short.
    Collect(cli::slurm::CollectArgs),
    /// Cancel the sweep's queued and running jobs (`collect` then records what they cut short).
    Cancel(cli::slurm::SweepArgs),
    /// Run one point's launcher inside a batch job under the point's time limit, then write its
    /// records and manifest (the line each rendered job script runs per point).
    #[command(hide = true)]
    Supervise(cli::slurm::SuperviseArgs),
    /// Train one point as one rank (started by `run` through mpirun, or by srun or torchrun).
    #[command(hide = true)]
    Worker(cli::worker::Args),
    /// One rank of `bench` (started by `bench` through mpirun or torchrun, or by srun).
    #[command(hide = true)]
    BenchWorker(cli::bench::WorkerArgs),
}

fn main() -> ExitCode {
    cli::init_logging();
    let cli = Cli::parse();
    cli::output::pipe_safety_net(move || dispatch(cli))
}

/// Runs the command; its error, and any failure to write its output, end it with status 1.
fn dispatch(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Plan(args) => cli::plan::run(args),
        Command::Predict(args) => cli::predict::run(args),
        Command::Calibrate(args) => cli::calibrate::run(args),
        Command::Run(args) => cli::run::run(args),
        #[cfg(feature = "analysis")]
        Command::Analysis(command) => cli::analysis::run(command),
        #[cfg(feature = "analysis")]
        Command::Baselines(command) => cli::baselines::run(command),
        Command::Bench(args) => cli::bench::run(args),
        Command::Data(args) => cli::data::run(args),
        Command::Probe(args) => cli::probe::run(args),
        Command::Submit(args) => cli::slurm::submit(args),
        Command::Resume(args) => cli::slurm::resume(args),
        Command::Status(args) => cli::slurm::status(args),
        Command::Collect(args) => cli::slurm::collect(args),
        Command::Cancel(args) => cli::slurm::cancel(args),
        Command::Supervise(args) => cli::slurm::supervise(args),
        Command::Worker(args) => cli::worker::run(args),
        Command::BenchWorker(args) => cli::bench::worker(args),
    };
    cli::finish(result)
}
