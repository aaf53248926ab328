//! Every metric on hand-built records with known answers.

use crate::fixture::{noise, sweep, Point};
use shardsweep_analysis::{analyze_sweep, summarize_sweep};
use shardsweep_records::DeviceMemoryRecord;

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}: {a} vs {b}");
}

#[test]
fn step_time_throughput_mfu_and_the_breakdown_have_their_known_values() {
    let (_root, dir) = sweep("known");
    let mut p = Point::new("p1", 1, 12);
    // Rank 1 is the slowest: its forward takes 0.15 s, the others' 0.1 s.
    p.phases = Box::new(|r, _| [0.01, if r == 1 { 0.15 } else { 0.1 }, 0.2, 0.03, 0.005]);
    p.recompute = Box::new(|_, _| 0.05);
    p.write(&dir);
    let (summaries, _, _) = summarize_sweep(&dir).unwrap();
    let s = &summaries[0];
    let step = 0.01 + 0.15 + 0.2 + 0.03 + 0.005 + 0.02 + 0.04;
    close(s.step_s_median.estimate, step, "median step (slowest rank)");
    assert_eq!(
        (s.steady_from, s.step_s.len()),
        (2, 10),
        "warm-up steps dropped; flat series kept whole"
    );
    assert!(s.step_s_median.contains(step));
    close(s.images_per_s.estimate, 8.0 / step, "images/s = global batch / step");
    close(s.images_per_s_per_device(), 4.0 / step, "per device");
    close(s.model_flop_per_s, 1e12 / step, "model FLOP/s");
    close(s.mfu.unwrap(), 1e12 / step / (2.0 * 1e12), "MFU against ranks x peak");
    let parts: std::collections::BTreeMap<&str, f64> =
        s.breakdown.critical_path.iter().map(|(c, v)| (c.as_str(), *v)).collect();
    close(parts["forward"], 0.15, "the slowest rank's forward");
    close(parts["backward"], 0.15, "backward without recompute");
    close(parts["recompute"], 0.05, "recompute");
    close(parts["exposed all_gather"], 0.02, "all-gather wait");
    close(parts["exposed reduce_scatter"], 0.04, "reduce-scatter wait");
    close(parts["optimizer"], 0.03, "optimizer");
    close(parts["data"], 0.01, "data");
    close(parts["other"], 0.005, "time in no phase");
    close(
        parts.values().sum::<f64>(),
        s.breakdown.step_s_mean,
        "the critical path adds up to the step",
    );
    close(s.peak_rss_bytes, 1e9 + 1e6, "largest peak RSS over ranks");
    close(s.accounted_peak_bytes, 2e6, "memory account");
    assert_eq!(s.device_memory, None, "a CPU run has no allocator figures");
    close(s.peak_memory_bytes(), s.peak_rss_bytes, "on CPU memory plots show peak RSS");
}

