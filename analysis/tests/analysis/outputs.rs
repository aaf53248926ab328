//! What `analyze` writes: the tidy store (incremental, readable as one dataset), the plots with
//! their series, the report, and a Chrome trace of one step.

use crate::fixture::{sweep, Point};
use polars::prelude::*;
use shardsweep_analysis::analyze_sweep;
use shardsweep_analysis::tidy::scan_store;
use shardsweep_records::{LoaderRecord, Strategy};

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
        "loader_workers",
        "data",
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
    // Stream times where the records hold them (the fixture's all-gathers), none where NaN.
    let streams = |kind: &str| {
        frame
            .clone()
            .lazy()
            .filter(
                col("phase").eq(lit(format!("comm.{kind}"))).and(col("metric").eq(lit("stream"))),
            )
            .collect()
            .unwrap()
    };
    let gathers = streams("all_gather");
    assert_eq!(gathers.height(), waits.height());
    assert!(gathers.column("value").unwrap().f64().unwrap().iter().all(|v| v == Some(0.001)));
    assert_eq!(streams("reduce_scatter").height(), 0);

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
    // Rank r is process r + 1: Perfetto treats pid 0 as the kernel's.
    let named = |name: &str, pid: u64| {
        events.iter().any(|e| e["name"] == name && e["pid"] == pid && e["ph"] == "X")
    };
    assert!(named("forward", 1) && named("backward", 2) && named("comm", 2));
    assert!(events.iter().all(|e| e["pid"].as_u64().is_some_and(|p| p > 0)));
    let gather = events.iter().find(|e| e["cat"] == "collective" && e["pid"] == 1).unwrap();
    assert_eq!(gather["name"], "all_gather unit 0");
    assert!(
        (gather["ts"].as_f64().unwrap() - 10_000.0).abs() < 1e-6,
        "start in microseconds from the step's start"
    );
    assert!((gather["dur"].as_f64().unwrap() - 21_000.0).abs() < 1e-6);
    assert_eq!(gather["args"]["wait_s"], 0.02);
    assert_eq!(gather["args"]["stream_s"], 0.001);
    let scatter =
        events.iter().find(|e| e["cat"] == "collective" && e["name"] == "reduce_scatter unit 0");
    assert!(scatter.unwrap()["args"].get("stream_s").is_none(), "no stream time: no argument");
    // Counts are integers, as their meaning says, not 1000000.0.
    assert!(gather["args"]["payload_bytes"].is_u64(), "{}", gather["args"]);
    assert!(gather["args"]["group_size"].is_u64(), "{}", gather["args"]);
    assert!(shardsweep_analysis::trace::chrome_trace(&point, 4).is_err(), "a step never run");
}

#[test]
fn the_store_folder_reads_as_one_parquet_dataset_with_pyarrow() {
    let (_root, dir) = sweep("pyarrow");
    four_points(&dir);
    analyze_sweep(&dir).unwrap();
    let rows = scan_store(&dir.join("tidy")).unwrap().collect().unwrap().height();
    // The folder itself, as `pd.read_parquet("results/<sweep>/tidy")` reads it.
    let python = std::env::var("SHARDSWEEP_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python").to_string()
    });
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys, pyarrow.parquet as pq; print(pq.read_table(sys.argv[1]).num_rows)",
        ])
        .arg(dir.join("tidy"))
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pyarrow cannot read the store: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), rows.to_string());
}

#[test]
fn one_unreadable_point_is_skipped_named_and_listed() {
    let (_root, dir) = sweep("truncated");
    four_points(&dir);
    let records = dir.join("no_shard-n2/records.h5");
    let bytes = std::fs::read(&records).unwrap();
    std::fs::write(&records, &bytes[..bytes.len() / 3]).unwrap();
    let report = analyze_sweep(&dir).expect("the other points are analysed");
    assert_eq!(report.summaries.len(), 3);
    let md = std::fs::read_to_string(dir.join("report/report.md")).unwrap();
    let listed = md.split("## Points not analysed").nth(1).expect("a section for them");
    assert!(listed.contains("no_shard-n2/records.h5"), "{listed}");
}

#[test]
fn two_analyses_of_one_sweep_at_once_both_finish() {
    let (_root, dir) = sweep("concurrent");
    four_points(&dir);
    for _ in 0..3 {
        // Each round starts from records the store has not seen, so both rewrite every file.
        let _ = std::fs::remove_dir_all(dir.join("tidy"));
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        analyze_sweep(&dir).map(|r| r.summaries.len())
                    })
                })
                .collect();
            for run in runs {
                assert_eq!(run.join().unwrap().unwrap(), 4);
            }
        });
    }
}

