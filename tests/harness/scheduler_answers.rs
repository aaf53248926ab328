//! Which scheduler answer counts, with fake squeue, sacct, scancel and sbatch first on PATH, for
//! the answers the local Slurm cluster cannot be made to give (`tests/slurm_cluster.rs` has the
//! ones it can): accounting that lags the controller, an older job with a reused id, commands
//! that hang or fail, sbatch output of forms a site's plugins print, jobs that wait on a person,
//! and 20,000 jobs in one ledger.
//!
//! The fakes print the rows of `<fake>/<command>.rows` (squeue's or sacct's columns, one job a
//! line) whose id (`-j`) or name (`-n`, `--name`) was asked for; `<command>.fail` makes one
//! print that file's text and fail, `<command>.sleep` makes one sleep that many seconds first.
//! Every call's arguments are logged to `<fake>/calls.log`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

const FAKE: &str = include_str!("../fixtures/fake-slurm.sh");

/// A test's folder: fake Slurm commands in `bin/`, their switches in `fake/`, a sweep in `s/`.
struct Fake {
    root: tempfile::TempDir,
}

impl Fake {
    fn new() -> Self {
        let fake = Self { root: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(fake.path("bin")).unwrap();
        std::fs::create_dir_all(fake.path("fake")).unwrap();
        for name in ["squeue", "sacct", "scancel", "sbatch"] {
            let path = fake.path("bin").join(name);
            std::fs::write(&path, FAKE).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        fake
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn set(&self, file: &str, text: &str) {
        std::fs::write(self.path("fake").join(file), text).unwrap();
    }

    fn clear(&self, file: &str) {
        let _ = std::fs::remove_file(self.path("fake").join(file));
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.path("fake/calls.log")).unwrap_or_default()
    }

    /// A sweep folder with one started point per job id, submitted now.
    fn sweep(&self, jobs: &[String]) -> PathBuf {
        let dir = self.path("s");
        let now = chrono::Utc::now().to_rfc3339();
        let mut ledger = String::new();
        for id in jobs {
            let point = format!("p{id}");
            std::fs::create_dir_all(dir.join(&point).join("ranks")).unwrap();
            let job = serde_json::json!({
                "job_id": id, "name": format!("job{id}"), "system": "local", "submission": 1,
                "script": "/dev/null", "script_sha256": "", "nodes": 1, "walltime_s": 60,
                "points": [point], "submitted_at": now,
            });
            ledger += &serde_json::json!({ "event": "intent", "job": job }).to_string();
            ledger.push('\n');
        }
        std::fs::create_dir_all(dir.join("slurm")).unwrap();
        std::fs::write(dir.join("slurm/ledger.jsonl"), ledger).unwrap();
        dir
    }

    /// An experiment `name` of vit-tiny no_shard points on one node of two ranks, one per
    /// micro-batch, two steps each; returns its path and the results folder beside it.
    fn experiment(&self, name: &str, micro_batches: &str) -> (String, String) {
        let path = self.path("e.toml");
        let text = format!("name = \"{name}\"\n[axes]\nmodel = [\"vit-tiny\"]\nstrategy = [\"no_shard\"]\nnodes = [1]\nranks_per_node = [2]\nmicro_batch = [{micro_batches}]\n[settings]\nsteps = 2\nwarmup_steps = 1\n[launch]\ntimeout_s = 60\n");
        std::fs::write(&path, text).unwrap();
        let results = self.path("results");
        (path.display().to_string(), results.display().to_string())
    }

    fn shardsweep(&self, args: &[&str]) -> Output {
        let path = format!("{}:{}", self.path("bin").display(), std::env::var("PATH").unwrap());
        let output = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
            .args(args)
            .env("PATH", path)
            .env("FAKE", self.path("fake"))
            .output()
            .unwrap();
        eprintln!(
            "$ shardsweep {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

fn now_local() -> String {
    chrono::Local::now().format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn row(output: &Output, point: &str) -> String {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines().find(|l| l.contains(point)).unwrap_or_default().to_string()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_controller_outranks_accounting_that_lags_it() {
    let fake = Fake::new();
    let dir = fake.sweep(&["101".into()]);
    fake.set("squeue.rows", &format!("101|COMPLETED|None|n1|{}|job101\n", now_local()));
    fake.set("sacct.rows", &format!("101|RUNNING|None|n1|{}|0:0|job101\n", now_local()));
    let status = fake.shardsweep(&["status", dir.to_str().unwrap()]);
    let line = row(&status, "p101");
    assert!(line.contains("ended completed"), "accounting's stale RUNNING won: {line}");
}

#[test]
fn accounting_for_an_older_job_with_a_reused_id_is_ignored() {
    let fake = Fake::new();
    let dir = fake.sweep(&["102".into()]);
    fake.set("sacct.rows", "102|COMPLETED|None|n9|2020-01-01T00:00:00|0:0|job102\n");
    let status = fake.shardsweep(&["status", dir.to_str().unwrap()]);
    let line = row(&status, "p102");
    assert!(line.contains("unknown to the scheduler") && !line.contains("n9"), "{line}");
    assert_eq!(status.status.code(), Some(0), "the scheduler answered");
}

#[test]
fn collect_wait_names_what_it_waits_for_and_gives_up_at_its_limit() {
    let fake = Fake::new();
    let dir = fake.sweep(&["103".into()]);
    fake.set("squeue.rows", &format!("103|RUNNING|None|n1|{}|job103\n", now_local()));
    let start = std::time::Instant::now();
    let collect =
        fake.shardsweep(&["collect", dir.to_str().unwrap(), "--wait", "--wait-limit-s", "3"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&collect.stderr);
    assert!(stderr.contains("waiting for 1 points: p103 (running, job 103)"), "{stderr}");
    assert!(stderr.contains("gave up waiting after 3 s"), "{stderr}");
    assert_eq!(collect.status.code(), Some(2), "not every point is ok");
}

/// A controller that does not answer (here: squeue hangs, then fails; accounting is down too)
/// is not "no job": status says so and exits 3, collect finalises nothing, resume submits and
/// moves nothing, cancel fails, and each message names the deadline and what was tried.
#[test]
fn no_answer_is_not_no_job() {
    let fake = Fake::new();
    let dir = fake.sweep(&["201".into(), "202".into()]);
    let (s, d) = (dir.to_str().unwrap(), "--scheduler-deadline-s");
    std::fs::write(dir.join("p201/stderr.log"), "rank 0 is still writing\n").unwrap();
    fake.set(
        "squeue.fail",
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
    );
    fake.set("sacct.fail", "sacct: error: Problem talking to the database: Connection refused");
    fake.set("scancel.fail", "scancel: error: Kill job error: Unable to contact slurm controller");

    let status = fake.shardsweep(&["status", s, d, "3"]);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    let line = row(&status, "p201");
    assert!(line.contains("not known now") && !line.contains("unknown"), "{line}");
    let said = text(&status);
    assert!(said.contains("gave no answer within") && said.contains("tr"), "{said}");
    assert!(said.contains("Unable to contact slurm controller"), "{said}");

    let collect = fake.shardsweep(&["collect", s, d, "2"]);
    assert_eq!(collect.status.code(), Some(3), "{}", text(&collect));
    assert!(!dir.join("p201/manifest.json").exists(), "nothing collected on no answer");

    let experiment = fake.path("e.toml");
    std::fs::write(&experiment, "name = \"s\"\n[axes]\nmodel = [\"vit-tiny\"]\nstrategy = [\"no_shard\"]\nnodes = [1]\nranks_per_node = [2]\nmicro_batch = [2]\n[settings]\nsteps = 2\nwarmup_steps = 1\n").unwrap();
    let ledger_before = std::fs::read(dir.join("slurm/ledger.jsonl")).unwrap();
    let resume = fake.shardsweep(&[
        "resume",
        experiment.to_str().unwrap(),
        "--system",
        "local",
        "--results",
        fake.path("").to_str().unwrap(),
        d,
        "2",
    ]);
    assert_eq!(resume.status.code(), Some(1), "{}", text(&resume));
    assert!(
        text(&resume).contains("nothing was submitted, moved or collected"),
        "{}",
        text(&resume)
    );
    assert!(!fake.calls().contains("sbatch"), "nothing submitted: {}", fake.calls());
    assert_eq!(std::fs::read(dir.join("slurm/ledger.jsonl")).unwrap(), ledger_before);
    assert!(!dir.join(".attempts").exists() && dir.join("p201/stderr.log").exists());

    let cancel = fake.shardsweep(&["cancel", s, d, "2"]);
    assert_ne!(cancel.status.code(), Some(0), "{}", text(&cancel));
    assert!(text(&cancel).contains("scancel"), "{}", text(&cancel));

    // A hung squeue is killed at the deadline, not waited for.
    fake.clear("squeue.fail");
    fake.set("squeue.sleep", "30");
    let start = std::time::Instant::now();
    let hung = fake.shardsweep(&["status", s, d, "2"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(15), "{:?}", start.elapsed());
    assert_eq!(hung.status.code(), Some(3));
    assert!(text(&hung).contains("timed out"), "{}", text(&hung));

    // With the controller down, accounting's word that a job ended is final; for the other
    // job (accounting says running) nothing is known.
    fake.clear("squeue.sleep");
    fake.set("squeue.fail", "slurm_load_jobs error: Socket timed out on send/recv operation");
    fake.clear("sacct.fail");
    fake.set(
        "sacct.rows",
        &format!(
            "201|TIMEOUT|None|n1|{t}|0:0|job201\n202|RUNNING|None|n1|{t}|0:0|job202\n",
            t = now_local()
        ),
    );
    let partly = fake.shardsweep(&["status", s, d, "2"]);
    assert!(row(&partly, "p201").contains("ended timeout"), "{}", row(&partly, "p201"));
    assert!(row(&partly, "p202").contains("not known now"), "{}", row(&partly, "p202"));
}

/// sbatch's answer in the forms sites print: warnings and plugin notes around the id, a
/// `Submitted batch job` line, no id at all although the job was queued, a failure after the
/// job was queued. Each ends with the job's id in the ledger and nothing submitted twice.
#[test]
fn sbatch_answers_of_every_form_end_with_one_job_per_point() {
    let experiment = "name = \"sb\"\n[axes]\nmodel = [\"vit-tiny\"]\nstrategy = [\"no_shard\"]\nnodes = [1]\nranks_per_node = [2]\nmicro_batch = [2]\n[settings]\nsteps = 2\nwarmup_steps = 1\n";
    for (out, status, queued_as) in [
        (
            "sbatch: warning: --mem is ignored\nNOTE: project ABC has 12% left\n701\n",
            0,
            Some("701"),
        ),
        ("Submitted batch job 702\n", 0, Some("702")),
        ("sbatch: your job is queued; see the portal\n", 0, None),
        (
            "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n",
            1,
            None,
        ),
    ] {
        let fake = Fake::new();
        let e = fake.path("e.toml");
        std::fs::write(&e, experiment).unwrap();
        let results = fake.path("results");
        fake.set("sbatch.out", out);
        fake.set("sbatch.status", &status.to_string());
        // The job the scheduler holds under its name, whatever sbatch printed.
        let submit_args = [
            "submit",
            e.to_str().unwrap(),
            "--system",
            "local",
            "--results",
            results.to_str().unwrap(),
        ];
        let name_of = || {
            let ledger = std::fs::read_to_string(results.join("sb/slurm/ledger.jsonl")).unwrap();
            let intent: serde_json::Value =
                serde_json::from_str(ledger.lines().next().unwrap()).unwrap();
            intent["job"]["name"].as_str().unwrap().to_string()
        };
        let id = queued_as.unwrap_or("777");
        if queued_as.is_none() {
            // sbatch queued the job before answering; squeue knows it by name (the fake's
            // rows are read at each call, so write the row before submit asks for it).
            let sweep_dir = std::path::absolute(results.join("sb")).unwrap();
            let name =
                format!("sb-{}-s1-j1", &sha256(sweep_dir.display().to_string().as_bytes())[..6]);
            fake.set("squeue.rows", &format!("{id}|PENDING|Priority||{}|{name}\n", now_local()));
        } else {
            fake.set("squeue.rows", "");
        }
        let first = fake.shardsweep(&submit_args);
        assert_eq!(first.status.code(), Some(0), "{out:?}: {}", text(&first));
        let name = name_of();
        let ledger = std::fs::read_to_string(results.join("sb/slurm/ledger.jsonl")).unwrap();
        assert!(ledger.contains(&format!("\"job_id\":\"{id}\"")), "{out:?}: {ledger}");
        assert!(ledger.contains(out.lines().next().unwrap().trim()), "output kept whole: {ledger}");
        // The scheduler now lists the job as pending; a second submit takes nothing.
        fake.set("squeue.rows", &format!("{id}|PENDING|Priority||{}|{name}\n", now_local()));
        let again = fake.shardsweep(&submit_args);
        assert!(text(&again).contains(&format!("in job {id} (pending)")), "{}", text(&again));
        assert_eq!(
            fake.calls().matches("sbatch --parsable").count(),
            1,
            "{out:?}: {}",
            fake.calls()
        );
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// sbatch that printed no id for a job the scheduler does not have: recorded as refused, and
/// the next submission takes the points again.
#[test]
fn a_refused_submission_is_recorded_and_its_points_stay_free() {
    let fake = Fake::new();
    let (e, results) = fake.experiment("rf", "2");
    let args = ["submit", e.as_str(), "--system", "local", "--results", results.as_str()];
    let results = PathBuf::from(&results);
    fake.set("sbatch.out", "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified\n");
    fake.set("sbatch.status", "1");
    let first = fake.shardsweep(&args);
    assert_eq!(first.status.code(), Some(1));
    assert!(text(&first).contains("Invalid account"), "{}", text(&first));
    let ledger = std::fs::read_to_string(results.join("rf/slurm/ledger.jsonl")).unwrap();
    assert!(ledger.contains("\"event\":\"refused\""), "{ledger}");
    fake.set("sbatch.out", "9001\n");
    fake.set("sbatch.status", "0");
    let second = fake.shardsweep(&args);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let ledger = std::fs::read_to_string(results.join("rf/slurm/ledger.jsonl")).unwrap();
    assert!(ledger.contains("\"job_id\":\"9001\""), "{ledger}");
}

/// A queue limit that stops sbatch midway: the jobs queued before it stay in the ledger, the
/// error says how many, and resume submits only the rest.
#[test]
fn a_queue_limit_midway_keeps_what_was_queued_and_resume_takes_the_rest() {
    let fake = Fake::new();
    // Nine points: the local profile packs at most eight into a job, so two jobs.
    let (e, results) = fake.experiment("ql", "1, 2, 3, 4, 5, 6, 7, 8, 9");
    let args = ["submit", e.as_str(), "--system", "local", "--results", results.as_str()];
    let results = PathBuf::from(&results);
    fake.set("sbatch.out.1", "801\n");
    fake.set("sbatch.out.2", "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)\n");
    fake.set("sbatch.status.2", "1");
    let first = fake.shardsweep(&args);
    assert_eq!(first.status.code(), Some(1));
    assert!(
        text(&first).contains("1 of 2 jobs were queued") && text(&first).contains("resume"),
        "{}",
        text(&first)
    );
    let ledger = std::fs::read_to_string(results.join("ql/slurm/ledger.jsonl")).unwrap();
    assert!(
        ledger.contains("\"job_id\":\"801\"") && ledger.contains("\"event\":\"refused\""),
        "{ledger}"
    );
    fake.set("squeue.rows", &format!("801|PENDING|Priority||{}|x\n", now_local()));
    fake.set("sbatch.out.3", "802\n");
    let mut resume = args;
    resume[0] = "resume";
    let again = fake.shardsweep(&resume);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(text(&again).matches("(pending)").count(), 8, "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("1 points in 1 jobs"),
        "{}",
        text(&again)
    );
}

/// Held jobs (by the user, requeued held after a failed launch, REQUEUE_HOLD) and a dependency
/// that can never be met need a person: status says what to do, collect --wait stops waiting
/// for them at once, resume leaves their points, cancel cancels them.
#[test]
fn jobs_that_wait_on_a_person_are_named_with_what_to_do() {
    let fake = Fake::new();
    let ids: Vec<String> = (301..=305).map(|n| n.to_string()).collect();
    let dir = fake.sweep(&ids);
    let t = now_local();
    fake.set(
        "squeue.rows",
        &format!(
            "301|PENDING|JobHeldUser||{t}|job301\n302|PENDING|launch failed requeued held||{t}|job302\n303|REQUEUE_HOLD|JobHeldAdmin||{t}|job303\n304|PENDING|DependencyNeverSatisfied||{t}|job304\n305|PENDING|Priority||{t}|job305\n"
        ),
    );
    let s = dir.to_str().unwrap();
    let status = fake.shardsweep(&["status", s]);
    assert!(row(&status, "p301").contains("needs you"), "{}", row(&status, "p301"));
    assert!(row(&status, "p305").contains("queued"), "{}", row(&status, "p305"));
    let said = text(&status);
    assert!(
        said.contains("job 301: PENDING, JobHeldUser: held by its user: `scontrol release 301`"),
        "{said}"
    );
    assert!(
        said.contains("job 302") && said.contains("job 303") && said.contains("scancel 304"),
        "{said}"
    );

    // Only the held ones left: collect --wait does not wait for them.
    fake.set(
        "squeue.rows",
        &format!(
            "301|PENDING|JobHeldUser||{t}|job301\n303|REQUEUE_HOLD|JobHeldAdmin||{t}|job303\n"
        ),
    );
    let start = std::time::Instant::now();
    let collect = fake.shardsweep(&["collect", s, "--wait", "--wait-limit-s", "600"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(60), "waited for held jobs");
    assert!(text(&collect).contains("wait on you"), "{}", text(&collect));

    let cancel = fake.shardsweep(&["cancel", s]);
    assert!(
        String::from_utf8_lossy(&cancel.stdout).contains("cancelled 2 jobs"),
        "{}",
        text(&cancel)
    );
}

/// 20,000 jobs in one ledger: no command gets an argument list over Linux's limit (the fake
/// would not start), every point is answered, and cancel cancels every live job.
#[test]
fn twenty_thousand_jobs_are_asked_in_batches() {
    let fake = Fake::new();
    let ids: Vec<String> = (1_000_000..1_020_000).map(|n| n.to_string()).collect();
    let dir = fake.sweep(&ids);
    let t = now_local();
    let rows: String = ids
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 2 == 0)
        .map(|(_, id)| format!("{id}|PENDING|Priority||{t}|job{id}\n"))
        .collect();
    fake.set("squeue.rows", &rows);
    let sacct: String = ids
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 2 == 1)
        .map(|(_, id)| format!("{id}|COMPLETED|None|n1|{t}|0:0|job{id}\n"))
        .collect();
    fake.set("sacct.rows", &sacct);
    let s = dir.to_str().unwrap();
    let status = fake.shardsweep(&["status", s]);
    assert_eq!(status.status.code(), Some(0));
    let out = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        out.lines().filter(|l| l.contains("┆ queued ")).count(),
        10_000,
        "every pending job answered"
    );
    assert_eq!(out.matches("ended completed, not collected").count(), 10_000);
    let calls = fake.calls();
    assert!(calls.lines().all(|l| l.len() < 128 * 1024), "an argument over the limit");
    assert!(calls.lines().filter(|l| l.starts_with("squeue")).count() >= 20, "batched");
    let cancel = fake.shardsweep(&["cancel", s]);
    assert!(String::from_utf8_lossy(&cancel.stdout).contains("cancelled 10000 jobs"));
    let cancelled: u32 = std::fs::read_to_string(fake.path("fake/cancelled.log"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse::<u32>().unwrap())
        .sum();
    assert_eq!(cancelled, 10_000);
}

#[test]
fn submit_names_a_file_system_without_flock_and_no_lock_goes_on() {
    let fake = Fake::new();
    fake.set("sbatch.out", "555\n");
    let experiment = fake.path("e.toml");
    let text = "name = \"nfs\"\n[axes]\nmodel = [\"vit-tiny\"]\nstrategy = [\"no_shard\"]\nnodes = [1]\nranks_per_node = [2]\nmicro_batch = [2]\n[settings]\nsteps = 2\nwarmup_steps = 1\n";
    std::fs::write(&experiment, text).unwrap();
    let results = fake.path("results");
    let submit = |extra: &[&str]| {
        let path = format!("{}:{}", fake.path("bin").display(), std::env::var("PATH").unwrap());
        let output = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
            .args(["submit", experiment.to_str().unwrap(), "--system", "local", "--results"])
            .arg(&results)
            .args(extra)
            .env("PATH", path)
            .env("FAKE", fake.path("fake"))
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
    let ledger = std::fs::read_to_string(results.join("nfs/slurm/ledger.jsonl")).unwrap();
    assert!(ledger.contains("\"555\""), "{ledger}");
}
