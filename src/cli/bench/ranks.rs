//! Starting `bench`'s ranks: `shardsweep bench-worker` with the command's options, under
//! mpirun, or under torchrun for a c10d sweep; and a rank's c10d group over the whole world.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::Args;

/// Runs the ranks of the overhead bench or the `--sizes` sweep and waits for them: a c10d
/// sweep under torchrun where asked to (`--torchrun`) or where MPI is left out, the rest under
/// mpirun. Exit 0 if they all succeeded, else 1.
pub(super) fn launch(args: &Args) -> Result<ExitCode> {
    let options = &args.options;
    let mut program = vec![std::env::current_exe()?.display().to_string(), "bench-worker".into()];
    program.extend(options.args());
    let torchrun = args.fsdp.torchrun.is_some() || !cfg!(feature = "mpi");
    let command = if options.sweep.c10d().is_some() && torchrun {
        let ranks = args.ranks.to_string();
        let torchrun = args.fsdp.torchrun();
        let mut command = vec![torchrun, "--standalone".into(), "--nproc-per-node".into(), ranks];
        command.push("--no-python".into());
        command.extend(program);
        command
    } else {
        // The ranks also meet in a c10d store, for gloo's side of the comparison or sweep: on
        // this host, where mpirun starts them all.
        let port = shardsweep::launch::free_port()?;
        let env = ["MASTER_ADDR=127.0.0.1".to_string(), format!("MASTER_PORT={port}")];
        let extra: Vec<String> = env.into_iter().flat_map(|var| ["-x".to_string(), var]).collect();
        shardsweep::launch::mpirun_command(&args.mpirun, args.ranks, &extra, &program)
    };
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .with_context(|| format!("starting {}", command[0]))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// This rank's end of a `backend` group over the whole world, meeting at the store its
/// launcher named (`place`: `MASTER_ADDR`, `MASTER_PORT`).
#[cfg(any(feature = "gloo", feature = "cuda"))]
pub(super) fn c10d_group(
    backend: shardsweep::comm::C10dBackend,
    place: &shardsweep::comm::Rendezvous,
) -> Result<shardsweep::comm::C10dComm> {
    shardsweep::comm::C10dComm::connect(
        backend,
        &place.master_addr,
        place.master_port,
        place.rank,
        place.world_size,
        crate::cli::C10D_TIMEOUT_MS,
    )
    .with_context(|| format!("rank {} cannot join the {} group", place.rank, backend.name()))
}
