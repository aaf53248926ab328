//! `shardsweep predict`: every point of an experiment through the performance and memory
//! model: step time by phase, throughput, MFU, peak memory by category, node-hours.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use shardsweep::launch::slurm::System;
use shardsweep::plan::{expand, Experiment, PointSpec};
use shardsweep::predict::decision::{decide, Decision};
use shardsweep::predict::{Calibration, PerfModel, Prediction};

#[derive(clap::Args)]
pub struct Args {
    experiment: PathBuf,
    /// The system whose hardware figures the model uses.
    #[arg(long)]
    system: String,
    /// Folder of system profiles.
    #[arg(long, default_value = "slurm")]
    systems: PathBuf,
    /// A calibration file written by `shardsweep calibrate` for this system; its measured
    /// points are anchors.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// More anchors: measurement tables (CSV, the calibration's columns) or sweep folders whose
    /// finished points predictions of the same configurations stand on.
    #[arg(long)]
    anchors: Vec<PathBuf>,
    /// The model alone: no prediction stands on a measurement.
    #[arg(long, conflicts_with = "anchors")]
    no_anchors: bool,
    /// CSV on stdout instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw throughput and memory against nodes (PNG and SVG) into this folder.
    #[cfg(feature = "analysis")]
    #[arg(long)]
    plots: Option<PathBuf>,
}

/// The model for `system`, calibrated if a calibration file is given, its anchors the
/// calibration's measured points.
pub fn perf_model(
    system: &str,
    systems: &std::path::Path,
    calibration: Option<&std::path::Path>,
) -> Result<(PerfModel, System)> {
    let (sys, _) = System::load(system, systems)?;
    let calibration = calibration
        .map(|path| Calibration::load(path, system))
        .transpose()
        .context("reading the calibration")?;
    if calibration.is_none() {
        tracing::warn!(system, "no calibration: public hardware defaults only");
    }
    let model = PerfModel {
        hardware: sys.hardware(),
        anchors: calibration.as_ref().map(|c| c.anchors.clone()).unwrap_or_default(),
        calibration,
        peak_flop_per_s: sys.peak_flop_per_s.clone(),
    };
    Ok((model, sys))
}

pub const CSV_HEADER: &str = "point,model,strategy,shard_group,nodes,ranks_per_node,micro_batch,global_batch,step_s,images_per_s,data_s,forward_s,backward_s,recompute_s,exposed_all_gather_s,exposed_reduce_scatter_s,exposed_all_reduce_s,optimizer_s,mfu,peak_device_bytes,param_shards_bytes,grad_shards_bytes,optimizer_state_bytes,gathered_params_bytes,unsharded_grads_bytes,activations_bytes,allocator_overhead_bytes,node_hours,reserved_peak_device_bytes,images_per_s_low,images_per_s_high,basis,decision";

/// One CSV line in `CSV_HEADER`'s order; the shard group is empty for the strategies that
/// have none of their own choosing (as in measurement tables).
pub fn csv_line(p: &PointSpec, r: &Prediction, decision: Decision) -> String {
    let t = &r.times;
    let m = &r.memory;
    let group =
        if p.strategy.is_hybrid() { p.parallel.shard_group.to_string() } else { String::new() };
    let mfu = r.mfu.map(|v| format!("{v:.5}")).unwrap_or_default();
    format!(
        "{},{},{},{group},{},{},{},{},{:.6},{:.3},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{mfu},{:.0},{:.0},{:.0},{:.0},{:.0},{:.0},{:.0},{:.0},{:.6},{:.0},{:.3},{:.3},{},{}",
        p.id, p.model.name, p.strategy.name(), p.nodes, p.ranks_per_node, p.micro_batch,
        p.global_batch(), t.step_s, r.images_per_s, t.data_s, t.forward_s, t.backward_s,
        t.recompute_s, t.exposed_all_gather_s, t.exposed_reduce_scatter_s, t.exposed_all_reduce_s,
        t.optimizer_s, m.peak, m.param_shards, m.grad_shards, m.optimizer_state, m.gathered_params,
        m.unsharded_grads, m.activations, m.allocator_overhead, r.node_hours, m.reserved_peak,
        r.images_per_s_low, r.images_per_s_high, r.basis.label(), decision.name()
    )
}

