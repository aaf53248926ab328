//! `status`, `collect`, `cancel` and `resume` of a sweep with 20,000 jobs in its ledger (goal:
//! each under 5 s), against stand-in Slurm commands that answer as a cluster does: 99% of the
//! jobs pending or running in the controller, 1% completed and known only to accounting
//! before reaching their point (which `resume` then submits again, here dry). Each command
//! gets at most 1,000 ids, so this measures the batching and the harness's own bookkeeping (the
//! stand-ins are shell scripts; a real controller's answer time comes on top).
//!
//! `cargo bench --bench slurm`

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use shardsweep::launch::slurm::{self, Selection, SubmitOptions, Survey, System};
use shardsweep::plan::{expand, Experiment};

const JOBS: usize = 20_000;

/// Enough points for one job each (more than 20,000 before the plan's own checks).
const EXPERIMENT: &str = r#"
name = "ledger-2e4"
[axes]
model = ["vit-tiny"]
strategy = ["no_shard", "full_shard", "shard_grad_op"]
nodes = [1]
ranks_per_node = [1, 2, 4, 8]
micro_batch = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32]
accumulation = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]
activation_checkpointing = [false, true]
[settings]
steps = 2
warmup_steps = 1
"#;

fn ledger_of_20000_jobs(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let (bin, fake) = (root.path().join("bin"), root.path().join("fake"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&fake).unwrap();
    for name in ["squeue", "sacct", "scancel", "sbatch"] {
        let path = bin.join(name);
        std::fs::write(&path, include_str!("../../../tests/fixtures/fake-slurm.sh")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // SAFETY: set before any other thread of this process starts.
    std::env::set_var("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()));
    std::env::set_var("FAKE", &fake);

    let (system, template) = System::load("local", Path::new("slurm")).unwrap();
    let experiment = Experiment::parse(EXPERIMENT, Path::new("ledger-2e4.toml")).unwrap();
    let mut plan = expand(&experiment, &system.machine());
    assert!(plan.points.len() >= JOBS, "{} points", plan.points.len());
    plan.points.truncate(JOBS);
    let results = root.path().join("results");
    let sweep_dir = results.join(&plan.sweep);
    std::fs::create_dir_all(sweep_dir.join("slurm")).unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    let local = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    let (mut ledger, mut pending, mut done) = (String::new(), String::new(), String::new());
    for (k, point) in plan.points.iter().enumerate() {
        let id = (1_000_000 + k).to_string();
        let job = serde_json::json!({
            "job_id": id, "name": format!("j{k}"), "system": "local", "submission": 1,
            "script": "/dev/null", "script_sha256": "", "nodes": 1, "walltime_s": 60,
            "points": [point.id], "submitted_at": now,
        });
        ledger += &format!("{}\n", serde_json::json!({ "event": "intent", "job": job }));
        match k % 100 {
            0 => done += &format!("{id}|COMPLETED|None|n1|{local}|0:0|j{k}\n"),
            r if r % 2 == 0 => pending += &format!("{id}|PENDING|Priority||{local}|j{k}\n"),
            _ => pending += &format!("{id}|RUNNING|None|n1|{local}|j{k}\n"),
        }
    }
    std::fs::write(sweep_dir.join("slurm/ledger.jsonl"), ledger).unwrap();
    std::fs::write(fake.join("squeue.rows"), pending).unwrap();
    std::fs::write(fake.join("sacct.rows"), done).unwrap();

    let client = slurm::Slurm::default();
    let mut group = c.benchmark_group("slurm_ledger_2e4");
    group.sample_size(10);
    group.bench_function("status", |b| {
        b.iter(|| {
            let survey = Survey::ask(&sweep_dir, &client).unwrap();
            assert_eq!(slurm::survey(&survey, &sweep_dir, false).unwrap().len(), JOBS);
        })
    });
    group.bench_function("collect", |b| {
        b.iter(|| {
            let survey = Survey::ask(&sweep_dir, &client).unwrap();
            slurm::survey(&survey, &sweep_dir, true).unwrap()
        })
    });
    group.bench_function("cancel", |b| {
        b.iter(|| {
            let survey = Survey::ask(&sweep_dir, &client).unwrap();
            assert_eq!(slurm::cancel(&survey, &client).unwrap().live.len(), JOBS - JOBS / 100);
        })
    });
    let options = SubmitOptions {
        results: results.clone(),
        exe: "/bin/true".into(),
        account: None,
        exclude_nodes: None,
        dry_run: true,
        experiment_text: EXPERIMENT.into(),
        point_limits_s: Default::default(),
        retry: false,
        no_lock: true,
        slurm: client.clone(),
    };
    group.bench_function("resume_dry_run", |b| {
        b.iter(|| {
            let selection = Selection::Resume { max_attempts: 3 };
            let submission =
                slurm::submit(&plan, &experiment.launch, &system, &template, selection, &options)
                    .unwrap();
            // The completed 1% never started: resume takes those points again.
            assert_eq!(submission.left.len(), JOBS - JOBS / 100);
        })
    });
    group.finish();
}

criterion_group!(benches, ledger_of_20000_jobs);
criterion_main!(benches);
