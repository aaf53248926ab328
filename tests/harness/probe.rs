//! The linear probe on real images: scikit-learn's digits (installed by setup.sh), made into an
//! image set by the real commands, a short pretraining through mpirun, then probes of the
//! trained and of the initial encoder.

use std::process::Command;

fn shardsweep(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn a_digits_pretrained_tiny_encoder_beats_its_initialisation_in_a_linear_probe() {
    if !crate::common::full_tier("a long pretraining and probe") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (pngs, set) = (dir.path().join("digits"), dir.path().join("digits.h5"));
    let out = shardsweep(&["data", "digits", "--out", pngs.to_str().unwrap()]);
    assert!(out.contains("1797 digits"), "{out}");
    let out = shardsweep(&[
        "data",
        "import",
        pngs.to_str().unwrap(),
        "--out",
        set.to_str().unwrap(),
        "--size",
        "32",
    ]);
    // floor(0.2 n) of each digit's ~180 images held out: 355 of 1797.
    assert!(out.contains("1797 images in 10 classes (1442 train, 355 val), 0 skipped"), "{out}");

    let sweep = crate::common::Sweep::new(&format!(
        r#"
name = "probe"
[axes]
model = ["vit-tiny"]
strategy = ["no_shard"]
nodes = [1]
ranks_per_node = [1]
micro_batch = [64]
data = ["{}"]
[settings]
steps = 1000
warmup_steps = 2
save_parameters = true
[optimizer]
base_lr = 0.01
lr_warmup_steps = 20
"#,
        set.display()
    ));
    assert!(sweep.run(&["--no-analysis"]).status.success());
    let point = sweep.point("probe", "vit-tiny-no_shard-n1x1-mb64-ddigits");
    let records = hdf5::File::open(point.join("records.h5")).unwrap();
    let read_bytes: Vec<u64> = records.dataset("loader/read_bytes").unwrap().read_raw().unwrap();
    assert!(read_bytes.iter().all(|&b| b == 64 * 32 * 32 * 3), "{read_bytes:?}");

    let mut top1 = Vec::new();
    for (flag, file) in [(None, "probe.json"), (Some("--random-init"), "probe-random-init.json")] {
        let mut args = vec!["probe", point.to_str().unwrap(), "--pool", "mean"];
        args.extend(flag);
        let out = shardsweep(&args);
        assert!(out.contains("top-1") && out.contains("355 val images"), "{out}");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(point.join(file)).unwrap()).unwrap();
        let (t1, t5) = (json["top1"].as_f64().unwrap(), json["top5"].as_f64().unwrap());
        assert_eq!((json["classes"].as_u64(), json["val_images"].as_u64()), (Some(10), Some(355)));
        // Ten classes: chance is 10% top-1 and 50% top-5; frozen tiny encoders, trained or
        // not, measured 80-86% top-1 and 98-99% top-5.
        assert!(t1 > 0.6 && t5 >= t1 && t5 > 0.9, "{file}: top-1 {t1}, top-5 {t5}");
        top1.push(t1);
    }
    eprintln!("top-1: pretrained {:.4}, random init {:.4}", top1[0], top1[1]);
    // 1000 steps of pretraining, mean-pooled features: over seeds 0 to 3 the pretrained encoder
    // measured 3.4 to 8.2 points of top-1 above its initialisation (87.0-92.4% against
    // 81.1-85.9%); 200 steps were not enough (below the initialisation). The margin asked for
    // is 2 points.
    assert!(top1[0] >= top1[1] + 0.02, "pretrained {} vs random init {}", top1[0], top1[1]);

    // The report gives accuracy against model size from the probes' files.
    let out = shardsweep(&["analyze", sweep.results().join("probe").to_str().unwrap()]);
    let report =
        std::fs::read_to_string(sweep.results().join("probe").join("report/report.md")).unwrap();
    assert!(report.contains("## Linear probe"), "{out}\n{report}");
    let row = report.lines().find(|l| l.starts_with("| vit-tiny |")).unwrap_or_default();
    assert!(row.contains("| mean |") && row.contains("points |"), "{row}");
    let csv =
        std::fs::read_to_string(sweep.results().join("probe").join("report/probe.csv")).unwrap();
    assert!(csv.starts_with("point,model,train_flop_per_image,pool,pretrained_top1"), "{csv}");
}
