//! A sweep on a real Slurm cluster (slurmctld, slurmd and munge on localhost, started by
//! `slurm/local/cluster.sh`) with the `local` system profile: ranks start through
//! `srun --mpi=pmix`, points are packed into one job, each point's own time limit holds, and
//! failed, hung, diverged, cancelled and out-of-walltime points are recorded as such.

mod common;

use common::{manifest, wait_for_steps, Sweep};
use sha2::Digest;

fn experiment(name: &str, faults: &str, steps: u32, timeout_s: u64) -> String {
    format!(
        r#"
name = "{name}"
[axes]
model = ["vit-tiny"]
strategy = ["no_shard", "full_shard"]
nodes = [1]
ranks_per_node = [2]
micro_batch = [2, 4]
{faults}
[settings]
steps = {steps}
warmup_steps = 1
[launch]
timeout_s = {timeout_s}
"#
    )
}

const FAULTS: &str = r#"
[[fault]]
kind = "crash"
at_step = 2
strategy = "full_shard"
micro_batch = 2
[[fault]]
kind = "hang"
at_step = 2
strategy = "full_shard"
micro_batch = 4
[[fault]]
kind = "nan_loss"
at_step = 1
strategy = "no_shard"
micro_batch = 4
"#;

const OK: &str = "vit-tiny-no_shard-n1x2-mb2";
const CRASH: &str = "vit-tiny-full_shard-n1x2-mb2";
const HANG: &str = "vit-tiny-full_shard-n1x2-mb4";
const NAN: &str = "vit-tiny-no_shard-n1x2-mb4";

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_sweep_runs_under_slurm_and_resume_reruns_only_what_a_retry_can_change() {
    if !common::full_tier("it needs the local Slurm cluster") {
        return;
    }
    let sweep = Sweep::new(&experiment("slurm-outcomes", FAULTS, 4, 25));
    let experiment = sweep.experiment.to_str().unwrap();
    let submitted = sweep.shardsweep("submit", &[experiment, "--system", "local"]);
    assert!(submitted.status.success());
    assert!(
        stdout(&submitted).contains("4 points in 1 jobs on local"),
        "all four points packed into one job"
    );
    let collected = sweep.shardsweep("collect", &["--wait", experiment]);
    assert_eq!(collected.status.code(), Some(2), "not every point is ok");

    let dir = |p: &str| sweep.point("slurm-outcomes", p);
    let ok = manifest(&dir(OK));
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["steps_completed"], serde_json::json!([4, 4]));
    assert!(dir(OK).join("records.h5").exists());
    let scheduler = &ok["scheduler"];
    assert_eq!(scheduler["scheduler"], "slurm");
    assert_eq!(scheduler["node_list"], "localhost");
    assert!(scheduler["job_id"].as_str().unwrap().parse::<u64>().is_ok(), "{scheduler}");
    let script = std::fs::read(scheduler["script"].as_str().unwrap()).unwrap();
    assert_eq!(
        scheduler["script_sha256"].as_str().unwrap(),
        format!("{:x}", sha2::Sha256::digest(&script))
    );
    assert!(ok["provenance"]["command"][0].as_str().unwrap().ends_with("srun"));

    let crash = manifest(&dir(CRASH));
    assert_eq!(crash["outcome"], "failed", "{crash}");
    // The last rank died in step 2; the other finished step 2 with it and stopped in step 3.
    assert_eq!(crash["steps_completed"][1], 2, "steps before the crash are kept: {crash}");
    let hang = manifest(&dir(HANG));
    assert_eq!(hang["outcome"], "timeout", "{hang}");
    assert!(hang["message"].as_str().unwrap().contains("time limit of 25 s"));
    assert_eq!(hang["steps_completed"][1], 2, "{hang}");
    let nan = manifest(&dir(NAN));
    assert_eq!(nan["outcome"], "nan_loss", "{nan}");
    assert!(nan["message"].as_str().unwrap().contains("NaN at step 1"), "{nan}");

    // Resume: the crash and the hang again; the finished and the diverged points stay as they are.
    let ok_before = std::fs::read(dir(OK).join("manifest.json")).unwrap();
    let nan_before = std::fs::read(dir(NAN).join("manifest.json")).unwrap();
    let resumed = sweep.shardsweep("resume", &[experiment, "--system", "local"]);
    assert!(resumed.status.success());
    let text = stdout(&resumed);
    assert!(text.contains(&format!("left out {OK}: finished")), "{text}");
    assert!(text.contains(&format!("left out {NAN}: ended nan_loss")), "{text}");
    assert!(text.contains("2 points in 1 jobs"), "{text}");
    sweep.shardsweep("collect", &["--wait", experiment]);
    assert_eq!(std::fs::read(dir(OK).join("manifest.json")).unwrap(), ok_before);
    assert_eq!(std::fs::read(dir(NAN).join("manifest.json")).unwrap(), nan_before);
    for (point, outcome) in [(CRASH, "failed"), (HANG, "timeout")] {
        let again = manifest(&dir(point));
        assert_eq!(again["outcome"], outcome);
        assert_ne!(
            again["scheduler"]["job_id"], ok["scheduler"]["job_id"],
            "{point} ran in the resumed job"
        );
        let kept = std::fs::read_dir(sweep.results().join("slurm-outcomes/.attempts").join(point))
            .unwrap()
            .count();
        assert_eq!(kept, 1, "the first attempt of {point} is kept");
    }
    // Out of attempts: nothing more to submit.
    let last =
        sweep.shardsweep("resume", &[experiment, "--system", "local", "--max-attempts", "2"]);
    assert!(stdout(&last).contains("0 points in 0 jobs"), "{}", stdout(&last));
}

