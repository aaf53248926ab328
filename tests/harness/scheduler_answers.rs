//! Which scheduler answer counts, with a fake squeue, sacct and scontrol first on PATH: the
//! controller over lagging accounting, accounting only for the job the ledger submitted (not an
//! older job with the same id), and `collect --wait` that says what it waits for and gives up.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// A sweep folder with one started point per job id, and fake Slurm commands printing `squeue`
/// and `sacct` (an empty text: the command fails, as squeue does for ids it no longer knows).
fn sweep(root: &Path, jobs: &[&str], squeue: &str, sacct: &str) -> std::path::PathBuf {
    let dir = root.join("s");
    let now = chrono::Utc::now().to_rfc3339();
    let entries: Vec<serde_json::Value> = jobs
        .iter()
        .map(|id| {
            let point = format!("p{id}");
            std::fs::create_dir_all(dir.join(&point).join("ranks")).unwrap();
            serde_json::json!({
                "job_id": id, "system": "local", "submission": 1, "script": "/dev/null",
                "script_sha256": "", "nodes": 1, "walltime_s": 60, "points": [point],
                "submitted_at": now,
            })
        })
        .collect();
    std::fs::create_dir_all(dir.join("slurm")).unwrap();
    std::fs::write(
        dir.join("slurm/ledger.json"),
        serde_json::to_vec(&serde_json::json!({ "jobs": entries })).unwrap(),
    )
    .unwrap();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, text) in [("squeue", squeue), ("sacct", sacct), ("scontrol", "")] {
        let body = if text.is_empty() {
            "#!/bin/sh\necho \"slurm_load_jobs error: Invalid job id specified\" >&2\nexit 1\n"
                .to_string()
        } else {
            format!("#!/bin/sh\ncat <<'EOF'\n{text}\nEOF\n")
        };
        let path = bin.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn shardsweep(root: &Path, args: &[&str]) -> Output {
    let path = format!("{}:{}", root.join("bin").display(), std::env::var("PATH").unwrap());
    let output = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn row(output: &Output, point: &str) -> String {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines().find(|l| l.contains(point)).unwrap_or_default().to_string()
}

#[test]
fn the_controller_outranks_accounting_that_lags_it() {
    let root = tempfile::tempdir().unwrap();
    let now = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S");
    let dir =
        sweep(root.path(), &["101"], "101|COMPLETED|n1", &format!("101|RUNNING|0:0|n1|{now}"));
    let status = shardsweep(root.path(), &["status", dir.to_str().unwrap()]);
    let line = row(&status, "p101");
    assert!(line.contains("ended completed"), "accounting's stale RUNNING won: {line}");
}

#[test]
fn accounting_for_an_older_job_with_a_reused_id_is_ignored() {
    let root = tempfile::tempdir().unwrap();
    let dir = sweep(root.path(), &["102"], "", "102|COMPLETED|0:0|n9|2020-01-01T00:00:00");
    let status = shardsweep(root.path(), &["status", dir.to_str().unwrap()]);
    let line = row(&status, "p102");
    assert!(line.contains("unknown to the scheduler") && !line.contains("n9"), "{line}");
}

#[test]
fn collect_wait_names_what_it_waits_for_and_gives_up_at_its_limit() {
    let root = tempfile::tempdir().unwrap();
    let dir = sweep(root.path(), &["103"], "103|RUNNING|n1", "");
    let start = std::time::Instant::now();
    let collect = shardsweep(
        root.path(),
        &["collect", dir.to_str().unwrap(), "--wait", "--wait-limit-s", "3"],
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&collect.stderr);
    assert!(stderr.contains("waiting for 1 points: p103 (running, job 103)"), "{stderr}");
    assert!(stderr.contains("gave up waiting after 3 s"), "{stderr}");
    assert_eq!(collect.status.code(), Some(2), "not every point is ok");
}

#[test]
fn submit_names_a_file_system_without_flock_and_no_lock_goes_on() {
    let root = tempfile::tempdir().unwrap();
    sweep(root.path(), &[], "", "");
    let sbatch = root.path().join("bin/sbatch");
    std::fs::write(&sbatch, "#!/bin/sh\necho 555\n").unwrap();
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let experiment = root.path().join("e.toml");
    let text = "name = \"nfs\"\n[axes]\nmodel = [\"vit-tiny\"]\nstrategy = [\"no_shard\"]\nnodes = [1]\nranks_per_node = [2]\nmicro_batch = [2]\n[settings]\nsteps = 2\nwarmup_steps = 1\n";
    std::fs::write(&experiment, text).unwrap();
    let results = root.path().join("results");
    let submit = |extra: &[&str]| {
        let path =
            format!("{}:{}", root.path().join("bin").display(), std::env::var("PATH").unwrap());
        let output = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
            .args(["submit", experiment.to_str().unwrap(), "--system", "local", "--results"])
            .arg(&results)
            .args(extra)
            .env("PATH", path)
            .env("SHARDSWEEP_INJECT_FAULT", "no_flock")
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = submit(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot lock") && stderr.contains("--no-lock"), "{stderr}");
    let (code, stderr) = submit(&["--no-lock"]);
    assert_eq!(code, Some(0), "{stderr}");
    let ledger = std::fs::read_to_string(results.join("nfs/slurm/ledger.json")).unwrap();
    assert!(ledger.contains("\"555\""), "{ledger}");
}
