//! `shardsweep bench`: its options and which bench they ask for. Each bench has its home:
//! what the harness costs (its collectives against bare MPI, its instrumented step against an
//! uninstrumented one: `overhead.rs`); with `--sizes`, an OSU-style sweep of collectives over
//! message and group sizes written to a CSV (`sweep.rs`); or the harness side by side with
//! PyTorch (`pytorch.rs`). The first two run as `bench-worker` ranks (`ranks.rs` starts them),
//! whose argv is the options' serialised form.

mod overhead;
mod pytorch;
mod ranks;
mod sweep;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use shardsweep::comm::C10dBackend;
use shardsweep::plan::{Backend, DeviceKind, Dtype, Strategy};

/// The options the ranks get too: `bench-worker` parses them back from [`BenchOptions::args`].
#[derive(clap::Args, Clone, Debug, PartialEq, serde::Serialize)]
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
    /// Micro-batch (images per rank and step); with --pytorch-eager, a comma-separated list
    /// measures each model at each.
    #[arg(long, value_delimiter = ',', default_value = "4")]
    micro_batch: Vec<u32>,
    #[command(flatten)]
    sweep: SweepArgs,
}

/// The `--sizes` sweep.
#[derive(clap::Args, Clone, Debug, PartialEq, serde::Serialize)]
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
    /// Ranks per node, consecutive ranks sharing one (on one host: simulated nodes) [default:
    /// for gloo and nccl, where the launcher placed the ranks (one more than the largest local
    /// rank); for mpi, all ranks on one node].
    #[arg(long)]
    ranks_per_node: Option<usize>,
    /// The library the sweep measures (the `backend` column): mpi or gloo on the CPU, nccl on
    /// each rank's GPU (the one of its local rank). gloo and nccl need no MPI: with --torchrun,
    /// or in a build without MPI, torchrun starts the ranks; under srun, run
    /// `shardsweep bench-worker` with the same options as the job's tasks.
    #[arg(long, default_value = "mpi", value_parser = parse_backend)]
    backend: Backend,
    /// Untimed calls before the timed repetitions of each size.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
}

impl SweepArgs {
    /// The c10d backend of a `--sizes` sweep over gloo or nccl (one that needs no MPI).
    fn c10d(&self) -> Option<C10dBackend> {
        C10dBackend::of(self.backend).filter(|_| self.sizes)
    }
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
    /// The one micro-batch of every mode but --pytorch-eager.
    fn micro_batch(&self) -> Result<u32> {
        match self.micro_batch[..] {
            [b] => Ok(b),
            _ => bail!("--micro-batch: one value, except with --pytorch-eager"),
        }
    }

    /// The ranks' argv: every option, from the options' serialised form, so an option added
    /// to these structs reaches the ranks without being listed here. clap's long names are the
    /// fields' names in kebab case; `true` is the bare flag, lists are comma-separated, unset
    /// options and empty lists are left out (the ranks' defaults are the same), and flattened
    /// structs are flattened again.
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        as_args(&serde_json::to_value(self).expect("options serialise"), &mut args);
        args
    }
}

