//! The real local Slurm cluster (`slurm/local/cluster.sh`) answering in the ways a busy cluster
//! does: a controller that goes down in the middle of a sweep and comes back, and a few hundred
//! held jobs asked about in batches. A test binary of its own: stopping the controller must not
//! disturb the other cluster tests, and cargo runs test binaries one after another.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{manifest, one_point, slurm_conf, wait_for_steps, Sweep};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn said(output: &Output) -> String {
    format!("{}{}", stdout(output), String::from_utf8_lossy(&output.stderr))
}

/// The tests take turns: one stops the controller the other needs.
static CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn slurm_dir() -> &'static Path {
    slurm_conf().parent().unwrap()
}

/// Stops slurmctld as an outage would (the running job's steps go on), and waits until it is gone.
fn stop_controller() {
    let pid = std::fs::read_to_string(slurm_dir().join("slurmctld.pid")).unwrap();
    let pid = pid.trim().to_string();
    assert!(Command::new("kill").arg(&pid).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "slurmctld did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_controller() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm/local/cluster.sh");
    let up = Command::new(script).arg("up").output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
}

#[test]
fn a_controller_down_mid_sweep_moves_nothing_and_the_sweep_ends_right_after() {
    if !common::full_tier("it needs the local Slurm cluster") {
        return;
    }
    let _turn = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let sweep = Sweep::new(&one_point("slurm-outage", 100_000));
    let e = sweep.experiment.to_str().unwrap();
    let deadline = ["--scheduler-deadline-s", "5"];
    let submitted = sweep.shardsweep("submit", &[e, "--system", "local"]);
    assert!(submitted.status.success(), "{}", said(&submitted));
    let point = sweep.point("slurm-outage", "vit-tiny-no_shard-n1x2-mb2");
    wait_for_steps(&point, 2);
    let ledger_path = sweep.results().join("slurm-outage/slurm/ledger.jsonl");
    let ledger = std::fs::read(&ledger_path).unwrap();

    stop_controller();
    let status = sweep.shardsweep("status", &[e, deadline[0], deadline[1]]);
    assert_eq!(status.status.code(), Some(3), "{}", said(&status));
    assert!(stdout(&status).contains("not known now"), "{}", said(&status));
    assert!(said(&status).contains("5 s deadline"), "{}", said(&status));
    let resume = sweep.shardsweep("resume", &[e, "--system", "local", deadline[0], deadline[1]]);
    assert_eq!(resume.status.code(), Some(1), "{}", said(&resume));
    assert!(said(&resume).contains("nothing was submitted, moved or collected"));
    let collect = sweep.shardsweep("collect", &[e, deadline[0], deadline[1]]);
    assert_eq!(collect.status.code(), Some(3), "{}", said(&collect));
    let cancel = sweep.shardsweep("cancel", &[e, deadline[0], deadline[1]]);
    assert_ne!(cancel.status.code(), Some(0), "{}", said(&cancel));
    // Nothing was submitted, moved or finalised, and the point still trains.
    assert_eq!(std::fs::read(&ledger_path).unwrap(), ledger);
    assert!(!sweep.results().join("slurm-outage/.attempts").exists());
    assert!(!point.join("manifest.json").exists());
    let steps_before = step_count(&point);

    start_controller();
    let status = sweep.shardsweep("status", &[e]);
    assert_eq!(status.status.code(), Some(0), "{}", said(&status));
    assert!(stdout(&status).contains("running"), "{}", said(&status));
    assert!(step_count(&point) > steps_before, "the ranks kept training through the outage");
    let resume = sweep.shardsweep("resume", &[e, "--system", "local"]);
    assert!(stdout(&resume).contains("0 points in 0 jobs"), "{}", said(&resume));
    let cancel = sweep.shardsweep("cancel", &[e]);
    assert!(stdout(&cancel).contains("cancelled 1 jobs"), "{}", said(&cancel));
    assert_eq!(sweep.shardsweep("collect", &["--wait", e]).status.code(), Some(2));
    let m = manifest(&point);
    assert_eq!(m["outcome"], "cancelled", "{m}");
    assert_eq!(std::fs::read_to_string(&ledger_path).unwrap().lines().count(), 2, "one job");
}

fn step_count(point: &Path) -> usize {
    std::fs::read_to_string(point.join("ranks/rank-00000.jsonl"))
        .unwrap_or_default()
        .matches("\"type\":\"step\"")
        .count()
}

/// Held jobs, asked about 50 to a command: each is answered as held with what to do, collect
/// --wait does not wait for them, and cancel cancels every one.
#[test]
fn hundreds_of_held_jobs_are_asked_in_batches_and_cancelled() {
    if !common::full_tier("it needs the local Slurm cluster") {
        return;
    }
    const JOBS: usize = 240;
    let _turn = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = root.path().join("held");
    std::fs::create_dir_all(dir.join("slurm")).unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    let mut ledger = String::new();
    for k in 0..JOBS {
        let name = format!("held-{k}");
        let out = Command::new("sbatch")
            .args(["--parsable", "--hold", "-J", &name, "-o", "/dev/null", "--wrap", "true"])
            .env("SLURM_CONF", slurm_conf())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let job = serde_json::json!({
            "job_id": id, "name": name, "system": "local", "submission": 1,
            "script": "/dev/null", "script_sha256": "", "nodes": 1, "walltime_s": 60,
            "points": [format!("p{k}")], "submitted_at": now,
        });
        ledger += &format!("{}\n", serde_json::json!({ "event": "intent", "job": job }));
    }
    std::fs::write(dir.join("slurm/ledger.jsonl"), ledger).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
            .args(args)
            .arg(&dir)
            .env("SLURM_CONF", slurm_conf())
            .env("SHARDSWEEP_SLURM_IDS_PER_CALL", "50")
            .output()
            .unwrap();
        eprintln!("$ shardsweep {}\n{}", args.join(" "), said(&output));
        output
    };
    let status = run(&["status"]);
    assert_eq!(status.status.code(), Some(0));
    let held = stdout(&status).lines().filter(|l| l.contains("needs you")).count();
    assert_eq!(held, JOBS, "every held job answered");
    assert!(said(&status).contains(&format!("{JOBS} jobs wait on you")), "{}", said(&status));
    assert!(said(&status).contains("scontrol release"), "{}", said(&status));
    let start = Instant::now();
    let collect = run(&["collect", "--wait"]);
    assert!(start.elapsed() < Duration::from_secs(60), "collect waited for held jobs");
    assert_eq!(collect.status.code(), Some(2));
    let cancel = run(&["cancel"]);
    assert!(stdout(&cancel).contains(&format!("cancelled {JOBS} jobs")), "{}", said(&cancel));
    let after = run(&["status"]);
    let ended = stdout(&after).lines().filter(|l| l.contains("job ended cancelled")).count();
    assert_eq!(ended, JOBS, "{}", said(&after));
}
