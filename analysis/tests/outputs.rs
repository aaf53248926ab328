//! What `analyze` writes: the tidy store (incremental, readable as one dataset), the plots with
//! their series, the report, and a Chrome trace of one step.

mod fixture;

use fixture::{sweep, Point};
use polars::prelude::*;
use shardsweep_analysis::analyze_sweep;
use shardsweep_analysis::tidy::scan_store;
use shardsweep_records::Strategy;

fn four_points(dir: &std::path::Path) {
    use Strategy::{FullShard, NoShard};
    for (strategy, nodes) in [(FullShard, 1), (FullShard, 2), (NoShard, 1), (NoShard, 2)] {
        let mut p = Point::new(&format!("{strategy}-n{nodes}"), nodes, 12);
        p.strategy = strategy;
        p.write(dir);
    }
}

#[test]
fn the_tidy_store_is_long_format_and_rebuilt_only_where_records_changed() {
    let (_root, dir) = sweep("store");
    four_points(&dir);
    let first = analyze_sweep(&dir).unwrap();
    assert_eq!((first.store.rebuilt.len(), first.store.reused), (4, 0));
    let frame = scan_store(&dir.join("tidy")).unwrap().collect().unwrap();
    for column in [
        "sweep",
        "point",
        "model",
        "strategy",
        "nodes",
        "world_size",
        "rank",
        "hostname",
        "step",
        "phase",
        "metric",
        "value",
        "unit",
    ] {
        assert!(frame.column(column).is_ok(), "column {column}");
    }
    // full_shard-n1: 2 ranks x 12 steps of forward time, in seconds.
    let forward = scan_store(&dir.join("tidy"))
        .unwrap()
        .filter(
            col("point")
                .eq(lit("full_shard-n1"))
                .and(col("phase").eq(lit("forward")))
                .and(col("metric").eq(lit("time"))),
        )
        .collect()
        .unwrap();
    assert_eq!(forward.height(), 24);
    assert!(forward.column("unit").unwrap().str().unwrap().iter().all(|u| u == Some("s")));
    let waits = frame
        .clone()
        .lazy()
        .filter(col("phase").eq(lit("comm.reduce_scatter")).and(col("metric").eq(lit("wait"))))
        .collect()
        .unwrap();
    assert_eq!(waits.height(), 2 * 12 + 2 * 12 + 4 * 12 + 4 * 12);

    let second = analyze_sweep(&dir).unwrap();
    assert_eq!(
        (second.store.rebuilt.len(), second.store.reused),
        (0, 4),
        "nothing changed, nothing re-read"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut again = Point::new("no_shard-n2", 2, 14);
    again.strategy = Strategy::NoShard;
    again.write(&dir);
    let third = analyze_sweep(&dir).unwrap();
    assert_eq!(third.store.rebuilt, ["no_shard-n2"]);
    std::fs::remove_dir_all(dir.join("full_shard-n1")).unwrap();
    analyze_sweep(&dir).unwrap();
    assert!(
        !dir.join("tidy/full_shard-n1.parquet").exists(),
        "a point that left the sweep leaves the store"
    );
}

#[test]
fn every_plot_is_written_with_its_series_and_the_report_embeds_them() {
    let (_root, dir) = sweep("plots");
    four_points(&dir);
    let report = analyze_sweep(&dir).unwrap();
    let out = dir.join("report");
    let svg = |stem: &str| {
        assert!(
            std::fs::metadata(out.join(format!("{stem}.png"))).unwrap().len() > 5_000,
            "{stem}.png"
        );
        std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap()
    };
    let scaling = svg("scaling_throughput");
    for series in [
        "full_shard mb4",
        "no_shard mb4",
        "full_shard mb4 (ideal)",
        "vit-test",
        "images/s",
        "nodes",
    ] {
        assert!(scaling.contains(series), "scaling_throughput lacks {series}");
    }
    let efficiency = svg("scaling_efficiency");
    assert!(efficiency.contains("full_shard mb4") && efficiency.contains("efficiency (1 = ideal)"));
    let memory = svg("memory");
    assert!(memory.contains("no_shard mb4") && memory.contains("GiB per rank"));
    let breakdown = svg("breakdown");
    for component in [
        "forward",
        "backward",
        "exposed all_gather",
        "exposed reduce_scatter",
        "optimizer",
        "seconds per step",
    ] {
        assert!(breakdown.contains(component), "breakdown lacks {component}");
    }
    assert!(svg("throughput").contains("median throughput"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for embedded in [
        "throughput.svg",
        "scaling_throughput.svg",
        "scaling_efficiency.svg",
        "memory.svg",
        "breakdown.svg",
        "mfu-v1",
    ] {
        assert!(md.contains(embedded), "report lacks {embedded}");
    }
    assert_eq!(report.summaries.len(), 4);
}

#[test]
fn one_step_exports_as_a_chrome_trace() {
    let (_root, dir) = sweep("trace");
    let point = Point::new("p", 1, 4).write(&dir);
    let trace = shardsweep_analysis::trace::chrome_trace(&point, 2).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let named = |name: &str, pid: u64| {
        events.iter().any(|e| e["name"] == name && e["pid"] == pid && e["ph"] == "X")
    };
    assert!(named("forward", 0) && named("backward", 1) && named("comm", 1));
    let gather = events.iter().find(|e| e["cat"] == "collective" && e["pid"] == 0).unwrap();
    assert_eq!(gather["name"], "all_gather unit 0");
    assert!(
        (gather["ts"].as_f64().unwrap() - 10_000.0).abs() < 1e-6,
        "start in microseconds from the step's start"
    );
    assert!((gather["dur"].as_f64().unwrap() - 21_000.0).abs() < 1e-6);
    assert_eq!(gather["args"]["wait_s"], 0.02);
    assert!(shardsweep_analysis::trace::chrome_trace(&point, 4).is_err(), "a step never run");
}
