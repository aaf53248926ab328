//! The performance model: calibration recovers known parameters from synthetic timings, the
//! step simulation keeps its invariants, and the Frontier profile reproduces the paper's
//! qualitative result (FULL_SHARD collapses at 128 nodes, hybrid sharding does not).

use std::collections::BTreeMap;

use shardsweep::launch::slurm::System;
use shardsweep::plan::Strategy;
use shardsweep::predict::collectives::{time_s, CollectiveKind, Group};
use shardsweep::predict::compute::units;
use shardsweep::predict::fit::{fit, FitInput};
use shardsweep::predict::measurements::{point_for, CollectiveSample, UnitSample};
use shardsweep::predict::{Hardware, PerfModel};

fn truth() -> Hardware {
    let mut h = Hardware::fallback();
    h.collective_base_s = 20e-6;
    h.intra_step_s = 3e-6;
    h.pair_bytes_per_s = 8e9;
    h.intra_node_bytes_per_s = 3e9;
    h.net_ring_step_s = 9e-6;
    h.net_tree_step_s = 9e-6;
    h.nic_bytes_per_s = 1.5e9;
    h.ranks_per_nic = 1;
    h.compute_flop_per_s = 4e10;
    h.compute_half_width = 900.0;
    h.data_s_per_pixel = 2e-7;
    h
}

fn close(name: &str, got: f64, want: f64) {
    assert!((got - want).abs() / want < 0.02, "{name}: fitted {got}, true {want}");
}

/// Synthetic timings generated from known parameters: the fit gives them back within 2%.
#[test]
fn calibration_recovers_known_parameters() {
    let h = truth();
    let mut input = FitInput::default();
    let kinds =
        [CollectiveKind::AllGather, CollectiveKind::ReduceScatter, CollectiveKind::AllReduce];
    let groups = [
        Group { ranks: 2, nodes: 1, per_node: 2 },
        Group { ranks: 4, nodes: 1, per_node: 4 },
        Group { ranks: 8, nodes: 1, per_node: 8 },
        Group { ranks: 2, nodes: 2, per_node: 1 },
        Group { ranks: 4, nodes: 4, per_node: 1 },
    ];
    for g in groups {
        for kind in kinds {
            // All-reduces across nodes would take the tree: time rings only there.
            if g.nodes > 1 && kind == CollectiveKind::AllReduce {
                continue;
            }
            for bytes in [8.0, 1e3, 6.4e4, 1e6, 6.7e7] {
                let seconds = time_s(&h, kind, bytes, g);
                input.collectives.push(CollectiveSample { kind, bytes, group: g, seconds });
            }
        }
    }
    let model_scale = [("vit-base", 0.8), ("vit-huge", 1.1), ("vit-3b", 1.0)];
    for (name, scale) in model_scale {
        let m = shardsweep::model::preset(name).unwrap();
        for u in units(&m) {
            for b in [2.0, 4.0] {
                let flop = b * u.forward_flop;
                let seconds = flop / (h.block_flop_per_s(u.width) * scale);
                input.units.push(UnitSample { model: name.into(), width: u.width, flop, seconds });
            }
        }
    }
    input.data_s_per_pixel = vec![2e-7; 10];
    let start = Hardware::fallback();
    let cal = fit("local", &start, BTreeMap::new(), &input);
    let f = &cal.hardware;
    close("collective_base_s", f.collective_base_s, h.collective_base_s);
    close("intra_step_s", f.intra_step_s, h.intra_step_s);
    close("pair_bytes_per_s", f.pair_bytes_per_s, h.pair_bytes_per_s);
    close("intra_node_bytes_per_s", f.intra_node_bytes_per_s, h.intra_node_bytes_per_s);
    close("net_ring_step_s", f.net_ring_step_s, h.net_ring_step_s);
    close("nic_bytes_per_s", f.nic_bytes_per_s, h.nic_bytes_per_s);
    close("data_s_per_pixel", f.data_s_per_pixel, h.data_s_per_pixel);
    // Compute: the curve and the per-model factors are only defined up to a common factor;
    // their product (each model's rate at each of its widths) is what must come back.
    for (name, scale) in model_scale {
        let fitted = cal.model_compute_scale[name];
        let m = shardsweep::model::preset(name).unwrap();
        for w in [m.width as f64, m.decoder_width as f64] {
            close(
                &format!("{name} F({w})"),
                f.block_flop_per_s(w) * fitted,
                h.block_flop_per_s(w) * scale,
            );
        }
    }
    close("compute_half_width", f.compute_half_width, h.compute_half_width);
}

