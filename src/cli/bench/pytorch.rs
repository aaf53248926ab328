//! `bench --pytorch-fsdp` and `--pytorch-eager`: the harness side by side with PyTorch, each
//! side run by torchrun, and the table of both.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use shardsweep::plan::{DeviceKind, Dtype, Strategy};

use super::Args;

/// `--pytorch-fsdp`: each strategy side by side with PyTorch FSDP; a table on stdout.
pub(super) fn against_pytorch(args: &Args) -> Result<ExitCode> {
    use shardsweep::bench::{bench_point, pytorch_fsdp::side_by_side, pytorch_fsdp::Anchor};
    let fsdp = &args.fsdp;
    let (torchrun, work) = fsdp.torchrun_and_work()?;
    let exe = std::env::current_exe()?;
    let options = &args.options;
    let mut table = crate::cli::table([
        "strategy",
        "harness step (median)",
        "PyTorch FSDP step (median)",
        "harness speed-up",
        "timed steps (each)",
        "losses: max rel. diff",
    ]);
    let mut torch_version = String::new();
    let mut failed = Vec::new();
    let micro_batch = options.micro_batch()?;
    for &strategy in &fsdp.strategies {
        let mut point =
            bench_point(&options.model, args.ranks, micro_batch, options.steps + WARMUP as usize);
        point.strategy = strategy;
        point.settings.warmup_steps = WARMUP;
        point.parallel.shard_group =
            strategy.shard_group(point.world_size(), point.ranks_per_node, 0);
        let result = match side_by_side(&point, Anchor::Fsdp, &exe, &torchrun, fsdp.rounds, &work) {
            Ok(result) => result,
            Err(error) => {
                // What was measured before stays on screen.
                if !table.is_empty() {
                    outln!("{table}");
                }
                return Err(error).with_context(|| {
                    format!("{} side by side (runs in {})", strategy.name(), work.display())
                });
            }
        };
        torch_version = result.torch_version.clone();
        table.add_row([
            strategy.name().to_string(),
            format!("{:.2} ms", result.harness_s * 1e3),
            format!("{:.2} ms", result.pytorch_s * 1e3),
            format!("{:.2}x", result.speedup()),
            format!("{} / {}", result.harness_steps, result.pytorch_steps),
            format!("{:.1e}", result.loss_max_rel_diff),
        ]);
        failed.extend(result.failed.iter().map(|f| format!("{}: {f}", strategy.name())));
    }
    outln!(
        "{}, micro-batch {} x {} ranks, gloo, fp32, no weight decay, slowest rank per step; PyTorch {torch_version}; runs in {}",
        options.model,
        micro_batch,
        args.ranks,
        work.display()
    );
    outln!("{table}");
    Ok(report_failed_rounds(&failed))
}

/// The rounds that failed twice, on stderr after the table of those that finished: exit 2 if
/// any did (the table stands on fewer rounds than asked for), else 0.
fn report_failed_rounds(failed: &[String]) -> ExitCode {
    for round in failed {
        errln!("not measured: {round}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// Untimed steps before the timed ones, on both sides of a comparison with PyTorch.
const WARMUP: u32 = 3;

/// `--pytorch-eager`: each model on one device, one rank, side by side with PyTorch eager; a
/// table on stdout.
pub(super) fn against_eager(args: &Args) -> Result<ExitCode> {
    use shardsweep::bench::peak::matmul_flop_per_s;
    use shardsweep::bench::{bench_point, pytorch_fsdp::side_by_side, pytorch_fsdp::Anchor};
    let (fsdp, options) = (&args.fsdp, &args.options);
    let (torchrun, work) = fsdp.torchrun_and_work()?;
    let exe = std::env::current_exe()?;
    let device = match fsdp.device {
        DeviceKind::Cpu => tch::Device::Cpu,
        DeviceKind::Cuda if tch::Cuda::is_available() => tch::Device::Cuda(0),
        DeviceKind::Cuda => bail!("--device cuda: this libtorch sees no GPU"),
    };
    // The rate the model's matrix products could reach here: the measured one the MFU column
    // is against (large products on a GPU, the local-peak size on a CPU).
    let kind = match fsdp.param_dtype {
        Dtype::Bf16 => tch::Kind::BFloat16,
        Dtype::Fp32 => tch::Kind::Float,
    };
    let order = if device.is_cuda() { 8192 } else { 1024 };
    tch::set_num_threads(1);
    let gemm = matmul_flop_per_s(device, kind, order);
    let gib = |b: Option<u64>| {
        b.map_or("-".into(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64))
    };
    let mut table = crate::cli::table([
        "model",
        "micro-batch",
        "harness step",
        "PyTorch eager step",
        "harness speed-up",
        "harness images/s",
        "MFU vs matmul (harness / PyTorch)",
        "MFU vs datasheet (harness)",
        "peak allocated (harness / PyTorch)",
        "losses: max rel. diff",
    ]);
    let mut torch_version = String::new();
    let mut failed = Vec::new();
    let points =
        options.model.split(',').flat_map(|m| options.micro_batch.iter().map(move |&b| (m, b)));
    for (model, micro_batch) in points {
        let mut point = bench_point(model, 1, micro_batch, options.steps + WARMUP as usize);
        point.strategy = Strategy::NoShard;
        point.parallel.shard_group = 1;
        point.parallel.param_dtype = fsdp.param_dtype;
        point.settings.warmup_steps = WARMUP;
        point.settings.device = fsdp.device;
        let r = match side_by_side(&point, Anchor::Eager, &exe, &torchrun, fsdp.rounds, &work) {
            Ok(r) => r,
            Err(error) => {
                // What was measured before stays on screen (an out-of-memory at the largest
                // micro-batch is a finding, not a reason to lose the others).
                if !table.is_empty() {
                    outln!("{table}");
                }
                return Err(error).with_context(|| {
                    format!("{model} at micro-batch {micro_batch} (runs in {})", work.display())
                });
            }
        };
        torch_version = r.torch_version.clone();
        let flop = point.train_flop_per_step();
        let mfu = |step_s: f64, peak: f64| format!("{:.1}%", 100.0 * flop / step_s / peak);
        table.add_row([
            model.to_string(),
            micro_batch.to_string(),
            format!("{:.2} ms", r.harness_s * 1e3),
            format!("{:.2} ms", r.pytorch_s * 1e3),
            format!("{:.2}x", r.speedup()),
            format!("{:.1}", f64::from(micro_batch) / r.harness_s),
            format!("{} / {}", mfu(r.harness_s, gemm), mfu(r.pytorch_s, gemm)),
            fsdp.peak_flop_per_s.map_or("-".into(), |p| mfu(r.harness_s, p)),
            format!("{} / {}", gib(r.harness_peak_bytes), gib(r.pytorch_peak_bytes)),
            format!("{:.1e}", r.loss_max_rel_diff),
        ]);
        failed
            .extend(r.failed.iter().map(|f| format!("{model} at micro-batch {micro_batch}: {f}")));
    }
    outln!(
        "one rank on {device:?}, {} compute, median of timed steps; measured {order}x{order} \
         matmul {:.1} GFLOP/s; PyTorch {torch_version}; runs in {}",
        fsdp.param_dtype.name(),
        gemm / 1e9,
        work.display()
    );
    outln!("{table}");
    Ok(report_failed_rounds(&failed))
}
