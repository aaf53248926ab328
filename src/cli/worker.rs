//! `shardsweep worker`: one rank of one point (what mpirun, srun or torchrun starts).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use shardsweep::comm::C10dBackend;
use shardsweep::plan::PointSpec;

#[derive(clap::Args)]
pub struct Args {
    point_dir: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let point = shardsweep::plan::read_point(&args.point_dir)?;
    match C10dBackend::of(point.backend()) {
        None => run_mpi(&point, &args.point_dir),
        Some(backend) => run_c10d(&point, &args.point_dir, backend),
    }
}

fn check_world(point: &PointSpec, size: usize) -> Result<()> {
    if size as u32 != point.world_size() {
        bail!("started with {size} ranks but point {} needs {}", point.id, point.world_size());
    }
    Ok(())
}

#[cfg(feature = "mpi")]
fn run_mpi(point: &PointSpec, dir: &Path) -> Result<ExitCode> {
    use mpi::traits::Communicator;
    let universe = mpi::initialize().context("MPI is already initialised")?;
    let world = universe.world();
    check_world(point, world.size() as usize)?;
    let comm = shardsweep::comm::MpiComm::new(universe.world());
    match shardsweep::train::run_rank(point, dir, &comm) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            errln!("rank {}: {error}", world.rank());
            // The other ranks may be waiting in a collective: take the whole job down.
            world.abort(3)
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn run_mpi(point: &PointSpec, _dir: &Path) -> Result<ExitCode> {
    bail!("point {} uses backend mpi, which this build leaves out (cargo feature `mpi`)", point.id)
}

#[cfg(any(feature = "gloo", feature = "cuda"))]
fn run_c10d(point: &PointSpec, dir: &Path, backend: C10dBackend) -> Result<ExitCode> {
    use shardsweep::comm::{C10dComm, Rendezvous};
    let place = Rendezvous::from_env()?;
    check_world(point, place.world_size)?;
    tracing::debug!(?place, "joining the process group");
    let comm = C10dComm::connect(
        backend,
        &place.master_addr,
        place.master_port,
        place.rank,
        place.world_size,
        super::C10D_TIMEOUT_MS,
    )
    .with_context(|| {
        format!("rank {} cannot join at {}:{}", place.rank, place.master_addr, place.master_port)
    })?;
    match shardsweep::train::run_rank(point, dir, &comm) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            errln!("rank {}: {error}", place.rank);
            // Peers blocked in a collective fail at c10d's timeout or when the launcher (mpirun,
            // srun --kill-on-bad-exit, torchrun) stops them on this exit status.
            Ok(ExitCode::from(3))
        }
    }
}

#[cfg(not(any(feature = "gloo", feature = "cuda")))]
fn run_c10d(point: &PointSpec, _dir: &Path, backend: C10dBackend) -> Result<ExitCode> {
    bail!(
        "point {} uses backend {}, which this build leaves out (cargo features `gloo`, `cuda`)",
        point.id,
        backend.name()
    )
}
