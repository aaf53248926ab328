//! `shardsweep plan`: the points an experiment expands to, and the ones rejected with why.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use rayon::prelude::*;
use shardsweep::plan::{expand, rank_memory_bytes, Experiment, Machine, PointSpec};
use shardsweep::predict::{Hardware, PerfModel};

#[derive(clap::Args)]
pub struct Args {
    experiment: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Check fit against a Slurm system's devices instead of this machine.
    #[arg(long)]
    system: Option<String>,
    /// Folder of system profiles.
    #[arg(long, default_value = "slurm")]
    systems: PathBuf,
    /// A calibration file (`shardsweep calibrate`) for the predicted step time and memory.
    #[arg(long, requires = "system")]
    calibration: Option<PathBuf>,
    /// Only the candidates: per (model, nodes), the point predicted fastest and those whose 90%
    /// interval reaches its prediction; the others are listed as rejected with theirs.
    #[arg(long, requires = "calibration")]
    candidates: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (machine, model) = match &args.system {
        Some(name) => {
            let (model, system) =
                super::predict::perf_model(name, &args.systems, args.calibration.as_deref())?;
            (system.machine(), model)
        }
        None => (
            Machine::local(),
            PerfModel {
                hardware: Hardware::fallback(),
                calibration: None,
                peak_flop_per_s: Default::default(),
                anchors: Vec::new(),
            },
        ),
    };
    let mut plan = expand(&Experiment::load(&args.experiment)?, &machine);
    if args.candidates {
        shardsweep::predict::decision::keep_candidates(&mut plan, &model);
    }
    if args.json {
        shardsweep::predict::write_plan_json(&plan, &model, super::output::StdoutWriter::new())?;
        return Ok(ExitCode::SUCCESS);
    }
    // Predictions are the cost of a large plan (10^5 points): made on every core, in order.
    let rows: Vec<[String; 11]> = plan.points.par_iter().map(|p| row(p, &model)).collect();
    let mut out = super::output::StdoutWriter::new();
    writeln!(out, "sweep {}: {} points to run", plan.sweep, plan.points.len())?;
    super::long_table::write(&mut out, HEADER, &rows)?;
    if !plan.rejected.is_empty() {
        let rejected: Vec<[String; 2]> =
            plan.rejected.iter().map(|r| [r.id.clone(), r.reason.clone()]).collect();
        writeln!(out, "{} points rejected", plan.rejected.len())?;
        super::long_table::write(&mut out, ["rejected point", "reason"], &rejected)?;
    }
    Ok(ExitCode::SUCCESS)
}

const HEADER: [&str; 11] = [
    "point",
    "model",
    "strategy",
    "nodes x ranks",
    "micro batch",
    "global batch",
    "params",
    "TFLOP/step",
    "memory/rank",
    "predicted step",
    "predicted peak memory",
];

/// The cells of `p`'s row under [`HEADER`].
fn row(p: &PointSpec, model: &PerfModel) -> [String; 11] {
    let predicted = model.predict(p);
    let gib = |bytes: f64| format!("{:.2} GiB", bytes / (1u64 << 30) as f64);
    [
        p.id.clone(),
        p.model.name.clone(),
        p.strategy.name().into(),
        format!("{} x {}", p.nodes, p.ranks_per_node),
        p.micro_batch.to_string(),
        p.global_batch().to_string(),
        format!("{:.2}M", p.model.trainable_params() as f64 / 1e6),
        format!("{:.4}", p.train_flop_per_step() / 1e12),
        gib(rank_memory_bytes(p)),
        format!("{:.3} s", predicted.times.step_s),
        gib(predicted.memory.peak),
    ]
}