fn frontier() -> PerfModel {
    let (system, _) = System::load("frontier", std::path::Path::new("slurm")).unwrap();
    PerfModel {
        hardware: system.hardware(),
        calibration: None,
        peak_flop_per_s: system.peak_flop_per_s.clone(),
        anchors: Vec::new(),
    }
}

#[test]
fn phases_add_up_and_nothing_is_negative() {
    let model = frontier();
    let knobs = System::load("frontier", std::path::Path::new("slurm"))
        .unwrap()
        .0
        .hardware()
        .measurement_defaults;
    for strategy in
        [Strategy::NoShard, Strategy::FullShard, Strategy::ShardGradOp, Strategy::HybridShard]
    {
        for nodes in [1, 2, 16, 128] {
            let p = point_for("t", "vit-1b", strategy, Some(8), nodes, 8, 32, &knobs).unwrap();
            let r = model.predict(&p);
            let t = &r.times;
            let parts = [
                t.data_s,
                t.forward_s,
                t.backward_s,
                t.recompute_s,
                t.exposed_all_gather_s,
                t.exposed_reduce_scatter_s,
                t.exposed_all_reduce_s,
                t.optimizer_s,
            ];
            assert!(parts.iter().all(|x| *x >= 0.0), "{}: {t:?}", p.id);
            let sum: f64 = parts.iter().sum();
            assert!((sum - t.step_s).abs() < 1e-9 * t.step_s, "{}: {sum} vs {}", p.id, t.step_s);
            // With checkpointing, recompute is one more forward of every block.
            assert!(t.recompute_s > 0.9 * t.forward_s - 1e-12 && t.recompute_s <= t.forward_s);
            let m = &r.memory;
            let sum = m.param_shards + m.grad_shards + m.optimizer_state;
            assert!(m.peak > sum, "{}", p.id);
        }
    }
}

/// Tsaris et al. 2024: FULL_SHARD falls to 7-36% weak-scaling efficiency at 128 nodes while
/// hybrid sharding stays near 100%. The public Frontier figures alone must show that shape.
#[test]
fn full_shard_collapses_at_scale_and_hybrid_does_not() {
    let model = frontier();
    let knobs = System::load("frontier", std::path::Path::new("slurm"))
        .unwrap()
        .0
        .hardware()
        .measurement_defaults;
    let efficiency = |strategy, model_name: &str| {
        let at = |nodes| {
            let p = point_for("t", model_name, strategy, Some(8), nodes, 8, 32, &knobs).unwrap();
            model.predict(&p).images_per_s
        };
        at(128) / (64.0 * at(2))
    };
    for name in ["vit-base", "vit-3b", "vit-15b"] {
        let full = efficiency(Strategy::FullShard, name);
        let hybrid = efficiency(Strategy::HybridShard, name);
        assert!(full < 0.5, "{name}: full_shard at 128 nodes {full}");
        assert!(hybrid > 0.9, "{name}: hybrid_shard at 128 nodes {hybrid}");
    }
}

/// rccl-tests' text layout of `kind` on `hosts` hosts of `per_host` ranks, times from `h`.
fn rccl_tests_text(h: &Hardware, kind: CollectiveKind, hosts: u32, per_host: u32) -> String {
    let name = kind.name();
    let mut out = format!("# Collective test starting: {name}_perf\n# Using devices\n");
    for r in 0..hosts * per_host {
        out += &format!(
            "#  Rank {r:2} Group  0 Pid {r:6} on host{} device {r:2} [0000:01:00] GPU\n",
            r / per_host
        );
    }
    out += "#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n";
    let group = Group { ranks: hosts * per_host, nodes: hosts, per_node: per_host };
    for bytes in [1024u64, 65536, 1 << 20, 1 << 24, 1 << 27] {
        let us = time_s(h, kind, bytes as f64, group) * 1e6;
        out += &format!("{bytes:12}  {:12}     float    none      -1  {us:7.3}  1.00  1.00    N/A  {us:7.3}  1.00  1.00    N/A\n", bytes / 4);
    }
    out
}

