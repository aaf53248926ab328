//! Numbers you can trust: every sharding strategy and knob trains to the same losses and final
//! parameters as one rank on the same global batch, issues the collectives PyTorch FSDP would,
//! and accounts for the memory FSDP's model says it holds; on MPI and on c10d's Gloo, which
//! agree with each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::{column, global_losses, manifest, Sweep};

const STEPS: usize = 10;
/// vit-tiny: root, two encoder blocks, one decoder block.
const MODEL: &str = "vit-tiny";

/// The collective libraries the equality tests run on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Mpi,
    Gloo,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Mpi => "mpi",
            Backend::Gloo => "gloo",
        }
    }
}

fn settings(backend: Backend) -> String {
    format!("[settings]\nsteps = {STEPS}\nwarmup_steps = 1\nsave_parameters = true\nbackend = \"{}\"\n[optimizer]\nbase_lr = 0.1\nlr_warmup_steps = 2\n", backend.name())
}

/// Runs `axes` once per test binary and returns the sweep folder's points.
fn sweep(cell: &'static OnceLock<(Sweep, PathBuf)>, name: &str, axes: &str) -> &'static Path {
    sweep_on(cell, name, axes, Backend::Mpi)
}

fn sweep_on(
    cell: &'static OnceLock<(Sweep, PathBuf)>,
    name: &str,
    axes: &str,
    backend: Backend,
) -> &'static Path {
    let (_, dir) = cell.get_or_init(|| {
        let sweep = Sweep::new(&format!("name = \"{name}\"\n{axes}\n{}", settings(backend)));
        let dir = sweep.results().join(name);
        if !sweep.run(&["--no-analysis"]).status.success() {
            // A point that crashed (a rank's port taken between its choice and its bind, a
            // peer lost under load) is what the retry policy runs again: show why, then do so.
            // A failure that repeats fails the test.
            for point in std::fs::read_dir(&dir).unwrap().flatten() {
                let stderr = std::fs::read_to_string(point.path().join("stderr.log"));
                let manifest = std::fs::read_to_string(point.path().join("manifest.json"));
                if manifest.is_ok_and(|m| !m.contains("\"outcome\": \"ok\"")) {
                    let head: String =
                        stderr.unwrap_or_default().lines().take(40).collect::<Vec<_>>().join("\n");
                    eprintln!(
                        "{} did not finish; its stderr begins:\n{head}",
                        point.path().display()
                    );
                }
            }
            let again = sweep.run(&["--no-analysis"]);
            assert!(again.status.success(), "sweep {name} failed twice");
        }
        (sweep, dir)
    });
    dir
}

/// One rank with the whole global batch of 8, the same batch over two ranks, and (a control)
/// one rank with only the first 4 images.
fn reference() -> &'static Path {
    static CELL: OnceLock<(Sweep, PathBuf)> = OnceLock::new();
    sweep(&CELL, "reference", &format!("zip = [[\"ranks_per_node\", \"micro_batch\"]]\n[axes]\nmodel = [\"{MODEL}\"]\nstrategy = [\"no_shard\"]\nnodes = [1]\nranks_per_node = [1, 2, 1]\nmicro_batch = [8, 4, 4]\n"))
}

/// Every strategy (hybrid with groups of one rank, one node and the whole world), with and
/// without activation checkpointing and gradient accumulation, on 4 ranks in 2 simulated nodes.
fn strategies(backend: Backend) -> &'static Path {
    static MPI: OnceLock<(Sweep, PathBuf)> = OnceLock::new();
    static GLOO: OnceLock<(Sweep, PathBuf)> = OnceLock::new();
    sweep_on(
        if backend == Backend::Mpi { &MPI } else { &GLOO },
        "strategies",
        &format!(
            "zip = [[\"micro_batch\", \"accumulation\"]]\n[axes]\nmodel = [\"{MODEL}\"]\nstrategy = [\"no_shard\", \"full_shard\", \"shard_grad_op\", \"hybrid_shard\", \"hybrid_shard_zero2\"]\nshard_group = [1, 2, 4]\nnodes = [2]\nranks_per_node = [2]\nmicro_batch = [2, 1]\naccumulation = [1, 2]\nactivation_checkpointing = [false, true]\n"
        ),
        backend,
    )
}

