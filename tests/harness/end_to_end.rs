//! The whole path with real mpirun ranks: plan, run, records (HDF5 + JSON), analysis, re-runs.

use crate::common::{column, manifest, table, Sweep};

const STEPS: usize = 6;
const WARMUP: usize = 2;

fn experiment() -> String {
    format!(
        r#"
name = "e2e"
[axes]
model = ["vit-tiny"]
strategy = ["no_shard"]
nodes = [1]
ranks_per_node = [2]
micro_batch = [2, 4]
[settings]
steps = {STEPS}
warmup_steps = {WARMUP}
[optimizer]
base_lr = 0.05
"#
    )
}

const POINTS: [&str; 2] = ["vit-tiny-no_shard-n1x2-mb2", "vit-tiny-no_shard-n1x2-mb4"];
/// vit-tiny: root, two encoder blocks, one decoder block.
const UNITS: usize = 4;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[test]
fn a_two_point_sweep_writes_complete_records_and_an_analysis() {
    if !crate::common::full_tier("an end-to-end sweep through mpirun") {
        return;
    }
    let sweep = Sweep::new(&experiment());
    let output = sweep.run(&[]);
    assert!(output.status.success(), "run failed");
    let trainable = shardsweep::model::preset("vit-tiny").unwrap().trainable_params() as u64;

    let mut expected_medians = Vec::new();
    for (point, micro_batch) in POINTS.iter().zip([2u64, 4]) {
        let dir = sweep.point("e2e", point);
        // The manifest: outcome, layout and provenance.
        let m = manifest(&dir);
        assert_eq!(m["outcome"], "ok");
        assert_eq!(m["point"], *point);
        assert_eq!(m["steps_completed"], serde_json::json!([STEPS, STEPS]));
        assert_eq!(
            (m["world_size"].as_u64(), m["global_batch"].as_u64()),
            (Some(2), Some(2 * micro_batch))
        );
        assert_eq!(m["config"]["micro_batch"].as_u64(), Some(micro_batch));
        let p = &m["provenance"];
        assert!(p["torch_version"].as_str().unwrap().starts_with("2.13"), "{p}");
        assert!(p["comm_library"].as_str().unwrap().contains("Open MPI"), "{p}");
        assert!(!p["git_commit"].as_str().unwrap().is_empty());
        assert_eq!(p["ranks"].as_array().unwrap().len(), 2);
        assert_eq!(
            (p["ranks"][1]["node"].as_u64(), p["ranks"][1]["local_rank"].as_u64()),
            (Some(0), Some(1))
        );
        assert!(
            p["env"].as_object().unwrap().keys().any(|k| k.starts_with("OMPI_")),
            "mpirun's environment is recorded"
        );
        assert!(m["started_at"].as_str().unwrap() < m["ended_at"].as_str().unwrap());
        assert!(p["command"][0].as_str().unwrap().ends_with("mpirun"));

        // The HDF5 records.
        let file = hdf5::File::open(dir.join("records.h5")).unwrap();
        assert_eq!(file.attr("world_size").unwrap().read_scalar::<u32>().unwrap(), 2);
        assert_eq!(file.attr("warmup_steps").unwrap().read_scalar::<u32>().unwrap(), WARMUP as u32);
        let step_s = table(&file, "steps/step_s");
        assert_eq!(step_s.dim(), (2, STEPS));
        let phases: f64 = ["data_s", "forward_s", "backward_s", "comm_s", "optimizer_s"]
            .iter()
            .map(|p| table(&file, &format!("steps/{p}")).sum())
            .sum();
        assert!(step_s.iter().all(|t| *t > 0.0 && t.is_finite()));
        assert!(
            phases <= step_s.sum() && phases > 0.5 * step_s.sum(),
            "phases {phases} vs steps {}",
            step_s.sum()
        );
        let loss = table(&file, "steps/loss");
        assert!(loss.iter().all(|l| l.is_finite() && *l > 0.0));
        assert_eq!(column::<u32>(&file, "steps/completed"), [STEPS as u32; 2]);

        // One all-reduce per unit per step per rank, moving the whole model's fp32 gradients.
        let ranks = column::<u32>(&file, "collectives/rank");
        let steps = column::<u32>(&file, "collectives/step");
        let bytes = column::<u64>(&file, "collectives/payload_bytes");
        let groups = column::<u32>(&file, "collectives/group_size");
        let (starts, ends, waits) = (
            column::<f64>(&file, "collectives/start_s"),
            column::<f64>(&file, "collectives/end_s"),
            column::<f64>(&file, "collectives/wait_s"),
        );
        assert_eq!(ranks.len(), 2 * STEPS * UNITS);
        assert!(groups.iter().all(|g| *g == 2));
        assert!(starts.iter().zip(&ends).all(|(s, e)| 0.0 <= *s && s <= e));
        // Reductions start at post-backward and are waited for at the end of backward: what
        // compute waited is part of each call's span, and comm_s is the sum of those waits.
        assert!((0..ranks.len()).all(|i| 0.0 <= waits[i] && waits[i] <= ends[i] - starts[i]));
        let comm_s = table(&file, "steps/comm_s");
        for rank in 0..2 {
            for step in 0..STEPS {
                let calls: Vec<usize> = (0..ranks.len())
                    .filter(|&i| ranks[i] == rank && steps[i] == step as u32)
                    .collect();
                assert_eq!(calls.iter().map(|&i| bytes[i]).sum::<u64>(), 4 * trainable);
                let waited: f64 = calls.iter().map(|&i| waits[i]).sum();
                assert!((waited - comm_s[[rank as usize, step]]).abs() < 1e-9);
            }
        }
        // What the analysis must report for this point, computed here from the records.
        let slowest: Vec<f64> =
            (WARMUP..STEPS).map(|s| step_s[[0, s]].max(step_s[[1, s]])).collect();
        expected_medians.push(median(slowest));

        // The same file read by h5py.
        let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
        let script = "import h5py,sys; f=h5py.File(sys.argv[1]); print(f['steps/loss'].shape, f['collectives/kind'][0].decode(), f.attrs['point'])";
        let out = std::process::Command::new(python)
            .args(["-c", script])
            .arg(dir.join("records.h5"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("(2, {STEPS}) all_reduce {point}")
        );
    }

    // The analysis: summary table, plots and report.
    let report = sweep.results().join("e2e/report");
    let csv = std::fs::read_to_string(report.join("summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |row: &str, name: &str| -> String {
        row.split(',').nth(header.iter().position(|h| *h == name).unwrap()).unwrap().to_string()
    };
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2);
    for (row, (point, expected)) in rows.iter().zip(POINTS.iter().zip(&expected_medians)) {
        assert_eq!(col(row, "point"), *point);
        let step: f64 = col(row, "step_s_median").parse().unwrap();
        assert!((step - expected).abs() <= 1e-12 * expected, "{point}: {step} vs {expected}");
        let images: f64 = col(row, "images_per_s").parse().unwrap();
        let batch: f64 = col(row, "global_batch").parse().unwrap();
        assert!((images - batch / expected).abs() < 1e-9 * images);
        assert_eq!(col(row, "steady_steps"), (STEPS - WARMUP).to_string());
        assert_eq!(col(row, "outcome"), "ok");
    }
    // One definition of measured: calibrated from this sweep's records and analysed again,
    // every point's measured images/s against its prediction is the summary's.
    let sweep_dir = sweep.results().join("e2e");
    let shardsweep = crate::common::shardsweep_ok;
    let calibration = sweep_dir.join("calibration.json");
    let os = |s: &str| std::ffi::OsString::from(s);
    shardsweep(&[
        &os("calibrate"),
        &os("--system"),
        &os("local"),
        &os("--records"),
        sweep_dir.as_os_str(),
        &os("--out"),
        calibration.as_os_str(),
    ]);
    let analysed = shardsweep(&[&os("analyze"), sweep_dir.as_os_str()]);
    assert!(analysed.contains("predicted-best within 5%"), "{analysed}");
    let predicted = std::fs::read_to_string(report.join("predicted_vs_measured.csv")).unwrap();
    assert!(predicted.lines().next().unwrap().ends_with(",basis"), "{predicted}");
    for point in POINTS {
        let summary = rows.iter().find(|r| col(r, "point") == point).unwrap();
        let line = predicted.lines().find(|l| l.starts_with(&format!("{point},"))).unwrap();
        let measured: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        let summarised: f64 = col(summary, "images_per_s").parse().unwrap();
        assert!((measured - summarised).abs() <= 1e-9 * summarised, "{point}: {line}");
        // Predicted from the other micro-batch's measurement, never from its own.
        assert!(line.ends_with(",anchor:1n-mb2") || line.ends_with(",anchor:1n-mb4"), "{line}");
        assert!(!line.ends_with(&format!("mb{}", &point[point.len() - 1..])), "{line}");
    }
    let svg = std::fs::read_to_string(report.join("throughput.svg")).unwrap();
    assert!(POINTS.iter().all(|p| svg.contains(p)), "every point is a labelled bar");
    assert!(svg.contains("images/s") && svg.contains("median throughput"));
    assert!(std::fs::metadata(report.join("throughput.png")).unwrap().len() > 5_000);
    assert!(std::fs::read_to_string(report.join("report.md")).unwrap().contains("throughput.svg"));
}

#[test]
fn a_rerun_keeps_finished_points_and_force_keeps_the_old_attempt() {
    if !crate::common::full_tier("end-to-end sweeps through mpirun") {
        return;
    }
    let sweep = Sweep::new(
        &experiment()
            .replace("micro_batch = [2, 4]", "micro_batch = [2]")
            .replace(&format!("steps = {STEPS}"), "steps = 3")
            .replace(&format!("warmup_steps = {WARMUP}"), "warmup_steps = 1"),
    );
    assert!(sweep.run(&[]).status.success());
    let dir = sweep.point("e2e", POINTS[0]);
    let first = manifest(&dir);

    let again = sweep.run(&[]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already finished"));
    assert_eq!(manifest(&dir), first, "a finished point is not touched");

    assert!(sweep.run(&["--force"]).status.success());
    let forced = manifest(&dir);
    assert_ne!(forced["started_at"], first["started_at"]);
    let attempts: Vec<_> =
        std::fs::read_dir(sweep.results().join("e2e/.attempts").join(POINTS[0])).unwrap().collect();
    assert_eq!(attempts.len(), 1);
    let kept = attempts[0].as_ref().unwrap().path();
    assert_eq!(manifest(&kept), first, "the forced-over attempt is kept whole");
    assert!(kept.join("records.h5").exists());

    // An edited experiment changes the point's digest: the point runs again.
    std::fs::write(
        &sweep.experiment,
        std::fs::read_to_string(&sweep.experiment)
            .unwrap()
            .replace("base_lr = 0.05", "base_lr = 0.04"),
    )
    .unwrap();
    assert!(sweep.run(&[]).status.success());
    assert_ne!(manifest(&dir)["digest"], forced["digest"]);
}

#[test]
fn plan_prints_points_and_rejections_as_table_and_json() {
    let sweep = Sweep::new(&experiment().replace(
        "strategy = [\"no_shard\"]",
        "strategy = [\"no_shard\", \"hybrid_shard\"]\nshard_group = [3]",
    ));
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
            .args(args)
            .arg(&sweep.experiment)
            .output()
            .unwrap()
    };
    let table = run(&["plan"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success());
    assert!(
        text.contains("2 points to run")
            && text.contains(POINTS[0])
            && text.contains("2 points rejected"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_slice(&run(&["plan", "--json"]).stdout).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 2);
    assert_eq!(json["points"][1]["id"], POINTS[1]);
    assert_eq!(json["points"][1]["global_batch"], 8);
    assert!(json["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("shard group of 3 ranks does not divide the world of 2 ranks"));

    std::fs::write(&sweep.experiment, "name = 3\n").unwrap();
    let bad = run(&["plan"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("experiment.toml: 3 problems") && err.contains("name = 3"), "{err}");
}

#[test]
fn bench_compares_the_harness_on_mpi_and_gloo_with_bare_mpi() {
    if !crate::common::full_tier("a benchmark through mpirun") {
        return;
    }
    // Runs the benchmark briefly: no speed is asserted here, only that every row is measured.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(["bench", "--ranks", "2", "--model", "vit-tiny", "--repeats", "3", "--steps", "5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for what in ["all_gather", "reduce_scatter", "all_reduce"] {
        for backend in ["mpi", "gloo"] {
            assert!(
                text.lines().any(|l| l.contains(what) && l.contains(backend) && l.contains(" us")),
                "{what} on {backend} missing:\n{text}"
            );
        }
    }
    assert!(text.lines().any(|l| l.contains("training step") && l.contains(" us")), "{text}");
}

#[test]
fn bench_runs_the_harness_side_by_side_with_pytorch_fsdp() {
    if !crate::common::full_tier("a comparison with PyTorch FSDP under torchrun") {
        return;
    }
    // Both sides under torchrun over gloo, briefly: both measured, and both trained the same
    // thing (the same weights, batches, schedule, no decay) to the same losses. Only the
    // optimizers round differently (PyTorch FSDP's for-loop AdamW, the harness's fused one):
    // equal to the bit over these 5 steps on the development machine, 1.2e-7 after 33.
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bench = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
            .args(["bench", "--pytorch-fsdp", "--ranks", "2", "--model", "vit-tiny"])
            .args(["--steps", "2", "--rounds", "1", "--strategies", "full_shard", "--work"])
            .arg(work.path())
            .output()
            .unwrap()
    };
    let output = bench();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let row = text.lines().find(|l| l.contains("full_shard")).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(row.matches(" ms").count(), 2, "{row}");
    assert!(row.contains("2 / 2"), "{row}");
    assert!(loss_max_rel_diff(row) <= 1e-6, "{row}");
    // The round's folder: its retry's if its first run failed (that is tested on its own).
    let round = ["vit-tiny-full_shard-mb4-0-retry", "vit-tiny-full_shard-mb4-0"]
        .map(|r| work.path().join(r))
        .into_iter()
        .find(|r| r.exists())
        .unwrap();
    let config = std::fs::read_to_string(round.join("pytorch.json"));
    let config: serde_json::Value = serde_json::from_str(&config.unwrap()).unwrap();
    assert_eq!(
        (config["weight_decay"].as_f64(), config["data"].as_array().map(Vec::len)),
        (Some(0.0), Some(2))
    );
    // The harness's side left its spools, the PyTorch side its result; the batches are gone.
    assert!(!work.path().join("vit-tiny-full_shard-mb4-batches-rank0.f32").exists());
    assert!(round.join("harness/ranks/rank-00001.jsonl").exists());
    assert!(round.join("pytorch-out.json").exists());
    // The same comparison again in the same folder is refused, and leaves the first's runs.
    let again = bench();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("an earlier comparison's runs"), "{stderr}");
    assert!(work.path().join("vit-tiny-full_shard-mb4-0/pytorch-out.json").exists());
}

#[test]
fn bench_runs_one_rank_side_by_side_with_pytorch_eager_in_bf16() {
    if !crate::common::full_tier("a comparison with PyTorch under torchrun") {
        return;
    }
    // The single-device comparison a GPU runs, here on the CPU with bf16 compute on both sides
    // (PyTorch's under autocast): both measured, MFU against the measured matmul, no
    // allocator peaks on a CPU.
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(["bench", "--pytorch-eager", "--model", "vit-tiny,vit-mini", "--steps", "2"])
        .args(["--rounds", "1", "--param-dtype", "bf16", "--micro-batch", "2,4", "--work"])
        .arg(work.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("bf16 compute") && text.contains("matmul"), "{text}");
    for (model, micro_batch) in [("vit-tiny", 2), ("vit-tiny", 4), ("vit-mini", 2), ("vit-mini", 4)]
    {
        let row = text
            .lines()
            .find(|l| l.contains(&format!(" {model} ┆ {micro_batch} ")))
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(row.matches(" ms").count(), 2, "{row}");
        assert_eq!(row.matches('%').count(), 2, "{row}");
        assert!(row.contains("- / -"), "{row}");
        // Autocast and the harness's bf16 parameters round differently: close, not equal.
        let diff = loss_max_rel_diff(row);
        assert!(diff > 0.0 && diff < 1e-2, "{row}");
        let config = work.path().join(format!("{model}-eager-bf16-mb{micro_batch}-0/pytorch.json"));
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
        assert_eq!(
            (config["strategy"].as_str(), config["param_dtype"].as_str()),
            (Some("eager"), Some("bf16"))
        );
    }
    let point =
        std::fs::read_to_string(work.path().join("vit-tiny-eager-bf16-mb4-0/harness/point.json"))
            .unwrap();
    assert!(point.contains("\"param_dtype\": \"bf16\""), "{point}");
}

#[test]
fn a_crashed_round_is_run_once_more_and_one_that_crashes_twice_is_reported() {
    if !crate::common::full_tier("a comparison with PyTorch under torchrun") {
        return;
    }
    // A torchrun that fails its 1st, 2nd and 4th starts, as a side's teardown abort does: round
    // 0 fails on both of its runs (PyTorch's side), round 1's harness side fails once and its
    // retry finishes. The table stands on round 1, round 0 is named with its logs, exit 2.
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let torchrun = work.path().join("torchrun");
    let real = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/torchrun");
    let count = work.path().join("starts");
    std::fs::write(
        &torchrun,
        format!(
            "#!/bin/sh\necho x >> '{count}'\nn=$(wc -l < '{count}')\n\
             case $n in 1|2|4) echo 'terminate called without an active exception' >&2; exit 1;; esac\n\
             exec '{real}' \"$@\"\n",
            count = count.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&torchrun, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let runs = work.path().join("runs");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(["bench", "--pytorch-eager", "--model", "vit-tiny", "--steps", "2", "--rounds", "2"])
        .arg("--torchrun")
        .arg(&torchrun)
        .arg("--work")
        .arg(&runs)
        .output()
        .unwrap();
    let (text, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{text}\n{stderr}");
    let row = text.lines().find(|l| l.contains(" vit-tiny ┆ ")).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(row.matches(" ms").count(), 2, "{row}");
    let not_measured: Vec<&str> = stderr.lines().filter(|l| l.contains("not measured")).collect();
    assert_eq!(not_measured.len(), 1, "{stderr}");
    assert!(not_measured[0].contains("round 0:"), "{stderr}");
    for log in
        ["vit-tiny-eager-fp32-mb4-0/pytorch.log", "vit-tiny-eager-fp32-mb4-0-retry/pytorch.log"]
    {
        assert!(not_measured[0].contains(log), "{log}: {stderr}");
    }
    assert!(runs.join("vit-tiny-eager-fp32-mb4-1/harness.log").exists());
    assert!(runs.join("vit-tiny-eager-fp32-mb4-1-retry/harness/ranks/rank-00000.jsonl").exists());
    // A round failed: its batches stay, so that its `pytorch.json` can be run again by hand.
    assert!(runs.join("vit-tiny-eager-fp32-mb4-batches-rank0.f32").exists());
}

#[test]
fn harness_and_pytorch_eager_train_to_the_same_losses_in_fp32() {
    if !crate::common::full_tier("a comparison with PyTorch under torchrun") {
        return;
    }
    // The same weights, batches, masking noise, schedule and decay groups on both sides, and
    // the same libtorch: every step's loss agrees to fp32's last bit or so. A real difference
    // is larger: decaying the biases and norms as well (one group) moves the losses of these
    // steps by 8.6e-7.
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(["bench", "--pytorch-eager", "--model", "vit-tiny", "--steps", "6", "--rounds", "1"])
        .arg("--work")
        .arg(work.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let row = text.lines().find(|l| l.contains(" vit-tiny ")).unwrap_or_else(|| panic!("{text}"));
    assert!(loss_max_rel_diff(row) <= 1e-7, "{row}");
    // The printed figure against both sides' own files, to every digit: nine steps (three of
    // warm-up), on losses that change from step to step.
    let run = work.path().join("vit-tiny-eager-fp32-mb4-0");
    let out = std::fs::read_to_string(run.join("pytorch-out.json")).unwrap();
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pytorch: Vec<f64> =
        out["losses"].as_array().unwrap().iter().map(|l| l.as_f64().unwrap()).collect();
    let spool = std::fs::read_to_string(run.join("harness/ranks/rank-00000.jsonl")).unwrap();
    let harness: Vec<f64> = spool
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64())
        .collect();
    assert_eq!((harness.len(), pytorch.len()), (9, 9), "{spool}");
    for (h, p) in harness.iter().zip(&pytorch) {
        assert!(((h - p) / p).abs() <= 1e-7, "harness {harness:?}\nPyTorch {pytorch:?}");
    }
    assert!(pytorch.windows(2).all(|w| w[0] != w[1]), "{pytorch:?}");
}

/// The last column of a `bench --pytorch-eager` or `--pytorch-fsdp` row: the largest relative
/// loss difference.
fn loss_max_rel_diff(row: &str) -> f64 {
    let cell = row.trim_end().trim_end_matches('│').rsplit('┆').next().unwrap().trim();
    cell.parse().unwrap_or_else(|_| panic!("{row}"))
}

#[test]
fn a_custom_model_with_a_global_batch_trains_through_mpirun() {
    if !crate::common::full_tier("an end-to-end sweep through mpirun") {
        return;
    }
    let sweep = Sweep::new(
        r#"
name = "custom"
[models.my-tiny]
width = 32
depth = 1
heads = 2
patch = 8
image_size = 16
decoder_width = 16
decoder_depth = 1
decoder_heads = 2
[axes]
model = ["my-tiny"]
strategy = ["full_shard"]
nodes = [1]
ranks_per_node = [2]
global_batch = [8]
accumulation = [2]
[settings]
steps = 3
warmup_steps = 1
"#,
    );
    assert!(sweep.run(&["--no-analysis"]).status.success(), "run failed");
    let m = manifest(&sweep.point("custom", "my-tiny-full_shard-n1x2-mb2-acc2"));
    assert_eq!(m["outcome"], "ok");
    assert_eq!(m["global_batch"], 8);
    assert_eq!(m["steps_completed"], serde_json::json!([3, 3]));
    // The ranks built the shape the file defined, carried in the point itself.
    let dir = sweep.point("custom", "my-tiny-full_shard-n1x2-mb2-acc2");
    let point: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("point.json")).unwrap()).unwrap();
    assert_eq!(
        (point["model"]["width"].as_i64(), point["model"]["decoder_width"].as_i64()),
        (Some(32), Some(16))
    );
}

/// Runs `bench --sizes` with `args` and an output file; returns the CSV's rows (fields) after
/// checking its header and that every row's quantiles are ordered.
fn sweep_rows(args: &[&str]) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = dir.path().join("bench.csv");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(["bench", "--sizes", "--out"])
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("backend,collective,group_size,ranks_per_node,nodes,payload_bytes,repeats,median_s,p10_s,p90_s")
    );
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    for row in &rows {
        let [median, p10, p90] = [7, 8, 9].map(|i| row[i].parse::<f64>().unwrap());
        assert!(0.0 < p10 && p10 <= median && median <= p90, "{row:?}");
    }
    rows
}

#[test]
fn bench_sizes_sweeps_collectives_over_message_and_group_sizes_into_a_csv() {
    if !crate::common::full_tier("a collective sweep through mpirun") {
        return;
    }
    // Four ranks as two simulated nodes of two: groups of 2 within a node, 2 across nodes (one
    // rank per node) and 4 over both. Tiny sizes: only the file's shape is asserted.
    let rows = sweep_rows(&[
        "--ranks",
        "4",
        "--ranks-per-node",
        "2",
        "--max-bytes",
        "64",
        "--repeats",
        "3",
        "--warmup",
        "1",
    ]);
    let keys: Vec<String> = rows.iter().map(|r| r[1..6].join(" ")).collect();
    for collective in ["all_gather", "reduce_scatter", "all_reduce"] {
        for bytes in [8, 16, 32, 64] {
            for group in ["2 2 1", "2 1 2"] {
                assert!(keys.contains(&format!("{collective} {group} {bytes}")), "{keys:?}");
            }
        }
    }
    // 8 bytes is two fp32 elements: four ranks gather or scatter no fewer than four.
    assert!(keys.contains(&"all_reduce 4 2 2 8".to_string()));
    assert!(!keys.contains(&"all_gather 4 2 2 8".to_string()));
    assert!(keys.contains(&"all_gather 4 2 2 16".to_string()));
    assert_eq!(rows.len(), 3 * 4 * 2 + 3 + 3 + 4, "{keys:?}");
    assert!(rows.iter().all(|row| (&*row[0], &*row[6]) == ("mpi", "3")), "{rows:?}");
}

#[test]
fn bench_sizes_sweeps_gloo_under_torchrun_without_mpirun() {
    if !crate::common::full_tier("a collective sweep under torchrun") {
        return;
    }
    // The c10d route GPU clusters take with NCCL, here with gloo: torchrun starts the ranks
    // (an mpirun that cannot run shows none is used) and they meet in c10d's store.
    let rows = sweep_rows(&[
        "--ranks",
        "2",
        "--backend",
        "gloo",
        "--torchrun",
        ".venv/bin/torchrun",
        "--mpirun",
        "/nonexistent/mpirun",
        "--max-bytes",
        "16",
        "--repeats",
        "2",
        "--warmup",
        "1",
    ]);
    let keys: Vec<String> = rows.iter().map(|r| r[..7].join(" ")).collect();
    for collective in ["all_gather", "reduce_scatter", "all_reduce"] {
        for bytes in [8, 16] {
            assert!(keys.contains(&format!("gloo {collective} 2 2 1 {bytes} 2")), "{keys:?}");
        }
    }
    assert_eq!(rows.len(), 6, "{keys:?}");
    // An existing file is never replaced.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = dir.path().join("bench.csv");
    std::fs::write(&out, "an earlier sweep\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(["bench", "--sizes", "--backend", "gloo", "--ranks", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("an earlier sweep's"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "an earlier sweep\n");
}
