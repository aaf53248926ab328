//! `shardsweep run`: every point of an experiment through mpirun on this machine, then the
//! analysis.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use shardsweep::launch::{run_sweep, SweepOptions};
use shardsweep::plan::{expand, Experiment, Machine};
use shardsweep::records::Outcome;

#[derive(clap::Args)]
pub struct Args {
    experiment: PathBuf,
    /// Results root (the sweep writes to <results>/<name>/).
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Run points again even if they already finished (old results are kept aside).
    #[arg(long)]
    force: bool,
    /// Skip the analysis at the end.
    #[arg(long)]
    no_analysis: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (loaded, experiment_text) = Experiment::read(&args.experiment)?;
    let plan = expand(&loaded, &Machine::local());
    for r in &plan.rejected {
        tracing::warn!(point = %r.id, reason = %r.reason, "rejected at plan time");
    }
    if plan.points.is_empty() {
        bail!(
            "{}: no point to run ({} rejected; see `shardsweep plan`)",
            args.experiment.display(),
            plan.rejected.len()
        );
    }
    let options = SweepOptions {
        results: args.results.clone(),
        force: args.force,
        experiment_text,
        exe: std::env::current_exe().context("locating this program for mpirun")?,
    };
    let outcomes = run_sweep(&plan, &loaded.launch, &options)?;
    let not_ok: Vec<_> = outcomes.iter().filter(|r| r.outcome != Outcome::Ok).collect();
    for r in &not_ok {
        eprintln!("{}: {} {}", r.id, r.outcome.name(), r.message.as_deref().unwrap_or(""));
    }
    let sweep_dir = args.results.join(&plan.sweep);
    #[cfg(feature = "analysis")]
    if !args.no_analysis {
        super::analysis::analyze(&sweep_dir)?;
    }
    #[cfg(not(feature = "analysis"))]
    let _ = args.no_analysis;
    let ran = outcomes.iter().filter(|r| !r.skipped).count();
    eprintln!(
        "{}: {} points ({} run, {} already finished), {} not ok; results in {}",
        plan.sweep,
        outcomes.len(),
        ran,
        outcomes.len() - ran,
        not_ok.len(),
        sweep_dir.display()
    );
    Ok(if not_ok.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
