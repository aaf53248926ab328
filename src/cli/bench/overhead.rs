//! `bench` without `--sizes`, one MPI rank of it: what the harness costs. Its collectives on
//! each backend against bare MPI calls, and its instrumented training step against an
//! uninstrumented one; rank 0 prints the table.

use std::process::ExitCode;

use anyhow::Result;

use super::BenchOptions;

/// This rank's part of the harness-overhead bench.
#[cfg(not(feature = "mpi"))]
pub(super) fn against_bare(_options: &BenchOptions) -> Result<ExitCode> {
    anyhow::bail!("this build leaves out MPI (cargo feature `mpi`)")
}

/// This rank's part of the harness-overhead bench: the harness's collectives (over MPI, and
/// over gloo where built) and its step, each against the bare form; slowest rank per
/// repetition, median.
#[cfg(feature = "mpi")]
pub(super) fn against_bare(options: &BenchOptions) -> Result<ExitCode> {
    use anyhow::Context;
    use mpi::traits::Communicator;
    let universe = mpi::initialize().context("MPI is already initialised")?;
    let world = universe.world();
    let mpi = shardsweep::comm::MpiComm::new(universe.world());
    #[cfg(feature = "gloo")]
    let gloo = super::ranks::c10d_group(
        shardsweep::comm::C10dBackend::Gloo,
        &shardsweep::comm::Rendezvous::from_env()?,
    )?;
    #[cfg_attr(not(feature = "gloo"), allow(unused_mut))]
    let mut comms: Vec<(&str, &dyn shardsweep::comm::Comm)> = vec![("mpi", &mpi)];
    #[cfg(feature = "gloo")]
    comms.push(("gloo", &gloo));
    let mut results =
        shardsweep::bench::collectives(&world, &comms, &options.model, options.repeats)?;
    results.push(shardsweep::bench::instrumentation(
        &world,
        comms[0],
        &options.model,
        options.micro_batch()?,
        options.steps,
    )?);
    if world.rank() == 0 {
        let mut table = crate::cli::table([
            "what",
            "backend",
            "size",
            "harness (median)",
            "bare (median)",
            "ratio",
        ]);
        for r in &results {
            table.add_row([
                r.what.clone(),
                r.backend.clone(),
                r.detail.clone(),
                format!("{:.1} us", r.harness_s * 1e6),
                format!("{:.1} us", r.bare_s * 1e6),
                format!("{:.3}", r.ratio()),
            ]);
        }
        outln!("harness on each backend vs bare MPI calls (collectives) and instrumented vs uninstrumented (training step); slowest rank per repetition, median");
        outln!("{table}");
    }
    Ok(ExitCode::SUCCESS)
}