/// The prefetch orders and the rate limiter, on the strategies that gather in backward.
fn knobs(backend: Backend) -> &'static Path {
    static MPI: OnceLock<(Sweep, PathBuf)> = OnceLock::new();
    static GLOO: OnceLock<(Sweep, PathBuf)> = OnceLock::new();
    sweep_on(
        if backend == Backend::Mpi { &MPI } else { &GLOO },
        "knobs",
        &format!(
            "[axes]\nmodel = [\"{MODEL}\"]\nstrategy = [\"full_shard\", \"hybrid_shard\"]\nnodes = [2]\nranks_per_node = [2]\nmicro_batch = [2]\nbackward_prefetch = [\"post\", \"none\"]\nactivation_checkpointing = [false, true]\nlimit_all_gathers = [true, false]\n[[exclude]]\nlimit_all_gathers = false\nbackward_prefetch = \"none\"\n"
        ),
        backend,
    )
}

fn points(dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").exists())
        .collect();
    points.sort();
    points
}

fn parameters(point: &Path) -> BTreeMap<String, Vec<f32>> {
    let file = hdf5::File::open(point.join("parameters.h5")).unwrap();
    file.member_names()
        .unwrap()
        .into_iter()
        .map(|name| (name.clone(), column::<f32>(&file, &name)))
        .collect()
}

fn assert_same_training(point: &Path, reference: &Path) {
    let name = point.file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(manifest(point)["outcome"], "ok", "{name}");
    let (losses, expected) = (global_losses(point), global_losses(reference));
    assert_eq!(losses.len(), STEPS, "{name}");
    for (step, (a, b)) in expected.iter().zip(&losses).enumerate() {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{name} step {step}: loss {b} vs {a} on one rank");
    }
    let (params, expected) = (parameters(point), parameters(reference));
    assert_eq!(params.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    // Relative to the unit's norm, within 1e-4: AdamW divides each gradient by its own running
    // magnitude, so elements whose gradients are at rounding level (summed in another order
    // over ranks) take updates of either sign; over 10 steps units drift apart by up to ~2e-5
    // of their norm while every loss agrees within 1e-5. A different batch moves them ~1e-2.
    for (unit, want) in &expected {
        let got = &params[unit];
        assert_eq!(got.len(), want.len(), "{name} {unit}");
        let norm = want.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        let distance =
            got.iter().zip(want).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>().sqrt();
        assert!(
            distance <= 1e-4 * norm,
            "{name} {unit}: parameters differ by {distance} (norm {norm})"
        );
        eprintln!("{name} {unit}: relative parameter distance {:.2e}", distance / norm);
    }
}

#[test]
fn the_single_rank_reference_trains() {
    let losses = global_losses(&reference().join("vit-tiny-no_shard-n1x1-mb8"));
    assert!(losses[STEPS - 1] < 0.8 * losses[0], "{losses:?}");
}

#[test]
fn no_shard_on_two_ranks_matches_one_rank() {
    assert_same_training(
        &reference().join("vit-tiny-no_shard-n1x2-mb4"),
        &reference().join("vit-tiny-no_shard-n1x1-mb8"),
    );
}

fn every_strategy_matches_one_rank(backend: Backend) {
    let all = points(strategies(backend));
    // 5 strategies, the hybrid ones with three group sizes: 9, x2 checkpointing, x2 accumulation.
    assert_eq!(all.len(), 36, "{all:?}");
    for point in all {
        assert_same_training(&point, &reference().join("vit-tiny-no_shard-n1x1-mb8"));
    }
}

#[test]
fn every_strategy_with_checkpointing_and_accumulation_matches_one_rank() {
    if !crate::common::full_tier("it runs the every-strategy sweep") {
        return;
    }
    every_strategy_matches_one_rank(Backend::Mpi);
}

#[test]
fn every_strategy_with_checkpointing_and_accumulation_matches_one_rank_on_gloo() {
    if !crate::common::full_tier("it runs the every-strategy sweep on gloo") {
        return;
    }
    every_strategy_matches_one_rank(Backend::Gloo);
}

fn every_knob_matches_one_rank(backend: Backend) {
    let all = points(knobs(backend));
    assert_eq!(all.len(), 12, "{all:?}");
    for point in all {
        assert_same_training(&point, &reference().join("vit-tiny-no_shard-n1x1-mb8"));
    }
}

#[test]
fn every_prefetch_order_and_rate_limit_matches_one_rank() {
    if !crate::common::full_tier("it runs the sweep of every prefetch order and rate limit") {
        return;
    }
    every_knob_matches_one_rank(Backend::Mpi);
}

#[test]
fn every_prefetch_order_and_rate_limit_matches_one_rank_on_gloo() {
    if !crate::common::full_tier("it runs the sweep of every prefetch order and rate limit on gloo")
    {
        return;
    }
    every_knob_matches_one_rank(Backend::Gloo);
}

/// The same point on Gloo and on MPI: the same losses (within fp32 summation order).
#[test]
fn gloo_and_mpi_train_to_the_same_losses() {
    if !crate::common::full_tier("it runs the every-strategy sweeps on both backends") {
        return;
    }
    let gloo = points(strategies(Backend::Gloo)).into_iter().chain(points(knobs(Backend::Gloo)));
    let mut compared = 0;
    for point in gloo {
        let name = point.file_name().unwrap().to_string_lossy().to_string();
        let id = name.strip_suffix("-gloo").unwrap_or_else(|| panic!("{name}: no -gloo suffix"));
        let mpi_point = [strategies(Backend::Mpi), knobs(Backend::Mpi)]
            .iter()
            .map(|dir| dir.join(id))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{id}: no MPI twin"));
        assert_eq!(manifest(&point)["config"]["settings"]["backend"], "gloo", "{name}");
        let (a, b) = (global_losses(&mpi_point), global_losses(&point));
        assert_eq!(a.len(), b.len(), "{name}");
        for (step, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * x.abs(), "{name} step {step}: gloo {y} vs mpi {x}");
        }
        compared += 1;
    }
    assert_eq!(compared, 48);
}