fn as_args(options: &serde_json::Value, args: &mut Vec<String>) {
    use serde_json::Value;
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), String::from);
    for (name, value) in options.as_object().into_iter().flatten() {
        let flag = format!("--{}", name.replace('_', "-"));
        match value {
            Value::Null | Value::Bool(false) => {}
            Value::Bool(true) => args.push(flag),
            Value::Object(_) => as_args(value, args),
            Value::Array(items) if items.is_empty() => {}
            Value::Array(items) => {
                args.push(flag);
                args.push(items.iter().map(text).collect::<Vec<_>>().join(","));
            }
            Value::String(_) | Value::Number(_) => args.extend([flag, text(value)]),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    options: BenchOptions,
    /// Ranks to run with (mpirun -np; torchrun --nproc-per-node).
    #[arg(long, default_value_t = 4)]
    ranks: u32,
    #[arg(long, default_value = "mpirun")]
    mpirun: String,
    #[command(flatten)]
    fsdp: FsdpArgs,
}

/// `--pytorch-fsdp`: the harness against PyTorch FSDP.
#[derive(clap::Args)]
pub struct FsdpArgs {
    /// Instead: train --model with each of --strategies side by side with PyTorch FSDP (same
    /// model, micro-batch, ranks, batches and schedule, no weight decay, both under torchrun
    /// over gloo), --steps timed steps per round after 3 warm-up steps, and print the step
    /// times and the largest relative difference of their losses.
    #[arg(long, conflicts_with = "sizes")]
    pytorch_fsdp: bool,
    /// Instead: train each of --model (comma-separated) on one --device, one rank, side by side
    /// with the same model in PyTorch eager (bf16 autocast for --param-dtype bf16), and print
    /// step times, images/s, MFU against a measured matrix product (and --peak-flop-per-s), the
    /// caching allocators' peaks on GPUs and the largest relative difference of their losses.
    #[arg(long, conflicts_with_all = ["sizes", "pytorch_fsdp"])]
    pytorch_eager: bool,
    /// Device of --pytorch-eager: cpu or cuda.
    #[arg(long, default_value = "cpu", value_parser = parse_device, requires = "pytorch_eager")]
    device: DeviceKind,
    /// Compute dtype of --pytorch-eager's parameters: fp32 or bf16 (master weights stay fp32).
    #[arg(long, default_value = "fp32", value_parser = parse_dtype, requires = "pytorch_eager")]
    param_dtype: Dtype,
    /// The device's datasheet peak FLOP/s for --param-dtype (dense), for a second MFU column.
    #[arg(long, requires = "pytorch_eager")]
    peak_flop_per_s: Option<f64>,
    #[arg(long, value_delimiter = ',', default_value = "full_shard,no_shard", value_parser = parse_strategy)]
    strategies: Vec<Strategy>,
    /// Rounds, each running both sides once, alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// torchrun of the PyTorch to compare with [default: .venv/bin/torchrun if there, else
    /// torchrun on PATH]. Given with --sizes over gloo or nccl, it starts the sweep's ranks
    /// instead of mpirun (the default torchrun does so in a build without MPI).
    #[arg(long)]
    torchrun: Option<String>,
    /// Folder for the runs' points, configurations and logs [default: a new temporary folder].
    #[arg(long)]
    work: Option<PathBuf>,
}

impl FsdpArgs {
    /// The torchrun to use: --torchrun, else `.venv/bin/torchrun` if there, else PATH's.
    fn torchrun(&self) -> String {
        self.torchrun.clone().unwrap_or_else(|| {
            let local = ".venv/bin/torchrun";
            if Path::new(local).exists() {
                local.into()
            } else {
                "torchrun".into()
            }
        })
    }

    /// The torchrun to use and the folder for the runs (made if not given).
    fn torchrun_and_work(&self) -> Result<(String, PathBuf)> {
        let work = match &self.work {
            Some(dir) => dir.clone(),
            None => tempfile::Builder::new().prefix("shardsweep-pytorch-").tempdir()?.keep(),
        };
        Ok((self.torchrun(), work))
    }
}

fn parse_device(text: &str) -> Result<DeviceKind, String> {
    super::one_of(text, &[DeviceKind::Cpu, DeviceKind::Cuda], DeviceKind::name)
}

fn parse_dtype(text: &str) -> Result<Dtype, String> {
    super::one_of(text, &[Dtype::Fp32, Dtype::Bf16], Dtype::name)
}

fn parse_backend(text: &str) -> Result<Backend, String> {
    super::one_of(text, &[Backend::Mpi, Backend::Gloo, Backend::Nccl], Backend::name)
}

/// The strategies both sides run (the hybrid ones need a second dimension of ranks).
fn parse_strategy(text: &str) -> Result<Strategy, String> {
    let both_sides = [Strategy::FullShard, Strategy::ShardGradOp, Strategy::NoShard];
    super::one_of(text, &both_sides, Strategy::name)
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    options: BenchOptions,
}

pub fn run(mut args: Args) -> Result<ExitCode> {
    let models: Vec<&str> = args.options.model.split(',').collect();
    if let Some(unknown) = models.iter().find(|m| shardsweep::model::preset(m).is_none()) {
        bail!("--model: unknown model {unknown}");
    }
    let batches = &args.options.micro_batch;
    if let Some(b) =
        batches.iter().enumerate().find_map(|(i, b)| batches[..i].contains(b).then_some(b))
    {
        bail!("--micro-batch: {b} is listed twice");
    }
    if args.fsdp.pytorch_eager {
        return pytorch::against_eager(&args);
    }
    if models.len() > 1 {
        bail!("--model: one model, except with --pytorch-eager");
    }
    args.options.micro_batch()?;
    if args.fsdp.pytorch_fsdp {
        return pytorch::against_pytorch(&args);
    }
    if args.options.sweep.c10d().is_none() && !cfg!(feature = "mpi") {
        bail!(
            "this bench runs as MPI ranks, and this build leaves out MPI (cargo feature `mpi`); \
             --pytorch-fsdp, --pytorch-eager and --sizes with --backend gloo or nccl need no MPI"
        );
    }
    if args.options.sweep.sizes {
        sweep::prepare(&mut args)?;
    }
    ranks::launch(&args)
}

/// One rank of `bench`: a c10d sweep joins the group its launcher's environment names; the
/// rest run as MPI ranks.
pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let options = &args.options;
    tch::set_num_threads(1);
    options.micro_batch()?;
    if let Some(backend) = options.sweep.c10d() {
        return sweep::c10d_sweep(options, backend);
    }
    if options.sweep.sizes {
        sweep::mpi_sweep(options)
    } else {
        overhead::against_bare(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Ranks {
        #[command(flatten)]
        options: BenchOptions,
    }

    fn parse(args: &[String]) -> BenchOptions {
        Ranks::try_parse_from(
            std::iter::once("bench-worker".to_string()).chain(args.iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .options
    }

    #[test]
    fn the_ranks_parse_back_every_option_the_command_was_given() {
        let given: Vec<String> = "--model vit-tiny --repeats 7 --steps 3 --micro-batch 2,4 --sizes --out x.csv --min-bytes 1KiB --max-bytes 4MiB --size-factor 4 --groups 2,4 --ranks-per-node 2 --backend gloo --warmup 1"
            .split(' ')
            .map(String::from)
            .collect();
        let options = parse(&given);
        assert_eq!(parse(&options.args()), options);
        assert_eq!(options.sweep.min_bytes, 1024, "values, not only names, go through");
        let defaults = parse(&[]);
        assert_eq!(parse(&defaults.args()), defaults);
    }
}