#[test]
fn a_gpu_runs_allocator_peaks_are_the_largest_over_ranks_and_steps_and_its_memory_figure() {
    let (_root, dir) = sweep("device");
    let mut p = Point::new("gpu", 1, 6);
    p.device_memory = Box::new(|r, s| {
        Some(DeviceMemoryRecord {
            allocated_peak_bytes: 1_000_000 * (10 + r as u64) + 1000 * s as u64,
            active_peak_bytes: 0,
            reserved_peak_bytes: 2_000_000 * (10 + r as u64),
            alloc_retries: u64::from(s == 3 && r == 1) * 7,
        })
    });
    p.write(&dir);
    let (summaries, _, _) = summarize_sweep(&dir).unwrap();
    let d = summaries[0].device_memory.expect("allocator figures");
    close(d.allocated_peak_bytes, 11e6 + 5e3, "largest allocated peak (rank 1, step 5)");
    close(d.reserved_peak_bytes, 22e6, "largest reserved peak");
    close(d.alloc_retries, 7.0, "most retries in one step");
    close(summaries[0].peak_memory_bytes(), 11e6 + 5e3, "memory plots use the allocator's peak");
    analyze_sweep(&dir).unwrap();
    let csv = std::fs::read_to_string(dir.join("report/summary.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for column in
        ["device_allocated_peak_bytes", "device_reserved_peak_bytes", "device_alloc_retries"]
    {
        assert!(header.contains(column), "{header}");
    }
}

#[test]
fn a_slow_start_is_dropped_by_rule() {
    let (_root, dir) = sweep("slowstart");
    let mut p = Point::new("p", 1, 60);
    // The first 15 steps run three times slower, then settle with 1% noise.
    p.phases = Box::new(|r, s| {
        [0.01, if s < 15 { 0.3 } else { 0.1 } * (1.0 + 0.01 * noise(1, r, s)), 0.2, 0.03, 0.0]
    });
    p.write(&dir);
    let (summaries, _, _) = summarize_sweep(&dir).unwrap();
    let s = &summaries[0];
    assert!((15..=20).contains(&s.steady_from), "steady from {}", s.steady_from);
    assert!(s.step_s.iter().all(|&t| t < 0.5), "no slow step counted as steady");
}

#[test]
fn weak_and_strong_scaling_efficiency_against_the_fewest_nodes() {
    let (_root, dir) = sweep("scaling");
    // Weak scaling: 4 images per rank on 1, 2 and 4 nodes; per-device throughput falls 10% and 25%.
    for (nodes, slowdown) in [(1, 1.0), (2, 1.0 / 0.9), (4, 1.0 / 0.75)] {
        let mut p = Point::new(&format!("weak-n{nodes}"), nodes, 12);
        p.phases = Box::new(move |_, _| [0.0, 0.1 * slowdown, 0.2 * slowdown, 0.0, 0.0]);
        p.waits = Box::new(|_, _| [0.0, 0.0]);
        p.write(&dir);
    }
    // Strong scaling: a global batch of 16 on 1 node (8 per rank) and 2 nodes (4 per rank),
    // with the step time falling from 1.0 s to 0.6 s: speed-up 1.667 on 2x the devices.
    for (nodes, mb, step) in [(1, 8, 1.0), (2, 4, 0.6)] {
        let mut p = Point::new(&format!("strong-n{nodes}"), nodes, 12);
        p.strategy = shardsweep_records::Strategy::NoShard;
        p.micro_batch = mb;
        p.phases = Box::new(move |_, _| [0.0, step, 0.0, 0.0, 0.0]);
        p.waits = Box::new(|_, _| [0.0, 0.0]);
        p.write(&dir);
    }
    let (summaries, _, _) = summarize_sweep(&dir).unwrap();
    let by = |name: &str| summaries.iter().find(|s| s.meta.point == name).unwrap();
    close(by("weak-n1").weak_scaling_efficiency.unwrap(), 1.0, "baseline");
    close(by("weak-n2").weak_scaling_efficiency.unwrap(), 0.9, "weak at 2 nodes");
    close(by("weak-n4").weak_scaling_efficiency.unwrap(), 0.75, "weak at 4 nodes");
    assert_eq!(
        by("weak-n2").strong_scaling_efficiency,
        None,
        "the global batch grows: not a strong-scaling series"
    );
    close(
        by("strong-n2").strong_scaling_efficiency.unwrap(),
        (1.0 / 0.6) / 2.0,
        "strong at 2 nodes",
    );
    assert_eq!(
        by("strong-n1").weak_scaling_efficiency,
        None,
        "one point per micro-batch: no weak series"
    );
}

#[test]
fn a_slow_node_is_named_for_exclusion() {
    let (_root, dir) = sweep("stragglers");
    for (i, nodes) in [(0, 2), (1, 2)] {
        let mut p = Point::new(&format!("p{i}"), nodes, 12);
        // Ranks 2 and 3 run on node n1, which computes 20% slower.
        p.phases = Box::new(|r, s| {
            [
                0.01,
                0.1 * if r >= 2 { 1.2 } else { 1.0 } * (1.0 + 0.01 * noise(2, r, s)),
                0.2,
                0.03,
                0.0,
            ]
        });
        p.write(&dir);
    }
    let report = analyze_sweep(&dir).unwrap();
    assert_eq!(report.exclude, ["n1"]);
    let n1 = report.stragglers.iter().find(|n| n.hostname == "n1").unwrap();
    assert!(
        (n1.score - 1.2 / 1.1).abs() < 0.02,
        "n1 is 1.2x the median of four ranks (1.1x): {}",
        n1.score
    );
    assert!(std::fs::read_to_string(dir.join("report/report.md"))
        .unwrap()
        .contains("--exclude n1"));
}

#[test]
fn a_scaling_series_is_every_axis_but_nodes() {
    let (_root, dir) = sweep("series");
    // Two backward-prefetch settings on 1 and 2 nodes; "post" is 25% slower throughout, and each
    // setting loses 10% per device at 2 nodes. Pooled, they would make one zig-zag series.
    use shardsweep_records::BackwardPrefetch::{Post, Pre};
    for (prefetch, slow) in [(Pre, 1.0), (Post, 1.25)] {
        for (nodes, loss) in [(1, 1.0), (2, 1.0 / 0.9)] {
            let mut p = Point::new(&format!("{prefetch}-n{nodes}"), nodes, 12);
            p.backward_prefetch = prefetch;
            p.phases = Box::new(move |_, _| [0.0, 0.1 * slow * loss, 0.2 * slow * loss, 0.0, 0.0]);
            p.waits = Box::new(|_, _| [0.0, 0.0]);
            p.write(&dir);
        }
    }
    let (summaries, _, _) = summarize_sweep(&dir).unwrap();
    let by = |name: &str| summaries.iter().find(|s| s.meta.point == name).unwrap();
    for prefetch in ["pre", "post"] {
        close(by(&format!("{prefetch}-n1")).weak_scaling_efficiency.unwrap(), 1.0, prefetch);
        close(by(&format!("{prefetch}-n2")).weak_scaling_efficiency.unwrap(), 0.9, prefetch);
    }
}

#[test]
fn mfu_of_local_runs_is_against_the_sweeps_measured_matmul_rate() {
    let (_root, dir) = sweep("local-mfu");
    let mut p = Point::new("local", 1, 12);
    p.peak_flop_per_s = None;
    p.write(&dir);
    let (without, _, _) = summarize_sweep(&dir).unwrap();
    assert_eq!(without[0].mfu, None, "no peak known: no MFU");
    let peak = serde_json::json!({
        "peak_flop_per_s": 2e12, "threads": 1, "hostname": "h", "measured_at": "",
        "source": "measured on h: fp32 1024x1024 matrix products",
    });
    std::fs::write(dir.join("local_peak.json"), peak.to_string()).unwrap();
    let (with, _, _) = summarize_sweep(&dir).unwrap();
    let s = &with[0];
    close(s.mfu.unwrap(), s.model_flop_per_s / (2.0 * 2e12), "against 2 ranks x the measured rate");
    assert!(s.meta.peak_source.starts_with("measured on h"));
}
