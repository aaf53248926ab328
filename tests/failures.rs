//! Nothing is lost when a run dies: crashed and timed-out points are recorded as such, with the
//! steps they finished, and the next run of the sweep runs them again.

mod common;

use std::time::{Duration, Instant};

use common::{column, manifest, one_point, Sweep};

fn long_running(name: &str, timeout_s: u64) -> String {
    one_point(name, 100000) + &format!("[launch]\ntimeout_s = {timeout_s}\n")
}

const POINT: &str = "vit-tiny-no_shard-n1x2-mb2";

#[test]
fn a_point_past_its_time_limit_is_recorded_as_timeout_with_its_steps() {
    let sweep = Sweep::new(&long_running("slow", 4));
    let output = sweep.run(&["--no-analysis"]);
    assert_eq!(output.status.code(), Some(2), "a sweep with a point not ok exits 2");
    let dir = sweep.point("slow", POINT);
    let m = manifest(&dir);
    assert_eq!(m["outcome"], "timeout");
    assert!(m["message"].as_str().unwrap().contains("time limit"));
    let completed: Vec<u32> = serde_json::from_value(m["steps_completed"].clone()).unwrap();
    assert!(completed.iter().all(|&n| n > 0 && n < 100000), "{completed:?}");
    let file = hdf5::File::open(dir.join("records.h5")).unwrap();
    assert_eq!(column::<u32>(&file, "steps/completed"), completed);
    // Planned steps beyond the last finished one are present and marked missing (NaN).
    let loss = common::table(&file, "steps/loss");
    assert_eq!(loss.dim(), (2, 100000));
    assert!(loss[[0, 0]].is_finite() && loss[[0, completed[0] as usize]].is_nan());
}

#[test]
fn a_crashed_rank_is_recorded_as_failed_with_partial_data_and_rerun_next_time() {
    let sweep = Sweep::new(&long_running("crash", 120));
    let mut child =
        sweep.command(&["--no-analysis"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Wait for rank 1 to finish a few steps, then abort it as a failed assertion in native code would.
    let spool = sweep.point("crash", POINT).join("ranks/rank-00001.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    let pid = loop {
        assert!(Instant::now() < deadline, "rank 1 never got going");
        let text = std::fs::read_to_string(&spool).unwrap_or_default();
        if text.lines().filter(|l| l.contains("\"type\":\"step\"")).count() >= 3 {
            let start: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            break start["pid"].as_i64().unwrap() as i32;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: signalling a process this test's sweep started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGABRT) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));

    let dir = sweep.point("crash", POINT);
    let m = manifest(&dir);
    assert_eq!(m["outcome"], "failed", "{m}");
    assert_ne!(m["exit_code"], 0);
    assert!(!m["message"].as_str().unwrap_or_default().is_empty());
    let completed: Vec<u32> = serde_json::from_value(m["steps_completed"].clone()).unwrap();
    assert!(completed[1] >= 3, "rank 1's finished steps are kept: {completed:?}");
    assert!(dir.join("records.h5").exists() && dir.join("stderr.log").exists());

    // The next run runs the failed point again and keeps the failed attempt.
    std::fs::write(
        &sweep.experiment,
        std::fs::read_to_string(&sweep.experiment).unwrap().replace("steps = 100000", "steps = 2"),
    )
    .unwrap();
    assert!(sweep.run(&["--no-analysis"]).status.success());
    assert_eq!(manifest(&dir)["outcome"], "ok");
    let attempts = sweep.results().join("crash/.attempts").join(POINT);
    let kept: Vec<_> = std::fs::read_dir(attempts).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(manifest(&kept[0])["outcome"], "failed");
}

#[test]
fn a_launcher_that_cannot_start_is_reported() {
    let text = long_running("nolauncher", 60)
        .replace("timeout_s = 60", "timeout_s = 60\nmpirun = \"/nonexistent/mpirun\"");
    let sweep = Sweep::new(&text);
    let output = sweep.run(&["--no-analysis"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot start /nonexistent/mpirun"));
}

#[test]
fn a_rank_out_of_memory_is_recorded_as_oom() {
    // A per-rank memory cap stands in for a device's memory: the activations of 512 images
    // do not fit in 1.5 GB.
    let text = long_running("oom", 120)
        .replace("model = [\"vit-tiny\"]", "model = [\"vit-small-cpu\"]")
        .replace("micro_batch = [2]", "micro_batch = [512]")
        .replace("steps = 100000", "steps = 3\nrank_memory_limit_bytes = 1500000000");
    let sweep = Sweep::new(&text);
    assert_eq!(sweep.run(&["--no-analysis"]).status.code(), Some(2));
    let m = manifest(&sweep.point("oom", "vit-small-cpu-no_shard-n1x2-mb512"));
    assert_eq!(m["outcome"], "oom", "{m}");
    let message = m["message"].as_str().unwrap();
    assert!(message.contains("can't allocate memory") && !message.contains("frame #"), "{message}");
}