#[test]
fn the_breakdown_table_has_a_row_per_point_and_legends_say_what_a_shard_group_is() {
    let (_root, dir) = sweep("legends");
    use Strategy::{FullShard, HybridShard};
    for (strategy, nodes) in [(HybridShard, 1), (HybridShard, 2), (FullShard, 1)] {
        let mut p = Point::new(&format!("{strategy}-n{nodes}"), nodes, 12);
        p.strategy = strategy;
        p.shard_group = Some(p.ranks_per_node);
        p.write(&dir);
    }
    analyze_sweep(&dir).unwrap();
    let md = std::fs::read_to_string(dir.join("report/report.md")).unwrap();
    let table = md.split("## Where the time goes").nth(1).unwrap().split("## ").next().unwrap();
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    assert!(rows[0].starts_with("| point |") && rows[0].contains("| forward |"), "{}", rows[0]);
    assert_eq!(rows.len(), 1 + 3, "a header and one row per point:\n{table}");
    let scaling = std::fs::read_to_string(dir.join("report/scaling_throughput.svg")).unwrap();
    assert!(!scaling.contains("sgnode"));
    assert!(scaling.contains("hybrid_shard mb4, shard group of one node"), "legend");
    // Beside peak RSS, the account by category (what the strategies change).
    let account = std::fs::read_to_string(dir.join("report/memory_account.svg")).unwrap();
    assert!(account.contains("param_shards") && account.contains("MiB per rank"));
    assert!(md.contains("memory_account.svg"));
}

#[test]
fn the_input_pipeline_study_gives_loader_rates_and_a_plot_against_loader_workers() {
    let (_root, dir) = sweep("pipeline");
    for workers in [1u32, 2, 4] {
        let mut p = Point::new(&format!("w{workers}"), 1, 12);
        p.loader_workers = workers;
        // The step waits less for data as the workers grow; the loader's own work per rank and
        // step stays 0.02 + 0.05 + 0.03 = 0.1 s for its 4 images.
        p.phases = Box::new(move |_, _| [0.04 / f64::from(workers), 0.1, 0.2, 0.03, 0.005]);
        p.loader = Box::new(|_, _| LoaderRecord {
            read_bytes: 4 * 3 * 224 * 224,
            read_s: 0.02,
            decode_s: 0.05,
            augment_s: 0.03,
            queue_depth: 1,
        });
        p.write(&dir);
    }
    analyze_sweep(&dir).unwrap();
    let out = dir.join("report");
    let summary = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(out.join("summary.csv")))
        .unwrap()
        .finish()
        .unwrap();
    let column = |name: &str| -> Vec<f64> {
        let c = summary.column(name).unwrap().cast(&DataType::Float64).unwrap();
        c.f64().unwrap().into_no_null_iter().collect()
    };
    let text = |name: &str| -> Vec<String> {
        let c = summary.column(name).unwrap().str().unwrap().clone();
        c.iter().map(|v| v.unwrap_or_default().to_string()).collect()
    };
    assert_eq!(text("point"), ["w1", "w2", "w4"]);
    assert_eq!(column("loader_workers"), [1.0, 2.0, 4.0]);
    assert_eq!(text("data"), ["synthetic"; 3]);
    let close = |got: f64, want: f64, what: &str| {
        assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "{what}: {got} != {want}");
    };
    for (i, workers) in [1.0, 2.0, 4.0].into_iter().enumerate() {
        // Global batch 8 (2 ranks x 4) per 0.2 s of worker time (2 ranks x 0.1 s) = 40 images
        // per worker-second; with 2 ranks x `workers` workers busy, 80 x workers images/s.
        close(column("loader_images_per_worker_s")[i], 40.0, "per worker-second");
        close(column("loader_images_per_s")[i], 80.0 * workers, "all workers busy");
        let data_s = 0.04 / workers;
        let step_s = data_s + 0.1 + 0.2 + 0.03 + 0.005 + 0.02 + 0.04;
        close(column("data_share")[i], data_s / step_s, "data share");
        close(column("images_per_s")[i], 8.0 / step_s, "training");
    }
    // The store keeps the loader's figures as rows: 2 ranks x 12 steps per figure.
    let decode = scan_store(&dir.join("tidy"))
        .unwrap()
        .filter(
            col("point")
                .eq(lit("w2"))
                .and(col("phase").eq(lit("loader.decode")))
                .and(col("metric").eq(lit("work"))),
        )
        .collect()
        .unwrap();
    assert_eq!(decode.height(), 24);
    assert!(decode.column("value").unwrap().f64().unwrap().into_no_null_iter().all(|v| v == 0.05));
    let plot = std::fs::read_to_string(out.join("input_pipeline.svg")).unwrap();
    for text in ["training", "loader alone", "loader workers per rank", "vit-test, data synthetic"]
    {
        assert!(plot.contains(text), "input_pipeline lacks {text}");
    }
    assert!(std::fs::metadata(out.join("input_pipeline.png")).unwrap().len() > 5_000);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let section = md.split("## Input pipeline").nth(1).expect("an input pipeline section");
    assert!(section.contains("input_pipeline.svg"));
    // Points that differ only in their workers are separate series, never pooled.
    let scaling = std::fs::read_to_string(out.join("scaling_throughput.svg")).unwrap();
    assert!(scaling.contains("4 loader workers"), "scaling legend");

    // One worker count: no study, no section.
    let (_root, single) = sweep("one-worker-count");
    four_points(&single);
    analyze_sweep(&single).unwrap();
    let md = std::fs::read_to_string(single.join("report/report.md")).unwrap();
    assert!(
        !md.contains("## Input pipeline") && !single.join("report/input_pipeline.svg").exists()
    );
}

