//! `shardsweep bench`: what the harness costs, its collectives against bare MPI and its
//! instrumented step against an uninstrumented one; or, with `--sizes`, an OSU-style sweep of
//! collectives over message and group sizes written to a CSV. `bench-worker` is one rank of it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

#[derive(clap::Args, Clone)]
pub struct BenchOptions {
    /// Model whose unit sizes the collectives use and which the training steps train.
    #[arg(long, default_value = "vit-small-cpu")]
    model: String,
    /// Timed repetitions of each collective (and of each size with --sizes).
    #[arg(long, default_value_t = 50)]
    repeats: usize,
    /// Training steps with and without instrumentation, each.
    #[arg(long, default_value_t = 40)]
    steps: usize,
    #[arg(long, default_value_t = 4)]
    micro_batch: u64,
    #[command(flatten)]
    sweep: SweepArgs,
}

/// The `--sizes` sweep.
#[derive(clap::Args, Clone)]
pub struct SweepArgs {
    /// Sweep all_gather, reduce_scatter and all_reduce over message sizes and group sizes
    /// (OSU-style) instead of measuring the harness; write the results to --out as CSV.
    #[arg(long, requires = "out")]
    sizes: bool,
    /// CSV file of the sweep (columns: backend, collective, group_size, ranks_per_node, nodes,
    /// payload_bytes, repeats, median_s, p10_s, p90_s).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Smallest payload: bytes, or with a KiB / MiB / GiB suffix.
    #[arg(long, default_value = "8", value_parser = parse_bytes)]
    min_bytes: u64,
    /// Largest payload.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    max_bytes: u64,
    /// Each payload is the previous one times this (2 or 4).
    #[arg(long, default_value_t = 2)]
    size_factor: u64,
    /// Group sizes, comma-separated [default: powers of two dividing --ranks, and --ranks].
    #[arg(long, value_delimiter = ',')]
    groups: Vec<usize>,
    /// Ranks per simulated node (consecutive ranks) [default: all ranks on one node].
    #[arg(long)]
    ranks_per_node: Option<usize>,
    /// Untimed calls before the timed repetitions of each size.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
}

/// `8`, `4KiB`, `64MiB`, `1GiB` as bytes.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let (number, scale) = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, 1));
    let n: u64 = number.trim().parse().map_err(|_| {
        format!("{text:?} is not a byte count (an integer, optionally with KiB, MiB or GiB)")
    })?;
    n.checked_mul(scale).ok_or_else(|| format!("{text:?} is too large"))
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
        let sweep = &self.sweep;
        if sweep.sizes {
            args.push("--sizes".into());
        }
        if let Some(out) = &sweep.out {
            args.extend(["--out".into(), out.display().to_string()]);
        }
        args.extend([
            "--min-bytes".into(),
            sweep.min_bytes.to_string(),
            "--max-bytes".into(),
            sweep.max_bytes.to_string(),
            "--size-factor".into(),
            sweep.size_factor.to_string(),
            "--warmup".into(),
            sweep.warmup.to_string(),
        ]);
        if !sweep.groups.is_empty() {
            let groups: Vec<String> = sweep.groups.iter().map(usize::to_string).collect();
            args.extend(["--groups".into(), groups.join(",")]);
        }
        if let Some(rpn) = sweep.ranks_per_node {
            args.extend(["--ranks-per-node".into(), rpn.to_string()]);
        }
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

pub fn run(mut args: Args) -> Result<ExitCode> {
    if shardsweep::model::preset(&args.options.model).is_none() {
        bail!("unknown model {}", args.options.model);
    }
    // The ranks may start elsewhere: they get the CSV's absolute path.
    if let Some(out) = &mut args.options.sweep.out {
        *out = std::path::absolute(&*out)
            .with_context(|| format!("resolving --out {}", out.display()))?;
    }
    let options = &args.options;
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
    if options.sweep.sizes {
        return sweep(options, &comm);
    }
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

/// One rank of the `--sizes` sweep; rank 0 writes the CSV.
fn sweep(options: &BenchOptions, comm: &dyn shardsweep::comm::Comm) -> Result<ExitCode> {
    use shardsweep::bench::sweep::{sweep, to_csv, SweepOptions};
    let (args, repeats) = (&options.sweep, options.repeats);
    let options = SweepOptions {
        min_bytes: args.min_bytes,
        max_bytes: args.max_bytes,
        factor: args.size_factor,
        group_sizes: args.groups.clone(),
        ranks_per_node: args.ranks_per_node.unwrap_or(comm.size()),
        warmup: args.warmup,
        repeats,
    };
    let rows = sweep(comm, "mpi", &options)?;
    if comm.rank() == 0 {
        let out = args.out.as_ref().context("--sizes needs --out")?;
        shardsweep::records::write_atomic(out, to_csv(&rows).as_bytes())?;
        tracing::info!(rows = rows.len(), path = %out.display(), "collective sweep written");
    }
    Ok(ExitCode::SUCCESS)
}
