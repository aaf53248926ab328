//! `shardsweep run`: every point of an experiment through mpirun on this machine, then the
//! analysis.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use shardsweep::bench::peak::local_peak;
use shardsweep::launch::{run_sweep, signals, SweepOptions};
use shardsweep::plan::{expand, DeviceKind, Experiment, Machine, Rejection};
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
    /// Run points that ended oom or nan_loss again too (by default they are not: the same
    /// configuration would end the same way).
    #[arg(long)]
    retry: bool,
    /// Run without the sweep's lock, for file systems without flock() (some NFS and Lustre
    /// mounts); start no second run of the sweep meanwhile.
    #[arg(long)]
    no_lock: bool,
    /// Skip the analysis at the end.
    #[arg(long)]
    no_analysis: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (loaded, experiment_text) = Experiment::read(&args.experiment)?;
    let plan = expand(&loaded, &Machine::local());
    // Points the experiment's own exclude rules drop are the user's choice, not a problem.
    for r in &plan.rejected {
        match r.kind {
            Rejection::Excluded | Rejection::NotACandidate => {
                tracing::info!(point = %r.id, reason = %r.reason, "left out")
            }
            Rejection::CannotRun => {
                tracing::warn!(point = %r.id, reason = %r.reason, "rejected at plan time")
            }
        }
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
        retry: args.retry,
        no_lock: args.no_lock,
        experiment_text,
        exe: std::env::current_exe().context("locating this program for mpirun")?,
    };
    let outcomes = run_sweep(&plan, &loaded.launch, &options)?;
    // MFU of local CPU runs is measured against this machine's own matrix-multiply rate.
    if loaded.settings.device == DeviceKind::Cpu && signals::interrupted().is_none() {
        let sweep_dir = args.results.join(&plan.sweep);
        let peak = local_peak(&sweep_dir, loaded.settings.threads_per_rank)?;
        tracing::info!(peak_flop_per_s = peak.peak_flop_per_s, source = %peak.source, "peak for MFU");
    }
    let not_ok: Vec<_> = outcomes.iter().filter(|r| r.outcome != Outcome::Ok).collect();
    for r in &not_ok {
        errln!("{}: {} {}", r.id, r.outcome.name(), r.message.as_deref().unwrap_or(""));
    }
    let sweep_dir = args.results.join(&plan.sweep);
    if let Some(stop) = signals::interrupted() {
        errln!(
            "{}: interrupted by {}; {} of {} points not run (finished points are skipped, the interrupted one runs again). Resume with:\n{}",
            plan.sweep,
            stop.name(),
            plan.points.len() - outcomes.len(),
            plan.points.len(),
            resume_line(&args)
        );
        return Ok(ExitCode::from(128 + stop.signal as u8));
    }
    #[cfg(feature = "analysis")]
    if !args.no_analysis {
        super::analysis::analyze(&sweep_dir)?;
    }
    #[cfg(not(feature = "analysis"))]
    let _ = args.no_analysis;
    let ran = outcomes.iter().filter(|r| !r.skipped).count();
    errln!(
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

/// The command that resumes this run, quoted to paste into a shell from any folder: this
/// program as it was started (absolute where it was started by a path), the same experiment,
/// results and flags, less `--force` (which would run the points that finished again).
fn resume_line(args: &Args) -> String {
    use std::ffi::OsString;
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.into());
    let program = std::env::args_os().next().unwrap_or_else(|| "shardsweep".into());
    let program = if std::path::Path::new(&program).components().count() > 1 {
        absolute(program.as_ref()).into()
    } else {
        program
    };
    let mut words: Vec<OsString> = vec![program, "run".into(), absolute(&args.experiment).into()];
    words.extend(["--results".into(), absolute(&args.results).into()]);
    for (set, flag) in
        [(args.retry, "--retry"), (args.no_lock, "--no-lock"), (args.no_analysis, "--no-analysis")]
    {
        if set {
            words.push(flag.into());
        }
    }
    shardsweep::launch::shell::command_line(words)
}
