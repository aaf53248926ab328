//! History: five runs of the same points, a 15% step change from the third on (where the
//! torch version changes); the change is found at the third run, named, and exported.

use std::path::{Path, PathBuf};

use crate::fixture::{noise, Point};
use shardsweep_analysis::bundle::{open_sweep, write_bundle, BundleOptions, Harness};
use shardsweep_analysis::changepoint::ChangeOptions;
use shardsweep_analysis::history::{history, load_runs, order_runs, write_history, RunOrder};

/// Run `k` (1-based) of a nightly sweep: two points of 40 noisy steps, every phase 15% slower
/// from run 3 on, where torch 2.14.0 replaces 2.13.0; started on 2026-01-0k.
fn write_run(dir: &Path, k: u64) {
    let factor = if k >= 3 { 1.15 } else { 1.0 };
    for (name, nodes) in [("a", 1), ("b", 2)] {
        let mut p = Point::new(name, nodes, 40);
        p.phases = Box::new(move |r, s| {
            let n = |i: u64| factor * (1.0 + 0.02 * noise(k * 10 + i, r, s));
            [0.01 * n(1), 0.1 * n(2), 0.2 * n(3), 0.03 * n(4), 0.0]
        });
        p.waits = Box::new(move |r, s| {
            let n = |i: u64| factor * (1.0 + 0.02 * noise(k * 10 + i, r, s));
            [0.02 * n(5), 0.04 * n(6)]
        });
        p.torch_version = if k >= 3 { "2.14.0" } else { "2.13.0" }.into();
        let point = p.write(dir);
        // The fixture leaves the start time empty; a real run records it.
        let path = point.join("manifest.json");
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        manifest["started_at"] = format!("2026-01-0{k}T02:00:00.000000Z").into();
        std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    }
}

#[test]
fn a_step_change_at_the_third_of_five_runs_is_found_there_and_the_field_named() {
    let root = tempfile::tempdir().unwrap();
    let dir = |k: u64| root.path().join(format!("run{k}"));
    for k in 1..=5 {
        std::fs::create_dir_all(dir(k)).unwrap();
        write_run(&dir(k), k);
    }
    // The last run kept as a bundle only; the runs given out of order.
    let bundle = root.path().join("run5.tar.zst");
    let harness = Harness { version: "0.1.0".into(), commit: "abc".into() };
    write_bundle(&dir(5), &bundle, &BundleOptions { force: false, harness }).unwrap();
    let run5 = open_sweep(&bundle).unwrap();
    let given: Vec<(String, PathBuf)> = [4, 1, 5, 2, 3]
        .into_iter()
        .map(|k| {
            let path = if k == 5 { run5.dir().to_path_buf() } else { dir(k) };
            (format!("run{k}"), path)
        })
        .collect();
    let mut runs = load_runs(&given).unwrap();
    assert_eq!(order_runs(&mut runs), RunOrder::StartTime);
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["run1", "run2", "run3", "run4", "run5"]);

    let found = history(&runs, RunOrder::StartTime, &ChangeOptions::default());
    for point in ["a", "b"] {
        for metric in ["step_s", "images_per_s", "backward_s"] {
            let series: Vec<_> = found
                .rows
                .iter()
                .filter(|r| r.row.point == point && r.row.metric == metric)
                .collect();
            assert_eq!(series.len(), 5, "{point} {metric}");
            let at: Vec<&str> =
                series.iter().filter(|r| r.change_point).map(|r| r.row.run.as_str()).collect();
            assert_eq!(at, ["run3"], "{point} {metric}: {series:#?}");
            let change = series.iter().find(|r| r.change_point).unwrap();
            assert_eq!(change.changed_fields, ["torch_version"]);
            assert_eq!(change.changed, ["torch_version: 2.13.0 -> 2.14.0"]);
            let expected = if metric == "images_per_s" { 1.0 / 1.15 - 1.0 } else { 0.15 };
            let relative = change.relative_change.unwrap();
            assert!((relative - expected).abs() < 0.01, "{point} {metric}: {relative}");
        }
    }
    let elsewhere: Vec<_> = found.changes().filter(|r| r.row.run != "run3").collect();
    assert!(elsewhere.is_empty(), "noise called a change: {elsewhere:#?}");

    // The three runs after the change, noise alone between them: nothing.
    let flat = history(&runs[2..], RunOrder::StartTime, &ChangeOptions::default());
    assert_eq!(flat.changes().count(), 0);

    let out = root.path().join("history");
    let files = write_history(&found, &out).unwrap();
    let jsonl = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    let records: Vec<serde_json::Value> =
        jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), found.rows.len());
    let record = records
        .iter()
        .find(|r| r["run"] == "run3" && r["point"] == "a" && r["metric"] == "step_s")
        .unwrap();
    assert_eq!(record["change_point"], true);
    assert_eq!(record["changed_fields"][0], "torch_version");
    assert_eq!(record["time"], "2026-01-03T02:00:00.000000Z");
    assert_eq!(record["unit"], "s");
    assert!(record["low"].as_f64().unwrap() < record["value"].as_f64().unwrap());
    assert_eq!(record["attributes"]["torch_version"], "2.14.0");
    let csv = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(csv.lines().count(), found.rows.len() + 1);
    assert!(csv.lines().any(|l| l.starts_with("run3,")
        && l.contains(",a,step_s,s,")
        && l.contains(",true,")
        && l.ends_with(",torch_version")));
    let bmf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("bmf/run3.json")).unwrap()).unwrap();
    let step = &bmf["a"]["step_s"];
    assert!(step["lower_value"].as_f64() < step["value"].as_f64());
    assert!(step["value"].as_f64() < step["upper_value"].as_f64());
    let otava = std::fs::read_to_string(out.join("otava/shardsweep.history.csv")).unwrap();
    let lines: Vec<&str> = otava.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].starts_with("time,run,") && lines[0].contains("a.step_s"));
    assert!(lines[3].starts_with("2026-01-03T02:00:00.000000Z,run3,"));
    for file in ["history-a.png", "history-a.svg", "history-b.svg", "otava/otava.yaml"] {
        assert!(files.contains(&out.join(file)), "{file} not written");
    }
    let svg = std::fs::read_to_string(out.join("history-a.svg")).unwrap();
    assert!(svg.contains("change point") && svg.contains("torch_version"), "marked and named");
}