#[test]
#[should_panic(expected = "vit-tiny-no_shard-n1x1-mb4 step 0: loss")]
fn a_different_global_batch_is_caught() {
    // The comparison can fail: half of the global batch trains to other losses.
    assert_same_training(
        &reference().join("vit-tiny-no_shard-n1x1-mb4"),
        &reference().join("vit-tiny-no_shard-n1x1-mb8"),
    );
}

#[test]
fn a_different_global_batch_moves_parameters_far_beyond_the_tolerance() {
    let (a, b) = (
        parameters(&reference().join("vit-tiny-no_shard-n1x1-mb4")),
        parameters(&reference().join("vit-tiny-no_shard-n1x1-mb8")),
    );
    let distance: f64 = a
        .values()
        .flatten()
        .zip(b.values().flatten())
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.values().flatten().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
    assert!(distance > 1e-3 * norm, "relative distance {}", distance / norm);
}

/// Collective calls and bytes per rank per step that PyTorch FSDP issues (section 1.3 of the
/// project's FSDP notes), from the model's unit sizes alone: (all-gathers, reduce-scatters,
/// all-reduces, bytes sent per rank by bandwidth-optimal algorithms). A group of one rank
/// communicates nothing.
fn fsdp_formula(
    strategy: &str,
    world: i64,
    shard_group: i64,
    accumulation: i64,
    units: &[i64],
) -> (usize, usize, usize, f64) {
    let (s, r, a, u) = (shard_group, world / shard_group, accumulation, units.len());
    let padded: Vec<i64> = units.iter().map(|n| (n + s - 1) / s * s).collect();
    let (p, p_root) = (padded.iter().sum::<i64>() as f64, padded[0] as f64);
    let (b_p, b_r) = (4.0, 4.0);
    let intra = |g: i64| (g - 1) as f64 / g as f64;
    let inter = if r > 1 { 2.0 * (r - 1) as f64 / r as f64 * p * b_r / s as f64 } else { 0.0 };
    let reduce_across = if r > 1 { u } else { 0 };
    let (twice, once) = if s > 1 { (a as usize * (2 * u - 1), u) } else { (0, 0) };
    match strategy {
        "no_shard" => (0, 0, u, 2.0 * intra(world) * p * b_r),
        "full_shard" => {
            (twice, u, 0, intra(world) * (a as f64 * (2.0 * p - p_root) * b_p + p * b_r))
        }
        "shard_grad_op" => (u, u, 0, intra(world) * p * (b_p + b_r)),
        "hybrid_shard" => (
            twice,
            once,
            reduce_across,
            intra(s) * (a as f64 * (2.0 * p - p_root) * b_p + p * b_r) + inter,
        ),
        "hybrid_shard_zero2" => (once, once, reduce_across, intra(s) * p * (b_p + b_r) + inter),
        other => panic!("unknown strategy {other}"),
    }
}