pub fn run(args: Args) -> Result<ExitCode> {
    let (mut model, system) = perf_model(&args.system, &args.systems, args.calibration.as_deref())?;
    if args.no_anchors {
        model.anchors.clear();
    }
    for path in &args.anchors {
        model.anchors.extend(read_anchors(path, &system.hardware().measurement_defaults)?);
    }
    let plan = expand(&Experiment::load(&args.experiment)?, &system.machine());
    for r in &plan.rejected {
        tracing::warn!(point = %r.id, reason = %r.reason, "not predicted: rejected at plan time");
    }
    let rows: Vec<(&PointSpec, Prediction)> =
        plan.points.iter().map(|p| (p, model.predict(p))).collect();
    let decisions = decide(&rows.iter().map(|(p, r)| (*p, r)).collect::<Vec<_>>());
    #[cfg(feature = "analysis")]
    if let Some(dir) = &args.plots {
        let points: Vec<shardsweep_analysis::predicted::PredictedPoint> = rows
            .iter()
            .map(|(p, r)| shardsweep_analysis::predicted::PredictedPoint {
                model: p.model.name.clone(),
                series: series_name(p),
                nodes: p.nodes,
                images_per_s: r.images_per_s,
                peak_device_bytes: r.memory.peak,
            })
            .collect();
        let written = shardsweep_analysis::predicted::plot(&points, dir)?;
        tracing::info!(plots = ?written, "plots written");
    }
    if args.csv {
        outln!("{CSV_HEADER}");
        for ((p, r), d) in rows.iter().zip(&decisions) {
            outln!("{}", csv_line(p, r, *d));
        }
    } else if args.json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .zip(&decisions)
            .map(|((p, r), d)| {
                serde_json::json!({
                    "point": p.id, "model": p.model.name, "strategy": p.strategy,
                    "shard_group": p.parallel.shard_group, "nodes": p.nodes,
                    "ranks_per_node": p.ranks_per_node, "micro_batch": p.micro_batch,
                    "global_batch": p.global_batch(), "prediction": r, "decision": d,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut table = super::table([
            "point",
            "step s",
            "images/s",
            "90% interval",
            "stands on",
            "in its cell",
            "fwd+bwd+rec s",
            "exposed AG/RS/AR s",
            "MFU",
            "peak memory",
            "node-hours",
        ]);
        for ((p, r), d) in rows.iter().zip(&decisions) {
            let t = &r.times;
            table.add_row([
                p.id.clone(),
                format!("{:.4}", t.step_s),
                format!("{:.1}", r.images_per_s),
                format!("{:.1}-{:.1}", r.images_per_s_low, r.images_per_s_high),
                r.basis.label(),
                d.name().to_string(),
                format!("{:.4}", t.forward_s + t.backward_s + t.recompute_s),
                format!(
                    "{:.4}/{:.4}/{:.4}",
                    t.exposed_all_gather_s, t.exposed_reduce_scatter_s, t.exposed_all_reduce_s
                ),
                r.mfu.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or_else(|| "-".into()),
                format!("{:.2} GiB", r.memory.peak / (1u64 << 30) as f64),
                format!("{:.3}", r.node_hours),
            ]);
        }
        outln!("{table}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Anchors from a measurement table (a file) or a sweep folder's finished points.
pub fn read_anchors(
    path: &std::path::Path,
    defaults: &shardsweep::predict::hardware::MeasurementDefaults,
) -> Result<Vec<shardsweep::predict::AnchorPoint>> {
    use shardsweep::predict::measurements::{read_records, read_table};
    let measured = if path.is_dir() {
        read_records(path, &|_| true)?.points
    } else {
        read_table(path, defaults)?
    };
    Ok(measured.iter().map(|m| m.anchor()).collect())
}

/// A line of the throughput plot: strategy, with the shard group for the hybrid ones.
#[cfg(feature = "analysis")]
pub fn series_name(p: &PointSpec) -> String {
    if p.strategy.is_hybrid() {
        format!("{} sg{}", p.strategy.name(), p.parallel.shard_group)
    } else {
        p.strategy.name().to_string()
    }
}
