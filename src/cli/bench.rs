//! `shardsweep bench`: what the harness costs, its collectives against bare MPI and its
//! instrumented step against an uninstrumented one; `bench-worker` is one rank of it.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

#[derive(clap::Args, Clone)]
pub struct BenchOptions {
    /// Model whose unit sizes the collectives use and which the training steps train.
    #[arg(long, default_value = "vit-small-cpu")]
    model: String,
    /// Repetitions of each collective.
    #[arg(long, default_value_t = 50)]
    repeats: usize,
    /// Training steps with and without instrumentation, each.
    #[arg(long, default_value_t = 40)]
    steps: usize,
    #[arg(long, default_value_t = 4)]
    micro_batch: u64,
}

impl BenchOptions {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--model".to_string(), self.model.clone()];
        args.extend([
            "--repeats".into(),
            self.repeats.to_string(),
            "--steps".into(),
            self.steps.to_string(),
            "--micro-batch".into(),
            self.micro_batch.to_string(),
        ]);
        args
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    options: BenchOptions,
    /// Ranks to run with (mpirun -np).
    #[arg(long, default_value_t = 4)]
    ranks: u32,
    #[arg(long, default_value = "mpirun")]
    mpirun: String,
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    options: BenchOptions,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let options = &args.options;
    if shardsweep::model::preset(&options.model).is_none() {
        bail!("unknown model {}", options.model);
    }
    let mut program = vec![std::env::current_exe()?.display().to_string(), "bench-worker".into()];
    program.extend(options.args());
    let command = shardsweep::launch::mpirun_command(&args.mpirun, args.ranks, &[], &program);
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .with_context(|| format!("starting {}", args.mpirun))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    use mpi::traits::Communicator;
    let options = &args.options;
    tch::set_num_threads(1);
    let universe = mpi::initialize().context("MPI is already initialised")?;
    let world = universe.world();
    let comm = shardsweep::comm::MpiComm::new(universe.world());
    let mut results =
        shardsweep::bench::collectives(&world, &comm, &options.model, options.repeats)?;
    results.push(shardsweep::bench::instrumentation(
        &world,
        &comm,
        &options.model,
        options.micro_batch,
        options.steps,
    )?);
    if world.rank() == 0 {
        let mut table =
            super::table(["what", "size", "harness (median)", "bare (median)", "ratio"]);
        for r in &results {
            table.add_row([
                r.what.clone(),
                r.detail.clone(),
                format!("{:.1} us", r.harness_s * 1e6),
                format!("{:.1} us", r.bare_s * 1e6),
                format!("{:.3}", r.ratio()),
            ]);
        }
        println!("harness vs bare MPI (collectives) and instrumented vs uninstrumented (training step); slowest rank per repetition, median");
        println!("{table}");
    }
    Ok(ExitCode::SUCCESS)
}