fn unit_sizes() -> Vec<i64> {
    let model =
        shardsweep::model::Mae::new(shardsweep::model::preset(MODEL).unwrap(), tch::Device::Cpu);
    model.units().iter().map(|u| u.numel()).collect()
}

#[test]
fn recorded_collectives_match_fsdp_counts_and_bytes() {
    if !crate::common::full_tier("it runs the every-strategy sweep") {
        return;
    }
    collectives_match_fsdp(Backend::Mpi);
}

#[test]
fn recorded_collectives_match_fsdp_counts_and_bytes_on_gloo() {
    if !crate::common::full_tier("it runs the every-strategy sweep on gloo") {
        return;
    }
    collectives_match_fsdp(Backend::Gloo);
}

fn collectives_match_fsdp(backend: Backend) {
    let units = unit_sizes();
    for point in points(strategies(backend)).into_iter().chain(points(knobs(backend))) {
        let m = manifest(&point);
        let config = &m["config"];
        let strategy = config["strategy"].as_str().unwrap();
        let shard_group = config["parallel"]["shard_group"].as_i64().unwrap();
        let accumulation = config["parallel"]["accumulation"].as_i64().unwrap();
        let world = m["world_size"].as_i64().unwrap();
        let (ag, rs, ar, traffic) =
            fsdp_formula(strategy, world, shard_group, accumulation, &units);

        let file = hdf5::File::open(point.join("records.h5")).unwrap();
        let (ranks, steps) =
            (column::<u32>(&file, "collectives/rank"), column::<u32>(&file, "collectives/step"));
        let kinds: Vec<String> = file
            .dataset("collectives/kind")
            .unwrap()
            .read_raw::<hdf5::types::VarLenUnicode>()
            .unwrap()
            .iter()
            .map(|k| k.to_string())
            .collect();
        let (bytes, groups) = (
            column::<u64>(&file, "collectives/payload_bytes"),
            column::<u32>(&file, "collectives/group_size"),
        );
        let name = point.file_name().unwrap().to_string_lossy().to_string();
        // Exposed time: none beyond the call's span (every collective is started ahead of its
        // wait: gathers by prefetching, reductions at post-backward).
        let (starts, ends, waits) = (
            column::<f64>(&file, "collectives/start_s"),
            column::<f64>(&file, "collectives/end_s"),
            column::<f64>(&file, "collectives/wait_s"),
        );
        for i in 0..kinds.len() {
            let span = ends[i] - starts[i];
            assert!(
                waits[i] >= 0.0 && waits[i] <= span + 1e-9,
                "{name}: waited {} of {span}",
                waits[i]
            );
        }
        // MPI and Gloo run collectives on host threads: no stream time, so none is claimed.
        let streams = column::<f64>(&file, "collectives/stream_s");
        assert!(streams.iter().all(|s| s.is_nan()), "{name}: stream times from a host backend");
        let comm_s = file.dataset("steps/comm_s").unwrap().read_2d::<f64>().unwrap();
        assert!(
            (comm_s.sum() - waits.iter().sum::<f64>()).abs() < 1e-6,
            "{name}: comm_s is the time waited"
        );
        for rank in 0..world as u32 {
            for step in 0..STEPS as u32 {
                let calls: Vec<usize> =
                    (0..ranks.len()).filter(|&i| ranks[i] == rank && steps[i] == step).collect();
                let count = |kind: &str| calls.iter().filter(|&&i| kinds[i] == kind).count();
                assert_eq!(
                    (count("all_gather"), count("reduce_scatter"), count("all_reduce")),
                    (ag, rs, ar),
                    "{name} rank {rank} step {step}"
                );
                let sent: f64 = calls
                    .iter()
                    .map(|&i| {
                        let g = f64::from(groups[i]);
                        let factor = if kinds[i] == "all_reduce" {
                            2.0 * (g - 1.0) / g
                        } else {
                            (g - 1.0) / g
                        };
                        bytes[i] as f64 * factor
                    })
                    .sum();
                assert!(
                    (sent - traffic).abs() <= 1e-9 * traffic.max(1.0),
                    "{name} rank {rank} step {step}: {sent} bytes vs {traffic}"
                );
                // Groups: shard groups gather and scatter, replica groups all-reduce.
                for &i in &calls {
                    let expected =
                        if kinds[i] == "all_reduce" { world / shard_group } else { shard_group };
                    assert_eq!(i64::from(groups[i]), expected, "{name}: {} group", kinds[i]);
                }
            }
        }
    }
}