/// nccl-tests' `-J` JSON of `kind` on one host of `ranks` ranks, times from `h`.
fn nccl_tests_json(h: &Hardware, kind: CollectiveKind, ranks: u32) -> String {
    let group = Group { ranks, nodes: 1, per_node: ranks };
    let results: Vec<serde_json::Value> = [4096u64, 1 << 18, 1 << 22, 1 << 26]
        .iter()
        .map(|&b| {
            let us = time_s(h, kind, b as f64, group) * 1e6;
            serde_json::json!({"size": b, "count": b / 4, "type": "float", "redop": "sum",
                "root": "    -1", "out_of_place": {"time": us, "alg_bw": 1.0, "bus_bw": 1.0,
                "nwrong": 0.0}, "in_place": {"time": us, "alg_bw": 1.0, "bus_bw": 1.0, "nwrong": 0.0}})
        })
        .collect();
    let devices: Vec<serde_json::Value> = (0..ranks)
        .map(|r| serde_json::json!({"rank": r, "hostname": "host0", "device": r}))
        .collect();
    serde_json::json!({"version": 2, "args": [format!("./build/{}_perf", kind.name()), "-b", "4K"],
        "config": {"ngpus": 1, "devices": devices}, "results": results})
    .to_string()
}

/// Outputs of rccl-tests (text), nccl-tests (JSON) and OSU (text, with its layout) generated from
/// known link figures: read and fitted, they give the figures back within 2%.
#[test]
fn rccl_tests_nccl_tests_json_and_osu_outputs_calibrate_the_network_levels() {
    use shardsweep::predict::collective_files::{read_collectives, Layout};
    let h = truth();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let rccl = write("ag.txt", rccl_tests_text(&h, CollectiveKind::AllGather, 4, 1));
    let json4 = write("rs4.json", nccl_tests_json(&h, CollectiveKind::ReduceScatter, 4));
    let json8 = write("ag8.json", nccl_tests_json(&h, CollectiveKind::AllGather, 8));
    let group = Group { ranks: 2, nodes: 2, per_node: 1 };
    let mut osu = "# OSU MPI Reduce_scatter Latency Test v7.3\n# Datatype: MPI_FLOAT.\n# Size       Avg Latency(us)\n".to_string();
    for bytes in [4u64, 1024, 65536, 1 << 20, 1 << 24] {
        let us = time_s(&h, CollectiveKind::ReduceScatter, bytes as f64, group) * 1e6;
        osu += &format!("{bytes:<10}{us:>18.3}\n");
    }
    let osu = write("osu_reduce_scatter.txt", osu);
    // OSU says nothing of where its ranks ran: the layout must be given.
    let error = read_collectives(&osu, None).unwrap_err().to_string();
    assert!(error.contains("osu_reduce_scatter.txt") && error.contains("--layout"), "{error}");
    let layout: Layout = "2x1".parse().unwrap();
    let mut input = FitInput::default();
    for (path, layout) in [(&rccl, None), (&json4, None), (&json8, None), (&osu, Some(layout))] {
        let samples = read_collectives(path, layout).unwrap();
        assert!(samples.len() >= 4, "{}", path.display());
        input.collectives.extend(samples);
    }
    let cal = fit("local", &Hardware::fallback(), BTreeMap::new(), &input);
    let f = &cal.hardware;
    close("intra_node_bytes_per_s", f.intra_node_bytes_per_s, h.intra_node_bytes_per_s);
    close("intra_step_s", f.intra_step_s, h.intra_step_s);
    close("collective_base_s", f.collective_base_s, h.collective_base_s);
    close("nic_bytes_per_s", f.nic_bytes_per_s, h.nic_bytes_per_s);
    close("net_ring_step_s", f.net_ring_step_s, h.net_ring_step_s);
    // The same through the command, which names where each figure came from.
    let out = dir.path().join("cal.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(["calibrate", "--system", "local", "--layout", "2x1", "--out"])
        .arg(&out)
        .args([
            "--collectives".as_ref(),
            rccl.as_os_str(),
            "--collectives".as_ref(),
            osu.as_os_str(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("timed net collectives"), "{text}");
}

/// A table measured from known parameters at 1, 2, 4 and 8 nodes, with collective timings:
/// fitted on 1 and 2 nodes, the link figures come back within 2%, every prediction at its
/// own measured configuration is that measurement exactly, and the held-out 4- and 8-node rows
/// are predicted from their anchors within 2%, the best strategy right in every cell.
#[test]
fn calibrate_validate_recovers_a_synthetic_sweep_and_scores_its_held_out_part() {
    use shardsweep::predict::measurements::Measured;
    use shardsweep::predict::validate::held_out;
    let h = truth();
    let model = PerfModel {
        hardware: h.clone(),
        calibration: None,
        peak_flop_per_s: BTreeMap::new(),
        anchors: Vec::new(),
    };
    let mut input = FitInput::default();
    for g in [
        Group { ranks: 4, nodes: 1, per_node: 4 },
        Group { ranks: 8, nodes: 1, per_node: 8 },
        Group { ranks: 2, nodes: 2, per_node: 1 },
        Group { ranks: 4, nodes: 4, per_node: 1 },
        Group { ranks: 2, nodes: 1, per_node: 2 },
    ] {
        for bytes in [1e3, 6.4e4, 1e6, 6.7e7] {
            let kind = CollectiveKind::AllGather;
            let seconds = time_s(&h, kind, bytes, g);
            input.collectives.push(CollectiveSample { kind, bytes, group: g, seconds });
        }
    }
    let knobs = h.measurement_defaults.clone();
    for strategy in [Strategy::NoShard, Strategy::FullShard, Strategy::HybridShard] {
        for nodes in [1, 2, 4, 8] {
            let group = (strategy == Strategy::HybridShard).then_some(2);
            let p = point_for("t", "vit-base", strategy, group, nodes, 2, 8, &knobs).unwrap();
            let m = Measured {
                images_per_s: model.model_only(&p).images_per_s,
                source: format!("{}:{nodes}", strategy.name()),
                point: p,
                spread: None,
            };
            if nodes <= 2 {
                input.measured.push(m)
            } else {
                input.held_out.push(m)
            }
        }
    }
    let cal = fit("local", &Hardware::fallback(), BTreeMap::new(), &input);
    let f = &cal.hardware;
    close("intra_node_bytes_per_s", f.intra_node_bytes_per_s, h.intra_node_bytes_per_s);
    close("pair_bytes_per_s", f.pair_bytes_per_s, h.pair_bytes_per_s);
    close("nic_bytes_per_s", f.nic_bytes_per_s, h.nic_bytes_per_s);
    close("net_ring_step_s", f.net_ring_step_s, h.net_ring_step_s);
    assert_eq!(cal.anchors.len(), 6);
    let fitted = PerfModel {
        hardware: Hardware::fallback(),
        anchors: cal.anchors.clone(),
        calibration: Some(cal.clone()),
        peak_flop_per_s: BTreeMap::new(),
    };
    for m in &input.measured {
        let r = fitted.predict(&m.point);
        assert_eq!(r.images_per_s, m.images_per_s, "{}", m.source);
        assert_eq!(r.basis.label(), format!("anchor:{}n-mb8", m.point.nodes));
        assert!(r.images_per_s_low < m.images_per_s && m.images_per_s < r.images_per_s_high);
    }
    let figures = held_out(&cal, &Hardware::fallback(), &BTreeMap::new(), &input.held_out);
    let s = &figures.predictor;
    assert_eq!(s.rows, 6);
    assert!(s.max_abs_error.unwrap() < 0.02, "{s:?}");
    assert_eq!((s.cells, s.best_within_5pct), (2, 2), "{s:?}");
    assert_eq!(s.inside_interval, Some(6));
    assert_eq!(figures.linear.rows, 6);
}

/// `plan --candidates` keeps, per (model, nodes), the best point and those its prediction
/// cannot tell from it: two strategies measured alike at 1 and 2 nodes are both candidates at
/// 2, and at 64 nodes, where FULL_SHARD's ring collapses, only NO_SHARD is.
#[test]
fn plan_candidates_keeps_the_best_strategy_and_its_ties_per_cell() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("measured.csv");
    std::fs::write(
        &table,
        "model,strategy,shard_group,nodes,ranks_per_node,micro_batch,images_per_s\n\
         vit-base,no_shard,,1,8,32,1200\nvit-base,no_shard,,2,8,32,2390\n\
         vit-base,full_shard,,1,8,32,1205\nvit-base,full_shard,,2,8,32,2385\n",
    )
    .unwrap();
    let experiment = dir.path().join("e.toml");
    std::fs::write(
        &experiment,
        "name = \"c\"\n[axes]\nmodel = [\"vit-base\"]\nstrategy = [\"no_shard\", \"full_shard\"]\n\
         nodes = [2, 64]\nranks_per_node = [8]\nmicro_batch = [32]\nactivation_checkpointing = [true]\n\
         param_dtype = [\"bf16\"]\n[settings]\nsteps = 30\nwarmup_steps = 5\ndevice = \"cuda\"\n",
    )
    .unwrap();
    let cal = dir.path().join("cal.json");
    let shardsweep = crate::common::shardsweep_ok;
    let os = std::ffi::OsStr::new;
    shardsweep(&[
        os("calibrate"),
        os("--system"),
        os("frontier"),
        os("--measurements"),
        table.as_os_str(),
        os("--out"),
        cal.as_os_str(),
    ]);
    let plan = shardsweep(&[
        os("plan"),
        experiment.as_os_str(),
        os("--system"),
        os("frontier"),
        os("--calibration"),
        cal.as_os_str(),
        os("--candidates"),
    ]);
    assert!(plan.contains("3 points to run"), "{plan}");
    let rejected =
        plan.lines().find(|l| l.contains("not a candidate")).unwrap_or_else(|| panic!("{plan}"));
    assert!(
        rejected.contains("vit-base-full_shard-n64x8")
            && rejected.contains("below vit-base-no_shard-n64x8"),
        "{rejected}"
    );
    let predicted = shardsweep(&[
        os("predict"),
        experiment.as_os_str(),
        os("--system"),
        os("frontier"),
        os("--calibration"),
        cal.as_os_str(),
        os("--csv"),
    ]);
    let decisions: Vec<String> = predicted
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!("{} {} {}", f[0], f[f.len() - 2], f[f.len() - 1])
        })
        .collect();
    assert!(decisions.iter().all(|d| d.contains(" anchor:2n-mb32 ")), "{decisions:?}");
    assert!(
        decisions
            .iter()
            .any(|d| d.starts_with("vit-base-full_shard-n64x8") && d.ends_with(" slower")),
        "{decisions:?}"
    );
}