/// The `.venv` Python that setup.sh installs Polars, pandas, pyarrow and DuckDB into.
fn python() -> String {
    std::env::var("SHARDSWEEP_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python").to_string())
}

#[test]
fn the_store_folder_reads_as_one_dataset_in_polars_pandas_pyarrow_and_duckdb() {
    let (root, dir) = sweep("readers");
    four_points(&dir);
    // A store of the layout before the index moved out of the folder: its index is taken
    // over (nothing rebuilt) and leaves the folder.
    analyze_sweep(&dir).unwrap();
    let index = std::fs::read(dir.join("tidy.index.json")).unwrap();
    std::fs::rename(dir.join("tidy.index.json"), dir.join("tidy/_index.json")).unwrap();
    let again = analyze_sweep(&dir).unwrap();
    assert_eq!((again.store.rebuilt.len(), again.store.reused), (0, 4));
    assert_eq!(std::fs::read(dir.join("tidy.index.json")).unwrap(), index);
    let names: Vec<String> = std::fs::read_dir(dir.join("tidy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".parquet")) && names.len() == 4, "{names:?}");
    // A second sweep, for the glob over sweeps that the README shows.
    let other = root.path().join("other");
    four_points(&other);
    analyze_sweep(&other).unwrap();
    let rows = scan_store(&dir.join("tidy")).unwrap().collect().unwrap().height();
    let script = r#"
import sys, polars as pl, pandas as pd, pyarrow.dataset as ds, duckdb
store, glob = sys.argv[1], sys.argv[2]
print("polars.scan_parquet", pl.scan_parquet(store).select(pl.len()).collect().item())
print("polars.read_parquet", pl.read_parquet(store).height)
print("pandas.read_parquet", len(pd.read_parquet(store)))
print("pyarrow.dataset", ds.dataset(store, format="parquet").count_rows())
print("duckdb.read_parquet", duckdb.sql(f"SELECT count(*) FROM read_parquet('{store}')").fetchall()[0][0])
print("duckdb.glob", duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0])
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .arg(dir.join("tidy"))
        .arg(root.path().join("*/tidy/*.parquet"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let counts: Vec<(&str, usize)> = stdout
        .lines()
        .map(|l| l.split_once(' ').map(|(r, n)| (r, n.trim().parse().unwrap())).unwrap())
        .collect();
    assert_eq!(counts.len(), 6, "{stdout}");
    for (reader, n) in counts {
        let expected = if reader == "duckdb.glob" { 2 * rows } else { rows };
        assert_eq!(n, expected, "{reader} read {n} rows, the store has {rows}");
    }
}

#[test]
fn a_point_without_a_steady_step_has_no_figures_rather_than_zeros() {
    let (_root, dir) = sweep("short");
    four_points(&dir);
    // Two steps, both warm-up: nothing to summarise.
    Point::new("warmup-only", 1, 2).write(&dir);
    let report = analyze_sweep(&dir).unwrap();
    let s = report.summaries.iter().find(|s| s.meta.point == "warmup-only").unwrap();
    assert_eq!(s.mfu, None, "no MFU, not NaN");
    assert!(s.breakdown.critical_path.iter().all(|(_, v)| v.is_nan()), "{:?}", s.breakdown);
    let why = "no steady-state step (2 of 2 steps recorded, 2 warm-up)";
    assert_eq!(s.no_figures_reason().as_deref(), Some(why));

    let read = |name: &str| {
        CsvReadOptions::default()
            .try_into_reader_with_file_path(Some(dir.join("report").join(name)))
            .unwrap()
            .finish()
            .unwrap()
    };
    let breakdown =
        read("breakdown.csv").lazy().filter(col("point").eq(lit("warmup-only"))).collect().unwrap();
    let seconds = breakdown.column("seconds_per_step").unwrap();
    assert!(breakdown.height() > 0 && seconds.null_count() == breakdown.height(), "{breakdown}");
    let summary = read("summary.csv");
    let row = summary.clone().lazy().filter(col("point").eq(lit("warmup-only"))).collect().unwrap();
    for column in ["steady_from", "step_s_median", "images_per_s", "model_flop_per_s", "mfu"] {
        assert_eq!(row.column(column).unwrap().null_count(), 1, "{column} of {row}");
    }
    assert_eq!(row.column("note").unwrap().str().unwrap().get(0), Some(why));
    let others = summary.lazy().filter(col("point").neq(lit("warmup-only"))).collect().unwrap();
    assert_eq!(others.column("step_s_median").unwrap().null_count(), 0, "the rest keep theirs");

    let md = std::fs::read_to_string(dir.join("report/report.md")).unwrap();
    assert!(md.contains(&format!("warmup-only: n/a: {why}")), "{md}");
    let row = md.lines().find(|l| l.starts_with("| warmup-only |")).expect("a breakdown row");
    assert!(row.contains("n/a") && !row.contains("0.000000"), "{row}");
    // No table or report prints a missing figure as a number.
    for entry in std::fs::read_dir(dir.join("report")).unwrap() {
        let path = entry.unwrap().path();
        if matches!(path.extension().and_then(|e| e.to_str()), Some("csv" | "md")) {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("NaN") && !text.contains("inf"), "{}: {text}", path.display());
        }
    }
    assert!(!report.table.contains("NaN"), "{}", report.table);
}

#[test]
fn every_dataset_the_records_hold_has_a_place_in_the_tidy_store() {
    use shardsweep_analysis::tidy::{place, tidy_point, STEP_GROUPS};
    use shardsweep_records::{DeviceMemoryRecord, RecordsReader};
    // A point with every group the record format writes: the loader's figures and a GPU's.
    let (_root, dir) = sweep("vocabulary");
    let mut p = Point::new("gpu", 1, 4);
    p.loader = Box::new(|_, _| LoaderRecord { read_bytes: 1, read_s: 0.01, ..Default::default() });
    p.device_memory =
        Box::new(|_, _| Some(DeviceMemoryRecord { alloc_retries: 1, ..Default::default() }));
    let point_dir = p.write(&dir);
    let file = RecordsReader::open(&point_dir).unwrap();
    let groups = file.names("/").unwrap().unwrap();
    // Tables the store sums per step (units, collectives), and the ranks' layout, which the
    // store takes from the manifest (hostname).
    let tables = ["units", "collectives", "ranks"];
    for group in &groups {
        assert!(
            STEP_GROUPS.contains(&group.as_str()) || tables.contains(&group.as_str()),
            "/{group}: a group of the records the tidy store does not read"
        );
    }
    let mut places = 0;
    for group in STEP_GROUPS {
        assert!(groups.iter().any(|g| g == group), "the fixture writes no /{group}");
        for name in file.names(group).unwrap().unwrap() {
            assert!(place(group, &name).is_some(), "/{group}/{name}: unknown to the tidy store");
            places += 1;
        }
    }
    // 6 phases, loss, peak RSS, step, completed; 6 memory categories; 4 device figures; read
    // bytes, queue depth and 3 work times.
    assert_eq!(places, 10 + 6 + 4 + 5);
    assert_eq!(place("steps", "new_metric"), None);
    assert_eq!(place("memory", "new_category_bytes"), None);
    // The configuration columns, as experiment files spell them; CPU defaults for the rest.
    let meta = shardsweep_analysis::read_manifest(&point_dir).unwrap();
    let frame = tidy_point(&meta).unwrap();
    let text = |column: &str| {
        let values = frame.column(column).unwrap().unique().unwrap();
        values.str().unwrap().iter().map(|v| v.unwrap_or_default().to_string()).collect::<Vec<_>>()
    };
    for (column, value) in [
        ("reduce_dtype", "fp32"),
        ("backward_prefetch", "pre"),
        ("device", "cpu"),
        ("backend", "mpi"),
        ("timing", "host"),
    ] {
        assert_eq!(text(column), [value], "{column}");
    }
    let limit = frame.column("limit_all_gathers").unwrap().unique().unwrap();
    assert_eq!(limit.bool().unwrap().iter().collect::<Vec<_>>(), [Some(true)]);
    let phases = frame.column("phase").unwrap().unique().unwrap();
    assert!(phases.str().unwrap().iter().any(|p| p == Some("memory.param_shards")));
}
