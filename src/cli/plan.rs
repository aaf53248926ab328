//! `shardsweep plan`: the points an experiment expands to, and the ones rejected with why.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use shardsweep::plan::{expand, rank_memory_bytes, Experiment, Machine};
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
        shardsweep::plan::write_json(&plan, &model, super::output::StdoutWriter::new())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = super::table([
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
    ]);
    for p in &plan.points {
        let predicted = model.predict(p);
        table.add_row([
            p.id.clone(),
            p.model.name.clone(),
            p.strategy.name().into(),
            format!("{} x {}", p.nodes, p.ranks_per_node),
            p.micro_batch.to_string(),
            p.global_batch().to_string(),
            format!("{:.2}M", p.model.trainable_params() as f64 / 1e6),
            format!("{:.4}", p.train_flop_per_step() / 1e12),
            format!("{:.2} GiB", rank_memory_bytes(p) / (1u64 << 30) as f64),
            format!("{:.3} s", predicted.times.step_s),
            format!("{:.2} GiB", predicted.memory.peak / (1u64 << 30) as f64),
        ]);
    }
    outln!("sweep {}: {} points to run", plan.sweep, plan.points.len());
    outln!("{table}");
    if !plan.rejected.is_empty() {
        let mut rejected = super::table(["rejected point", "reason"]);
        for r in &plan.rejected {
            rejected.add_row([r.id.clone(), r.reason.clone()]);
        }
        outln!("{} points rejected", plan.rejected.len());
        outln!("{rejected}");
    }
    Ok(ExitCode::SUCCESS)
}