/// Allocator peaks from records (active 12% over the model's categories, reserved 25% over
/// active) calibrate the two memory fractions, and predictions carry both peaks.
#[test]
fn device_memory_peaks_calibrate_active_and_reserved_memory() {
    use shardsweep::predict::measurements::MemorySample;
    use shardsweep::predict::memory::peak;
    let knobs = Hardware::fallback().measurement_defaults;
    let mut input = FitInput::default();
    for (strategy, nodes) in
        [(Strategy::FullShard, 1), (Strategy::NoShard, 2), (Strategy::FullShard, 4)]
    {
        let point = point_for("t", "vit-huge", strategy, None, nodes, 8, 32, &knobs).unwrap();
        let active = 1.12 * peak(&point, 0.0).peak;
        input.device_memory.push(MemorySample {
            point,
            active_peak_bytes: active,
            reserved_peak_bytes: 1.25 * active,
        });
    }
    let cal = fit("local", &Hardware::fallback(), BTreeMap::new(), &input);
    close("memory_overhead_fraction", cal.hardware.memory_overhead_fraction, 0.12);
    close("memory_reserved_fraction", cal.hardware.memory_reserved_fraction, 0.25);
    let model = PerfModel {
        hardware: Hardware::fallback(),
        calibration: Some(cal),
        peak_flop_per_s: BTreeMap::new(),
        anchors: Vec::new(),
    };
    let p = &input.device_memory[1];
    let m = model.predict(&p.point).memory;
    close("peak active", m.peak, p.active_peak_bytes);
    close("peak reserved", m.reserved_peak, p.reserved_peak_bytes);
}