#[test]
fn memory_accounting_matches_fsdp_model_states() {
    if !crate::common::full_tier("it runs the every-strategy sweep") {
        return;
    }
    let units = unit_sizes();
    for point in points(strategies(Backend::Mpi)) {
        let m = manifest(&point);
        let shard_group = m["config"]["parallel"]["shard_group"].as_i64().unwrap();
        let strategy = m["config"]["strategy"].as_str().unwrap().to_string();
        let padded: Vec<i64> =
            units.iter().map(|n| (n + shard_group - 1) / shard_group * shard_group).collect();
        let total: i64 = padded.iter().sum();
        let file = hdf5::File::open(point.join("records.h5")).unwrap();
        let table =
            |name: &str| file.dataset(&format!("memory/{name}")).unwrap().read_2d::<u64>().unwrap();
        let name = point.file_name().unwrap().to_string_lossy().to_string();
        // Section 1.4: fp32 parameter and gradient shards 4P/S each, AdamW moments 8P/S.
        assert!(
            table("param_shards_bytes").iter().all(|&b| b as i64 == 4 * total / shard_group),
            "{name}"
        );
        assert!(
            table("grad_shards_bytes").iter().all(|&b| b as i64 == 4 * total / shard_group),
            "{name}"
        );
        assert!(
            table("optimizer_state_bytes").iter().all(|&b| b as i64 == 8 * total / shard_group),
            "{name}"
        );
        let gathered = table("gathered_params_peak_bytes");
        let largest_block = *padded[1..].iter().max().unwrap();
        let peak = gathered.iter().copied().max().unwrap() as i64;
        match strategy.as_str() {
            // Kept from forward to the end of backward: every unit at once.
            "shard_grad_op" | "hybrid_shard_zero2" | "no_shard" => {
                assert_eq!(peak, 4 * total, "{name}")
            }
            // Freed after use: the root plus at most the current and the prefetched block.
            _ => assert!(
                peak <= 4 * (padded[0] + 2 * largest_block)
                    && peak >= 4 * (padded[0] + largest_block),
                "{name}: {peak}"
            ),
        }
        unsharded_grads_as_predicted(&point);
    }
}

