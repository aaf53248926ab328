//! `bench --sizes`: the collective sweep. Its checks before the ranks start, and one rank of
//! it, over MPI or a c10d group, writing the CSV.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use shardsweep::comm::C10dBackend;
#[cfg(any(feature = "gloo", feature = "cuda"))]
use shardsweep::plan::DeviceKind;

use super::{Args, BenchOptions};

/// Before the ranks start: NCCL has a GPU per rank, and `--out` is absolute (the ranks may
/// start elsewhere) and not there yet.
pub(super) fn prepare(args: &mut Args) -> Result<()> {
    if args.options.sweep.backend == shardsweep::plan::Backend::Nccl {
        // NCCL puts no two ranks of a communicator on one GPU.
        let gpus = tch::Cuda::device_count();
        if i64::from(args.ranks) > gpus {
            bail!(
                "--ranks {}: NCCL needs a GPU per rank, and this libtorch sees {gpus}",
                args.ranks
            );
        }
    }
    if let Some(out) = &mut args.options.sweep.out {
        *out = std::path::absolute(&*out)
            .with_context(|| format!("resolving --out {}", out.display()))?;
        refuse_existing(out)?;
    }
    Ok(())
}

/// A `--sizes` sweep over MPI, every rank on this host (mpirun, `bench`'s own launch, starts
/// them here) unless `--ranks-per-node` says otherwise.
#[cfg(feature = "mpi")]
pub(super) fn mpi_sweep(options: &BenchOptions) -> Result<ExitCode> {
    use mpi::traits::Communicator;
    let universe = mpi::initialize().context("MPI is already initialised")?;
    let world = universe.world();
    let mpi = shardsweep::comm::MpiComm::new(universe.world());
    let ranks_per_node = options.sweep.ranks_per_node.unwrap_or(world.size() as usize);
    if let Err(error) = sweep(options, "mpi", &mpi, tch::Device::Cpu, ranks_per_node) {
        errln!("rank {}: {error:#}", world.rank());
        // The others may be waiting in a collective (MPI has no timeout): end the job.
        world.abort(3)
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "mpi"))]
pub(super) fn mpi_sweep(_options: &BenchOptions) -> Result<ExitCode> {
    bail!("this build leaves out MPI (cargo feature `mpi`)")
}

/// A `--sizes` sweep over gloo (CPU) or NCCL (this rank's GPU, by its local rank).
#[cfg(any(feature = "gloo", feature = "cuda"))]
pub(super) fn c10d_sweep(options: &BenchOptions, backend: C10dBackend) -> Result<ExitCode> {
    use shardsweep::comm::Rendezvous;
    let place = Rendezvous::from_env()?;
    let device = match backend {
        C10dBackend::Nccl => {
            // NCCL puts no two ranks of a communicator on one GPU.
            let gpus = tch::Cuda::device_count();
            if place.local_rank as i64 >= gpus {
                bail!("local rank {} on a node where libtorch sees {gpus} GPUs: NCCL needs one per rank", place.local_rank);
            }
            shardsweep::train::device_for(DeviceKind::Cuda, place.local_rank as u32)?
        }
        C10dBackend::Gloo => tch::Device::Cpu,
    };
    let comm = super::ranks::c10d_group(backend, &place)?;
    let ranks_per_node = match options.sweep.ranks_per_node {
        Some(n) => n,
        None => ranks_per_node_of(&comm, place.local_rank, device)?,
    };
    sweep(options, backend.name(), &comm, device, ranks_per_node)?;
    Ok(ExitCode::SUCCESS)
}

/// Ranks per node as the launcher placed them: one more than the largest local rank, checked
/// against the consecutive placement the sweep's layouts assume (rank r at local rank r % n).
#[cfg(any(feature = "gloo", feature = "cuda"))]
fn ranks_per_node_of(
    comm: &dyn shardsweep::comm::Comm,
    local_rank: usize,
    device: tch::Device,
) -> Result<usize> {
    use tch::{Kind, Tensor};
    let mine = Tensor::from_slice(&[local_rank as f32]).to_device(device);
    let all = Tensor::zeros([comm.size() as i64], (Kind::Float, device));
    comm.all_gather(&mine, &all)?;
    let local = Vec::<f32>::try_from(all.to_device(tch::Device::Cpu))?;
    let local: Vec<usize> = local.iter().map(|&l| l as usize).collect();
    let n = local.iter().max().map_or(1, |m| m + 1);
    let consecutive = local.iter().enumerate().all(|(rank, &l)| l == rank % n);
    if !comm.size().is_multiple_of(n) || !consecutive {
        bail!(
            "the launcher placed the ranks at local ranks {local:?}, not in equal blocks of \
             consecutive ranks per node; pass --ranks-per-node"
        );
    }
    Ok(n)
}

#[cfg(not(any(feature = "gloo", feature = "cuda")))]
pub(super) fn c10d_sweep(_options: &BenchOptions, backend: C10dBackend) -> Result<ExitCode> {
    bail!("backend {} is not in this build (cargo features `gloo`, `cuda`)", backend.name())
}

/// One rank of the `--sizes` sweep over `comm` with payloads on `device`, named `backend` in
/// the CSV rank 0 rewrites (atomically) as each row is finished, so a sweep cut short keeps
/// what it measured.
#[cfg(any(feature = "mpi", feature = "gloo", feature = "cuda"))]
pub(super) fn sweep(
    options: &BenchOptions,
    backend: &str,
    comm: &dyn shardsweep::comm::Comm,
    device: tch::Device,
    ranks_per_node: usize,
) -> Result<()> {
    use shardsweep::bench::sweep::{sweep, to_csv, SweepOptions};
    let (args, repeats) = (&options.sweep, options.repeats);
    let options = SweepOptions {
        min_bytes: args.min_bytes,
        max_bytes: args.max_bytes,
        factor: args.size_factor,
        group_sizes: args.groups.clone(),
        ranks_per_node,
        warmup: args.warmup,
        repeats,
        device,
    };
    let out = args.out.as_ref().context("--sizes needs --out")?;
    let rank = comm.rank();
    if rank == 0 {
        claim(out)?;
    }
    let rows = sweep(comm, backend, &options, &mut |rows| {
        if rank == 0 {
            shardsweep::records::write_atomic(out, to_csv(rows).as_bytes())?;
        }
        Ok(())
    })?;
    if rank == 0 {
        tracing::info!(rows = rows.len(), path = %out.display(), "collective sweep written");
    }
    Ok(())
}

/// A sweep never replaces an earlier one's file, finished or cut short.
fn refuse_existing(out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{}", already_there(out));
    }
    Ok(())
}

fn already_there(out: &Path) -> String {
    format!(
        "--out {}: a file is there already (an earlier sweep's); remove it or choose another",
        out.display()
    )
}

/// Rank 0 makes the CSV, header only, before the first collective: a path it cannot write, or
/// a file another sweep made meanwhile, stops the sweep before it measures anything.
fn claim(out: &Path) -> Result<()> {
    use std::io::Write;
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(out);
    let mut file = match file {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!("{}", already_there(out)),
        other => other.with_context(|| format!("--out {}: cannot create it", out.display()))?,
    };
    let header = format!("{}\n", shardsweep::bench::sweep::CSV_HEADER);
    file.write_all(header.as_bytes()).with_context(|| format!("writing --out {}", out.display()))
}