/// Collectives with no fixed cost at all fit a base of (almost) zero: the calibration stays
/// finite and is written, and a non-finite figure is refused with its name rather than written
/// as a null no reader takes.
#[test]
fn a_collective_base_fitted_to_zero_keeps_the_calibration_finite() {
    use shardsweep::predict::measurements::Measured;
    let mut input = FitInput::default();
    let group = Group { ranks: 2, nodes: 1, per_node: 2 };
    for bytes in [1e3, 1e5, 1e7] {
        let kind = CollectiveKind::AllReduce;
        input.collectives.push(CollectiveSample { kind, bytes, group, seconds: bytes / 1e9 });
    }
    let knobs = Hardware::fallback().measurement_defaults;
    let point = point_for("t", "vit-tiny", Strategy::NoShard, None, 1, 2, 4, &knobs).unwrap();
    input.measured.push(Measured { point, images_per_s: 100.0, source: "t".into(), spread: None });
    let mut cal = fit("local", &Hardware::fallback(), BTreeMap::new(), &input);
    assert!(cal.parameters.iter().all(|p| p.value.is_finite()), "{:?}", cal.parameters);
    let dir = tempfile::tempdir().unwrap();
    cal.write(&dir.path().join("ok.json")).unwrap();
    cal.parameters[0].value = f64::NAN;
    let error = cal.write(&dir.path().join("nan.json")).unwrap_err().to_string();
    assert!(error.contains("backward_to_forward = NaN"), "{error}");
    assert!(!dir.path().join("nan.json").exists());
}