/// The memory model's unsharded gradients against the account's peak over the run: the
/// current unit's, its cast to reduce_dtype, the one in flight and, with accumulation, every
/// unit's accumulated under no_sync.
fn unsharded_grads_as_predicted(point: &Path) {
    let spec = shardsweep::plan::read_point(point).unwrap();
    let predicted = shardsweep::predict::memory::peak(&spec, 0.0).unsharded_grads;
    let file = hdf5::File::open(point.join("records.h5")).unwrap();
    let measured = file
        .dataset("memory/unsharded_grads_peak_bytes")
        .unwrap()
        .read_raw::<u64>()
        .unwrap()
        .into_iter()
        .max()
        .unwrap() as f64;
    // Equal but for flat parameters' padding (vit-tiny's blocks are alike and its root is
    // smaller than a block, so the model's largest units are where the account finds them).
    assert!(
        (predicted - measured).abs() <= 0.01 * measured,
        "{}: predicted {predicted} B, measured {measured} B",
        point.display()
    );
}

/// bf16 parameters: all-gathers move half the bytes, reductions stay fp32, training follows
/// fp32 closely; checkpointed blocks record their recompute time.
#[test]
fn bf16_parameters_gather_half_the_bytes_and_train() {
    static CELL: OnceLock<(Sweep, PathBuf)> = OnceLock::new();
    let dir = sweep(&CELL, "mixed", &format!("[axes]\nmodel = [\"{MODEL}\"]\nstrategy = [\"full_shard\"]\nnodes = [2]\nranks_per_node = [2]\nmicro_batch = [2]\naccumulation = [1, 2]\nparam_dtype = [\"bf16\"]\nactivation_checkpointing = [true]\n"));
    // With accumulation, no_sync holds bf16 gradients and each reduction casts to fp32.
    unsharded_grads_as_predicted(&dir.join("vit-tiny-full_shard-n2x2-mb2-acc2-ac-pbf16"));
    let point = dir.join("vit-tiny-full_shard-n2x2-mb2-ac-pbf16");
    let units = unit_sizes();
    let file = hdf5::File::open(point.join("records.h5")).unwrap();
    let kinds: Vec<String> = file
        .dataset("collectives/kind")
        .unwrap()
        .read_raw::<hdf5::types::VarLenUnicode>()
        .unwrap()
        .iter()
        .map(|k| k.to_string())
        .collect();
    let dtypes: Vec<String> = file
        .dataset("collectives/dtype")
        .unwrap()
        .read_raw::<hdf5::types::VarLenUnicode>()
        .unwrap()
        .iter()
        .map(|k| k.to_string())
        .collect();
    let (unit, bytes) = (
        column::<u32>(&file, "collectives/unit"),
        column::<u64>(&file, "collectives/payload_bytes"),
    );
    for i in 0..kinds.len() {
        let padded = ((units[unit[i] as usize] + 3) / 4 * 4) as u64;
        match kinds[i].as_str() {
            "all_gather" => assert_eq!((dtypes[i].as_str(), bytes[i]), ("bfloat16", 2 * padded)),
            _ => assert_eq!((dtypes[i].as_str(), bytes[i]), ("float32", 4 * padded)),
        }
    }
    unsharded_grads_as_predicted(&point);
    let (losses, reference) =
        (global_losses(&point), global_losses(&reference().join("vit-tiny-no_shard-n1x1-mb8")));
    for (a, b) in losses.iter().zip(&reference) {
        assert!((a - b).abs() < 2e-2 * b, "bf16 {a} vs fp32 {b}");
    }
    // Per-unit times: blocks are recomputed, the root never is.
    let (unit, recompute) =
        (column::<u32>(&file, "units/unit"), column::<f64>(&file, "units/recompute_s"));
    let forward = column::<f64>(&file, "units/forward_s");
    assert_eq!(unit.len(), 4 * STEPS * units.len());
    for i in 0..unit.len() {
        assert!(forward[i] > 0.0);
        assert_eq!(recompute[i] > 0.0, unit[i] != 0, "unit {} recompute {}", unit[i], recompute[i]);
    }
}

