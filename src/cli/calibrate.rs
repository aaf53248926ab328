//! `shardsweep calibrate`: fits the performance model's few free parameters for a system from
//! measured throughputs, sweep records and collective benchmarks, and writes the calibration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use shardsweep::launch::slurm::System;
use shardsweep::plan::PointSpec;
use shardsweep::predict::collective_files::read_collectives;
use shardsweep::predict::fit::{fit, FitInput};
use shardsweep::predict::measurements::{read_bench, read_records, read_table};
use shardsweep::predict::validate::{held_out, table_rows};

#[derive(clap::Args)]
pub struct Args {
    /// The system the measurements come from.
    #[arg(long)]
    system: String,
    /// Folder of system profiles.
    #[arg(long, default_value = "slurm")]
    systems: PathBuf,
    /// Measured throughputs: model,strategy,shard_group,nodes,ranks_per_node,micro_batch,
    /// images_per_s (optionally activation_checkpointing, param_dtype, reduce_dtype).
    #[arg(long)]
    measurements: Vec<PathBuf>,
    /// Sweep folders whose records (step, unit and collective times) to fit to.
    #[arg(long)]
    records: Vec<PathBuf>,
    /// Collective timings from `shardsweep bench --sizes ... --out FILE.csv`.
    #[arg(long)]
    bench: Vec<PathBuf>,
    /// Collective timings as nccl-tests / rccl-tests print them (text, or their `-J` JSON) or
    /// the OSU micro-benchmarks do (text; with --layout): latency and bandwidth per link level.
    #[arg(long)]
    collectives: Vec<PathBuf>,
    /// Where the ranks of a --collectives file that does not say (OSU) ran: NODESxRANKS_PER_NODE.
    #[arg(long)]
    layout: Option<shardsweep::predict::collective_files::Layout>,
    /// Score the held-out rows (--fit-nodes, --hold-out-model) as a user would use the
    /// predictions: errors, the best strategy per (model, nodes), scaling breakdowns found and
    /// false alarms, beside linear extrapolation from fewer nodes; a table on stdout, and the
    /// figures in the calibration file.
    #[arg(long)]
    validate: bool,
    /// Fit only points on these node counts; the others are predicted and reported as
    /// held-out residuals (cross-validation).
    #[arg(long, value_delimiter = ',')]
    fit_nodes: Vec<u32>,
    /// Hold these models out of the fit (leave-one-model-out cross-validation).
    #[arg(long, value_delimiter = ',')]
    hold_out_model: Vec<String>,
    /// The calibration file to write (JSON).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.measurements.is_empty()
        && args.records.is_empty()
        && args.bench.is_empty()
        && args.collectives.is_empty()
    {
        bail!(
            "nothing to calibrate from: give --measurements, --records, --bench or --collectives"
        );
    }
    if args.validate && args.fit_nodes.is_empty() && args.hold_out_model.is_empty() {
        bail!("--validate scores held-out rows: give --fit-nodes or --hold-out-model");
    }
    let (system, _) = System::load(&args.system, &args.systems)?;
    let hw = system.hardware();
    let fitted = |p: &PointSpec| {
        (args.fit_nodes.is_empty() || args.fit_nodes.contains(&p.nodes))
            && !args.hold_out_model.contains(&p.model.name)
    };
    let mut input = FitInput::default();
    for path in &args.measurements {
        let rows = read_table(path, &hw.measurement_defaults)?;
        tracing::info!(path = %path.display(), rows = rows.len(), "measurements read");
        for row in rows {
            if fitted(&row.point) {
                input.measured.push(row);
            } else {
                input.held_out.push(row);
            }
        }
    }
    for dir in &args.records {
        let used = read_records(dir, &fitted)?;
        let held = read_records(dir, &|p: &PointSpec| !fitted(p))?;
        tracing::info!(
            sweep = %dir.display(),
            points = used.points.len(),
            held_out = held.points.len(),
            units = used.units.len(),
            collectives = used.collectives.len(),
            "records read"
        );
        input.measured.extend(used.points);
        input.units.extend(used.units);
        input.collectives.extend(used.collectives);
        input.data_s_per_pixel.extend(used.data_s_per_pixel);
        input.backward_to_forward.extend(used.backward_to_forward);
        input.device_memory.extend(used.device_memory);
        input.held_out.extend(held.points);
    }
    for path in &args.bench {
        let samples = read_bench(path)?;
        tracing::info!(path = %path.display(), samples = samples.len(), "bench read");
        input.collectives.extend(samples);
    }
    for path in &args.collectives {
        let samples = read_collectives(path, args.layout)?;
        tracing::info!(path = %path.display(), samples = samples.len(), "collectives read");
        input.collectives.extend(samples);
    }
    if input.measured.is_empty() && input.units.is_empty() && input.collectives.is_empty() {
        bail!("no measurement is left to fit to (check --fit-nodes and --hold-out-model)");
    }
    let mut cal = fit(&args.system, &hw, system.peak_flop_per_s.clone(), &input);
    if args.validate {
        let figures = held_out(&cal, &hw, &system.peak_flop_per_s, &input.held_out);
        let mut table = super::table([
            "figure (held-out rows)",
            "prediction",
            "linear from the nearest measured nodes",
        ]);
        for row in table_rows(&figures) {
            table.add_row(row);
        }
        outln!("{table}");
        cal.validation = Some(figures);
    }
    cal.write(&args.out)?;
    let mut table = super::table(["parameter", "value", "default", "source"]);
    for p in &cal.parameters {
        table.add_row([
            p.name.clone(),
            format!("{:.4e}", p.value),
            format!("{:.4e}", p.default),
            p.source.clone(),
        ]);
    }
    errln!("{table}");
    let pct =
        |v: Option<f64>| v.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or_else(|| "-".into());
    let s = &cal.summary;
    errln!(
        "fitted {} rows: median |error| {}, p90 {}; held out {} rows: median {}, p90 {}",
        s.rows_fitted,
        pct(s.fitted_median_abs_error),
        pct(s.fitted_p90_abs_error),
        s.rows_held_out,
        pct(s.held_out_median_abs_error),
        pct(s.held_out_p90_abs_error)
    );
    tracing::info!(out = %args.out.display(), "calibration written");
    Ok(ExitCode::SUCCESS)
}
