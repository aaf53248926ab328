//! Nothing is lost when a run dies: crashed and timed-out points are recorded as such, with the
//! steps they finished, and the next run of the sweep runs them again.

use std::time::{Duration, Instant};

use crate::common::{column, manifest, one_point, Sweep};

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
    let loss = crate::common::table(&file, "steps/loss");
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

/// Waits until rank `rank` of the point in `dir` has recorded `steps` steps; returns its pid.
fn wait_for_steps(dir: &std::path::Path, rank: u32, steps: usize) -> i32 {
    let spool = dir.join(format!("ranks/rank-{rank:05}.jsonl"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "rank {rank} never got going");
        let text = std::fs::read_to_string(&spool).unwrap_or_default();
        if text.lines().filter(|l| l.contains("\"type\":\"step\"")).count() >= steps {
            let start: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            return start["pid"].as_i64().unwrap() as i32;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Waits up to `limit` for `pid` to be gone.
fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    !alive(pid)
}

#[test]
fn a_rank_killed_by_sigkill_alone_is_a_retryable_failure_not_oom() {
    let sweep = Sweep::new(&long_running("sigkill", 120));
    let mut child =
        sweep.command(&["--no-analysis"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let dir = sweep.point("sigkill", POINT);
    let pid = wait_for_steps(&dir, 1, 3);
    // SAFETY: signalling a process this test's sweep started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(2));
    let m = manifest(&dir);
    assert_eq!(m["outcome"], "failed", "no evidence of memory exhaustion: {m}");
    let message = m["message"].as_str().unwrap();
    assert!(message.starts_with("rank 1 killed by signal 9"), "{message}");
}

#[test]
fn sigterm_to_the_runner_stops_the_point_as_cancelled_and_leaves_nothing_running() {
    let sweep = Sweep::new(&long_running("sigterm", 120));
    let child =
        sweep.command(&["--no-analysis"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let dir = sweep.point("sigterm", POINT);
    let ranks = [wait_for_steps(&dir, 0, 3), wait_for_steps(&dir, 1, 3)];
    // SAFETY: signalling the runner this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGTERM") && stderr.contains("Resume with"),
        "{stderr}"
    );
    for pid in ranks {
        assert!(gone_within(pid, Duration::from_secs(10)), "rank {pid} outlived the runner");
    }
    let m = manifest(&dir);
    assert_eq!(m["outcome"], "cancelled", "{m}");
    assert!(m["message"].as_str().unwrap().contains("SIGTERM"), "{m}");
    let completed: Vec<u32> = serde_json::from_value(m["steps_completed"].clone()).unwrap();
    assert!(completed.iter().all(|&n| n >= 3), "{completed:?}");
    assert!(dir.join("records.h5").exists());
}

#[test]
fn a_point_never_starts_beside_a_launcher_of_it_that_outlived_its_runner() {
    let sweep = Sweep::new(&long_running("orphan", 120));
    let mut child =
        sweep.command(&["--no-analysis"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let dir = sweep.point("orphan", POINT);
    let rank = wait_for_steps(&dir, 0, 2);
    // SIGKILL cannot be caught: mpirun and the ranks, in their own group, keep running.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(alive(rank));
    let again = sweep.run(&["--no-analysis"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    let pgid: i32 = std::fs::read_to_string(dir.join("launcher.pid"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: stopping the group this test's first run started.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("still running") && stderr.contains(&format!("-{pgid}")), "{stderr}");
    assert!(gone_within(rank, Duration::from_secs(10)));
}

#[test]
fn run_and_resume_share_one_retry_policy() {
    let text = one_point("repeat", 3)
        + "[[fault]]\nkind = \"nan_loss\"\nat_step = 1\nstrategy = \"no_shard\"\n";
    let sweep = Sweep::new(&text);
    assert_eq!(sweep.run(&["--no-analysis"]).status.code(), Some(2));
    let dir = sweep.point("repeat", POINT);
    let first = manifest(&dir);
    assert_eq!(first["outcome"], "nan_loss");
    // Not run again: the same configuration diverges the same way.
    let again = sweep.run(&["--no-analysis"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--retry"));
    assert_eq!(manifest(&dir)["started_at"], first["started_at"]);
    // --retry runs it anyway, keeping the first attempt.
    assert_eq!(sweep.run(&["--no-analysis", "--retry"]).status.code(), Some(2));
    let retried = manifest(&dir);
    assert_ne!(retried["started_at"], first["started_at"]);
    assert_eq!(retried["restarts"], 1);
}

#[test]
fn a_file_system_without_flock_is_named_and_no_lock_goes_on() {
    let sweep = Sweep::new(&one_point("nolock", 2));
    let refused = sweep
        .command(&["--no-analysis"])
        .env("SHARDSWEEP_INJECT_FAULT", "no_flock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("already running"), "{stderr}");
    assert!(stderr.contains("cannot lock") && stderr.contains("--no-lock"), "{stderr}");
    let unlocked = sweep
        .command(&["--no-analysis", "--no-lock"])
        .env("SHARDSWEEP_INJECT_FAULT", "no_flock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&unlocked.stderr);
    assert!(unlocked.status.success(), "{stderr}");
    assert!(stderr.contains("without the sweep's lock"), "{stderr}");
}

#[test]
fn records_that_cannot_be_written_still_get_a_manifest_saying_so() {
    let sweep = Sweep::new(&one_point("full", 2));
    let output = sweep
        .command(&["--no-analysis"])
        .env("SHARDSWEEP_INJECT_FAULT", "records_no_space")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    let dir = sweep.point("full", POINT);
    let m = manifest(&dir);
    assert_eq!(m["outcome"], "failed", "{m}");
    assert_eq!(m["records_file"], serde_json::Value::Null);
    let message = m["message"].as_str().unwrap();
    for needle in
        ["records.h5", "No space left on device", "bytes (its spools' size)", "free there"]
    {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert!(dir.join("ranks/rank-00000.jsonl").exists() && !dir.join("records.h5").exists());
}

#[test]
fn a_requeued_job_skips_a_finished_point_and_sets_a_partial_one_aside() {
    let sweep = Sweep::new(&one_point("requeue", 2));
    assert!(sweep.run(&["--no-analysis"]).status.success());
    let dir = sweep.point("requeue", POINT);
    let finished = manifest(&dir);
    // The run measured this machine's matrix-multiply rate once, for MFU, with its source.
    let peak: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sweep.results().join("requeue/local_peak.json")).unwrap(),
    )
    .unwrap();
    assert!(peak["peak_flop_per_s"].as_f64().unwrap() > 1e8, "{peak}");
    assert!(peak["source"].as_str().unwrap().contains("matrix products"), "{peak}");
    let mut launcher = vec!["mpirun".to_string()];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        launcher.push("--allow-run-as-root".into());
    }
    launcher.extend(["--oversubscribe", "-np", "2"].map(String::from));
    launcher.extend([env!("CARGO_BIN_EXE_shardsweep").to_string(), "worker".into()]);
    launcher.push(dir.display().to_string());
    let supervise = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
            .arg("supervise")
            .arg(&dir)
            .args(["--timeout-s", "120", "--script"])
            .arg(&sweep.experiment)
            .arg("--")
            .args(&launcher)
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        output
    };
    // The batch script runs again: the finished point is left as it is.
    assert!(supervise().status.success());
    assert_eq!(manifest(&dir), finished);
    // A point the requeue cut short (spools and logs, no manifest) is set aside, then run.
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    assert!(supervise().status.success());
    let rerun = manifest(&dir);
    assert_eq!((rerun["outcome"].as_str(), rerun["restarts"].as_u64()), (Some("ok"), Some(1)));
    let attempts = sweep.results().join("requeue/.attempts").join(POINT);
    let kept: Vec<_> = std::fs::read_dir(attempts).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].join("ranks/rank-00000.jsonl").exists(), "the first attempt's spools are kept");
}

/// The pids of running processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

#[test]
fn a_collective_sweep_stopped_midway_keeps_the_rows_it_finished() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = dir.path().join("cut-short.csv");
    // 3 collectives x 24 sizes (8 B to 64 MiB) on one group of 2: far more than the first rows
    // before the stop. In its own process group, as a batch job's tasks are.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(["bench", "--sizes", "--backend", "gloo", "--torchrun", ".venv/bin/torchrun"])
        .args(["--ranks", "2", "--max-bytes", "64MiB", "--repeats", "20", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let rows = || std::fs::read_to_string(&out).map_or(0, |t| t.lines().count().saturating_sub(1));
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows() < 2 {
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before two rows");
        assert!(Instant::now() < deadline, "no two rows within 2 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM to the whole group, as a job's time limit sends first.
    // SAFETY: signalling the group this test started.
    assert_eq!(unsafe { libc::killpg(child.id() as i32, libc::SIGTERM) }, 0);
    child.wait().unwrap();
    let workers = processes_mentioning(&out.display().to_string());
    for pid in workers {
        assert!(gone_within(pid, Duration::from_secs(30)), "rank {pid} outlived the stop");
    }
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let kept = lines.len() - 1;
    assert!((2..72).contains(&kept), "not cut short: {text}");
    assert!(lines[0].starts_with("backend,collective,"), "{text}");
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 10, "{line}");
        assert!(fields[7].parse::<f64>().is_ok_and(|s| s > 0.0), "{line}");
    }
}
