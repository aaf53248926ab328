//! After an upgrade: two real local sweeps of the same points, the second with one planted,
//! declared change (a slower reduce-scatter), compared as a site's acceptance test would.

use std::ffi::OsStr;
use std::path::Path;

use crate::common::Sweep;

const EXPERIMENT: &str = r#"
name = "upgrade"
[axes]
model = ["vit-tiny"]
strategy = ["no_shard", "full_shard"]
nodes = [1]
ranks_per_node = [2]
micro_batch = [2]
[settings]
steps = 30
warmup_steps = 5
"#;

fn run_sweep(env: &[(&str, &str)]) -> Sweep {
    let sweep = Sweep::new(EXPERIMENT);
    let mut command = sweep.command(&[]);
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    sweep
}

fn compare(before: &Path, after: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let mut args: Vec<&OsStr> = vec!["compare".as_ref(), before.as_ref(), after.as_ref()];
    args.extend(["--out".as_ref(), out.as_os_str()]);
    // Two runs on a shared 2-core machine differ by load, not only by noise (a rank's wait
    // for its descheduled peer can double from one run to the next, and other tests run
    // beside this one): here only a tripling of at least half the step counts. The planted
    // change makes the step several times longer.
    args.extend(["--min-effect", "2.0", "--min-step-share", "0.5"].map(OsStr::new));
    args.extend(extra.iter().map(OsStr::new));
    let ran = crate::common::shardsweep_run(&args);
    eprintln!("{}{}", ran.stdout, ran.stderr);
    (ran.code, ran.stdout)
}

fn rows(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("comparison.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verdict(rows: &[serde_json::Value], strategy: &str, metric: &str) -> String {
    let row = rows
        .iter()
        .find(|r| r["point"].as_str().unwrap().contains(strategy) && r["metric"] == metric)
        .unwrap_or_else(|| panic!("no {strategy} {metric} in {rows:?}"));
    row["verdict"].as_str().unwrap().to_string()
}

#[test]
fn a_slower_reduce_scatter_is_found_where_it_is_and_a_rerun_changes_nothing() {
    if !crate::common::full_tier("three sweeps through mpirun") {
        return;
    }
    let before = run_sweep(&[]);
    let after = run_sweep(&[("SHARDSWEEP_SLOW_COLLECTIVE", "reduce_scatter:0.03")]);
    let again = run_sweep(&[]);
    let (b, a) = (before.results().join("upgrade"), after.results().join("upgrade"));

    // The fingerprint: the libtorch the ranks loaded, with its path and version.
    let point = std::fs::read_dir(&b)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("manifest.json").exists())
        .unwrap();
    let manifest = crate::common::manifest(&point.path());
    let libraries = manifest["provenance"]["fingerprint"]["libraries"].as_array().unwrap();
    let torch = libraries.iter().find(|l| l["name"] == "libtorch_cpu.so").expect("libtorch_cpu.so");
    assert!(torch["version"].as_str().unwrap().starts_with("2.13.0"), "{torch}");
    assert!(torch["path"].as_str().unwrap().contains("torch/lib/libtorch_cpu.so"), "{torch}");

    // Undeclared, the planted change is refused by name.
    let out = before.dir.path().join("refused");
    let (code, _) = compare(&b, &a, &out, &[]);
    assert_eq!(code, 1);

    let out = before.dir.path().join("compare");
    let junit = before.dir.path().join("junit.xml");
    let junit_arg = junit.to_str().unwrap();
    let (code, stdout) =
        compare(&b, &a, &out, &["--declared", "SHARDSWEEP_SLOW_COLLECTIVE", "--junit", junit_arg]);
    assert_eq!(code, 3, "a regression sets the exit status");
    assert!(
        stdout.contains(
            "SHARDSWEEP_SLOW_COLLECTIVE: \"(unset)\" -> \"reduce_scatter:0.03\" (declared)"
        ),
        "{stdout}"
    );
    // mpirun's job ids and PMIx endpoints differ between the runs and are not changes.
    assert!(!stdout.contains("PMIX") && !stdout.contains("jobid"), "{stdout}");
    let verdicts = rows(&out);
    assert_eq!(verdict(&verdicts, "full_shard", "comm.reduce_scatter"), "regressed");
    assert_eq!(verdict(&verdicts, "full_shard", "step"), "regressed");
    assert_eq!(verdict(&verdicts, "no_shard", "step"), "indistinguishable");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure") && xml.contains("type=\"regressed\""), "{xml}");
    assert!(!xml.contains("no_shard\"><failure"), "{xml}");

    // The decomposition sums to the step's change within 1%, most of it the reduce-scatter.
    let csv = std::fs::read_to_string(out.join("decomposition.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut points: std::collections::BTreeMap<String, (f64, f64, String, f64)> =
        Default::default();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let delta: f64 = f[at("delta_s")].parse().unwrap();
        let step: f64 = f[at("step_after_s")].parse::<f64>().unwrap()
            - f[at("step_before_s")].parse::<f64>().unwrap();
        let p = points.entry(f[at("point")].into()).or_insert((0.0, step, String::new(), f64::MIN));
        p.0 += delta;
        if delta > p.3 {
            (p.2, p.3) = (f[at("component")].into(), delta);
        }
    }
    assert_eq!(points.len(), 2, "{csv}");
    for (point, (sum, step, largest, _)) in &points {
        assert!((sum - step).abs() <= 0.01 * step.abs().max(1e-3), "{point}: {sum} vs {step}");
        if point.contains("full_shard") {
            assert_eq!(largest, "exposed reduce_scatter", "{csv}");
        }
    }

    // The same system twice: nothing changed, nothing regressed.
    let out = before.dir.path().join("again");
    let (code, stdout) = compare(&b, &again.results().join("upgrade"), &out, &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("what changed: nothing"), "{stdout}");
    let changed: Vec<_> = rows(&out)
        .into_iter()
        .filter(|r| r["verdict"] == "regressed" || r["verdict"] == "improved")
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
}