/// `reduce_dtype = "bf16"` on gloo (as on NCCL): every gradient reduction (no_shard's
/// all-reduce, full_shard's reduce-scatter, the hybrid pair) runs in bf16 while gathers stay
/// fp32, and training stays within bf16's rounding of the same point reduced in fp32 without
/// matching it.
#[test]
fn bf16_reductions_reduce_in_bf16_and_train_on_gloo() {
    if !crate::common::full_tier("it runs the every-strategy sweep on gloo") {
        return;
    }
    static CELL: OnceLock<(Sweep, PathBuf)> = OnceLock::new();
    let dir = sweep_on(&CELL, "bf16_reductions", &format!("[axes]\nmodel = [\"{MODEL}\"]\nstrategy = [\"no_shard\", \"full_shard\", \"hybrid_shard\"]\nshard_group = [2]\nnodes = [2]\nranks_per_node = [2]\nmicro_batch = [2]\nreduce_dtype = [\"bf16\"]\n"), Backend::Gloo);
    let all = points(dir);
    assert_eq!(all.len(), 3, "{all:?}");
    for point in all {
        let name = point.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(manifest(&point)["outcome"], "ok", "{name}");
        let file = hdf5::File::open(point.join("records.h5")).unwrap();
        let text = |column: &str| -> Vec<String> {
            let data = file.dataset(column).unwrap();
            let values = data.read_raw::<hdf5::types::VarLenUnicode>().unwrap();
            values.iter().map(|v| v.to_string()).collect()
        };
        let (kinds, dtypes) = (text("collectives/kind"), text("collectives/dtype"));
        let expected: &[&str] = match name.split('-').nth(2).unwrap() {
            "no_shard" => &["all_reduce"],
            "full_shard" => &["all_gather", "reduce_scatter"],
            _ => &["all_gather", "all_reduce", "reduce_scatter"],
        };
        let seen: std::collections::BTreeSet<&str> = kinds.iter().map(String::as_str).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected, "{name}");
        for (kind, dtype) in kinds.iter().zip(&dtypes) {
            let want = if kind == "all_gather" { "float32" } else { "bfloat16" };
            assert_eq!(dtype, want, "{name}: {kind}");
        }
        // The same point with fp32 reductions, from the strategy sweep on gloo.
        let fp32 = strategies(Backend::Gloo).join(name.replace("-rbf16", ""));
        let (losses, expected) = (global_losses(&point), global_losses(&fp32));
        assert_eq!(losses.len(), STEPS, "{name}");
        let worst =
            losses.iter().zip(&expected).map(|(a, b)| ((a - b) / b).abs()).fold(0.0, f64::max);
        eprintln!("{name}: largest relative loss difference from fp32 reductions {worst:e}");
        assert!(worst < 1e-3, "{name}: bf16 reductions moved the loss by {worst:e}");
        assert!(worst > 1e-6, "{name}: bf16 reductions gave fp32's losses ({worst:e})");
    }
}

/// `limit_all_gathers`: with it, never more than two all-gathers in flight; without it the
/// forward issues every later block's gather at once (vit-tiny: three blocks).
fn rate_limit_caps_gathers_in_flight(backend: Backend) {
    for point in points(knobs(backend)) {
        let m = manifest(&point);
        let limited = m["config"]["parallel"]["limit_all_gathers"].as_bool().unwrap();
        let file = hdf5::File::open(point.join("records.h5")).unwrap();
        let in_flight = column::<u32>(&file, "collectives/in_flight");
        let most = in_flight.iter().copied().max().unwrap();
        let name = point.file_name().unwrap().to_string_lossy().to_string();
        if limited {
            assert_eq!(most, 2, "{name}: {most} gathers in flight under the limit");
        } else {
            assert_eq!(most, 3, "{name}: {most} gathers in flight without the limit");
        }
    }
}

#[test]
fn limit_all_gathers_caps_gathers_in_flight_at_two() {
    if !crate::common::full_tier("it runs the sweep of every prefetch order and rate limit") {
        return;
    }
    rate_limit_caps_gathers_in_flight(Backend::Mpi);
}

#[test]
fn limit_all_gathers_caps_gathers_in_flight_at_two_on_gloo() {
    if !crate::common::full_tier("it runs the sweep of every prefetch order and rate limit on gloo")
    {
        return;
    }
    rate_limit_caps_gathers_in_flight(Backend::Gloo);
}
