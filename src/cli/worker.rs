//! `shardsweep worker`: one rank of one point (what mpirun or srun starts).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

#[derive(clap::Args)]
pub struct Args {
    point_dir: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    use mpi::traits::Communicator;
    let point = shardsweep::plan::read_point(&args.point_dir)?;
    let universe = mpi::initialize().context("MPI is already initialised")?;
    let world = universe.world();
    if world.size() as u32 != point.world_size() {
        bail!(
            "started with {} ranks but point {} needs {}",
            world.size(),
            point.id,
            point.world_size()
        );
    }
    let comm = shardsweep::comm::MpiComm::new(universe.world());
    match shardsweep::train::run_rank(&point, &args.point_dir, &comm) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("rank {}: {error}", world.rank());
            // The other ranks may be waiting in a collective: take the whole job down.
            world.abort(3)
        }
    }
}