#[test]
fn cancel_stops_the_sweep_and_collect_records_the_running_point_as_cancelled() {
    if !common::full_tier("it needs the local Slurm cluster") {
        return;
    }
    let text = experiment("slurm-cancel", "", 100000, 600)
        .replace("strategy = [\"no_shard\", \"full_shard\"]", "strategy = [\"no_shard\"]");
    let sweep = Sweep::new(&text);
    let experiment = sweep.experiment.to_str().unwrap();
    assert!(sweep.shardsweep("submit", &[experiment, "--system", "local"]).status.success());
    let running = sweep.point("slurm-cancel", "vit-tiny-no_shard-n1x2-mb2");
    wait_for_steps(&running, 2);
    let cancelled = sweep.shardsweep("cancel", &[experiment]);
    assert!(stdout(&cancelled).contains("cancelled 1 jobs"));
    assert_eq!(sweep.shardsweep("collect", &["--wait", experiment]).status.code(), Some(2));
    let m = manifest(&running);
    assert_eq!(m["outcome"], "cancelled", "{m}");
    assert_eq!(m["scheduler"]["job_state"], "CANCELLED");
    let completed: Vec<u32> = serde_json::from_value(m["steps_completed"].clone()).unwrap();
    assert!(completed.iter().all(|&n| n >= 2), "{completed:?}");
    // The second point never started: it has no manifest, and resume would run it.
    let waiting = sweep.point("slurm-cancel", "vit-tiny-no_shard-n1x2-mb4");
    assert!(!waiting.join("manifest.json").exists());
    let status = stdout(&sweep.shardsweep("status", &[experiment]));
    assert!(status.contains("not started (job ended cancelled)"), "{status}");
}

/// A system a user adds (two files): jobs of at most one minute, and a template whose points
/// may outlive it, so Slurm itself ends the job.
#[test]
fn a_job_past_its_walltime_is_collected_as_timeout() {
    if !common::full_tier("it needs the local Slurm cluster") {
        return;
    }
    let sweep = Sweep::new(
        &experiment("slurm-walltime", "", 100000, 45)
            .replace("micro_batch = [2, 4]", "micro_batch = [2]")
            .replace("\"no_shard\", \"full_shard\"", "\"no_shard\""),
    );
    let systems = sweep.dir.path().join("systems");
    std::fs::create_dir_all(&systems).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm");
    let profile = std::fs::read_to_string(root.join("local.toml"))
        .unwrap()
        .replace("name = \"local\"", "name = \"short\"")
        .replace("max_walltime_s = 3600", "max_walltime_s = 60")
        .replace("point_overhead_s = 15", "point_overhead_s = 0");
    std::fs::write(systems.join("short.toml"), profile).unwrap();
    let template = std::fs::read_to_string(root.join("local.sh.j2"))
        .unwrap()
        .replace("--timeout-s {{ p.timeout_s }}", "--timeout-s 3600");
    std::fs::write(systems.join("short.sh.j2"), template).unwrap();

    let experiment = sweep.experiment.to_str().unwrap();
    let submitted = sweep.shardsweep(
        "submit",
        &[experiment, "--system", "short", "--systems", systems.to_str().unwrap()],
    );
    assert!(submitted.status.success());
    assert!(stdout(&submitted).contains("00:01:00"), "walltime rounded to Slurm's minutes");
    assert_eq!(sweep.shardsweep("collect", &["--wait", experiment]).status.code(), Some(2));
    let m = manifest(&sweep.point("slurm-walltime", "vit-tiny-no_shard-n1x2-mb2"));
    assert_eq!(m["outcome"], "timeout", "{m}");
    assert_eq!(m["scheduler"]["job_state"], "TIMEOUT");
    assert!(m["message"].as_str().unwrap().contains("ended TIMEOUT"));
    assert!(m["steps_completed"][0].as_u64().unwrap() > 0, "partial steps are kept");
}
