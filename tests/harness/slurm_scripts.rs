//! Batch scripts rendered for systems that cannot be reached from here: the paper's matrix for
//! Frontier, checked line by line; and names and values that must never reach a shell unquoted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{one_point, Sweep};

fn shardsweep(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_shardsweep"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn paper_matrix(results: &Path) -> Vec<PathBuf> {
    let output = shardsweep(&[
        "submit",
        "experiments/frontier-paper.toml",
        "--system",
        "frontier",
        "--account",
        "STF000",
        "--dry-run",
        "--results",
        results.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("(dry run: nothing submitted)") && text.contains("node-hours"),
        "a budget line before submission: {text}"
    );
    let dir = results.join("frontier-paper/slurm/dry-run");
    let mut scripts: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    scripts.sort();
    scripts
}

/// Frontier's batch-partition walltime for a job of `nodes` nodes (OLCF user guide).
fn frontier_limit_s(nodes: u32) -> u64 {
    match nodes {
        1..=91 => 7200,
        92..=183 => 21600,
        184..=1881 => 43200,
        _ => 86400,
    }
}

fn sbatch(script: &str, option: &str) -> String {
    script
        .lines()
        .find_map(|l| l.strip_prefix(&format!("#SBATCH --{option}=")))
        .unwrap_or_else(|| panic!("no #SBATCH --{option}"))
        .to_string()
}

#[test]
fn the_paper_matrix_renders_valid_frontier_scripts_within_queue_limits() {
    let results = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let scripts = paper_matrix(results.path());
    assert!(scripts.len() > 8, "jobs per node count: {}", scripts.len());
    let plan =
        shardsweep(&["plan", "experiments/frontier-paper.toml", "--json", "--system", "frontier"]);
    let planned: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let mut seen = BTreeMap::new();
    for path in &scripts {
        let status = Command::new("bash").arg("-n").arg(path).status().unwrap();
        assert!(status.success(), "bash -n {}", path.display());
        let script = std::fs::read_to_string(path).unwrap();
        let nodes: u32 = sbatch(&script, "nodes").parse().unwrap();
        let time = sbatch(&script, "time");
        let hms: Vec<u64> = time.split(':').map(|x| x.parse().unwrap()).collect();
        let walltime_s = hms[0] * 3600 + hms[1] * 60 + hms[2];
        assert!(
            walltime_s > 0 && walltime_s <= frontier_limit_s(nodes),
            "{time} for {nodes} nodes"
        );
        assert_eq!(sbatch(&script, "account"), "STF000");
        assert_eq!(sbatch(&script, "partition"), "batch");
        assert!(script.contains(&format!("rerun this job with:\n#   sbatch {}\n", path.display())));
        for line in [
            "module load PrgEnv-gnu",
            "export NCCL_SOCKET_IFNAME=hsn0",
            "export MIOPEN_USER_DB_PATH=",
            "export LD_LIBRARY_PATH=/path/to/aws-ofi-rccl/lib:",
            // NCCL points meet at a TCPStore on the job's first node.
            "MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)",
            "export MASTER_PORT=$((20000 + (SLURM_JOB_ID * 64 + 1) % 40000))",
        ] {
            assert!(script.contains(line), "{} lacks {line}", path.display());
        }
        let sruns: Vec<&str> =
            script.lines().filter(|l| l.trim_start().starts_with("srun --nodes=")).collect();
        let points: Vec<&str> = script
            .lines()
            .filter_map(|l| {
                l.strip_prefix("# ")
                    .and_then(|r| r.split(':').next())
                    .filter(|id| id.starts_with("vit-"))
            })
            .collect();
        assert_eq!(sruns.len(), points.len());
        for (srun, id) in sruns.iter().zip(&points) {
            assert!(
                srun.contains(&format!(
                    "--nodes={nodes} --ntasks={} --ntasks-per-node=8",
                    nodes * 8
                )),
                "{srun}"
            );
            assert!(
                srun.contains("--gpus-per-task=1")
                    && srun.contains("--gpu-bind=closest")
                    && srun.contains("--cpus-per-task=7"),
                "{srun}"
            );
            assert!(id.contains(&format!("-n{nodes}x8-")), "{id} packed with other node counts");
            assert!(seen.insert(id.to_string(), path.clone()).is_none(), "{id} in two jobs");
        }
        // Walltime covers every point's limit plus start-up.
        assert!(walltime_s >= points.len() as u64 * (1200 + 120), "{}", path.display());
    }
    let expected: Vec<String> = planned["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        {
            let mut e = expected;
            e.sort();
            e
        },
        "every planned point in exactly one job"
    );
    assert_eq!(
        seen.len(),
        214,
        "the paper's 27 strategy and shard-group choices per node count (four up to ViT-3B, six for ViT-5B, five for ViT-15B) x eight node counts, less the 16-GCD shard groups on one node"
    );
}

#[test]
fn frontier_needs_an_account() {
    let output = shardsweep(&[
        "submit",
        "experiments/frontier-paper.toml",
        "--system",
        "frontier",
        "--dry-run",
        "--results",
        env!("CARGO_TARGET_TMPDIR"),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("system frontier needs an account"));
}

#[test]
fn hostile_names_and_values_never_reach_a_script_unquoted() {
    // A sweep name with shell syntax is refused when the experiment is read.
    let sweep = Sweep::new(&one_point("x; touch /tmp/pwned #", 2));
    let out = shardsweep(&[
        "submit",
        sweep.experiment.to_str().unwrap(),
        "--system",
        "local",
        "--dry-run",
        "--results",
        sweep.results().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("name"), "the error names the key");

    let sweep = Sweep::new(&one_point("fine", 2));
    let experiment = sweep.experiment.to_str().unwrap();
    let results = sweep.results();
    let dry = |system: &str, extra: &[&str]| {
        let mut args = vec![
            "submit",
            experiment,
            "--system",
            system,
            "--dry-run",
            "--results",
            results.to_str().unwrap(),
        ];
        args.extend(extra);
        shardsweep(&args)
    };
    for (system, extra, error) in [
        ("local", vec!["--account", "a$(id)"], "account name"),
        ("local", vec!["--exclude", "n1;reboot"], "node list name"),
        ("../etc/passwd", vec![], "system name"),
    ] {
        let out = dry(system, &extra);
        assert!(!out.status.success(), "{extra:?} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(error),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let spaced = sweep.dir.path().join("with space");
    let out = shardsweep(&[
        "submit",
        experiment,
        "--system",
        "local",
        "--dry-run",
        "--results",
        spaced.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot appear in an #SBATCH line"));

    // A profile value with shell syntax is quoted: the rendered script exports it verbatim.
    let systems = sweep.dir.path().join("systems");
    std::fs::create_dir_all(&systems).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("slurm");
    let profile = std::fs::read_to_string(root.join("local.toml"))
        .unwrap()
        .replace("name = \"local\"", "name = \"odd\"")
        + "HOSTILE = \"$(touch /tmp/pwned); `id` 'q'\"\n";
    std::fs::write(systems.join("odd.toml"), profile).unwrap();
    std::fs::copy(root.join("local.sh.j2"), systems.join("odd.sh.j2")).unwrap();
    let out = shardsweep(&[
        "submit",
        experiment,
        "--system",
        "odd",
        "--systems",
        systems.to_str().unwrap(),
        "--dry-run",
        "--results",
        results.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let script = results.join("fine/slurm/dry-run/job-001.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let export = text.lines().find(|l| l.starts_with("export HOSTILE=")).unwrap();
    let printed = Command::new("bash")
        .arg("-c")
        .arg(format!("{export}; printf %s \"$HOSTILE\""))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout), "$(touch /tmp/pwned); `id` 'q'");
    assert!(Command::new("bash").arg("-n").arg(&script).status().unwrap().success());
    // A dry run touches no point folder and records no job.
    assert!(!results.join("fine/vit-tiny-no_shard-n1x2-mb2").exists());
    assert!(!results.join("fine/slurm/ledger.jsonl").exists());
}

#[test]
fn resume_keeps_jobs_off_the_nodes_the_records_show_slow() {
    let sweep = Sweep::new(&one_point("slowish", 2));
    let (experiment, results) = (sweep.experiment.to_str().unwrap(), sweep.results());
    let resume = || {
        let out = shardsweep(&[
            "resume",
            experiment,
            "--system",
            "generic",
            "--dry-run",
            "--results",
            results.to_str().unwrap(),
            "--exclude",
            "n7",
            "--exclude-slow-nodes",
        ]);
        assert!(out.status.success());
        std::fs::read_to_string(results.join("slowish/slurm/dry-run/job-001.sh")).unwrap()
    };
    // Nothing has run yet: only the nodes asked for.
    assert_eq!(sbatch(&resume(), "exclude"), "n7");
    // An earlier point ran on nodes n0 and n1; n1's ranks computed 20% slower.
    let mut earlier = crate::fixture::Point::new("earlier", 2, 12);
    earlier.phases = Box::new(|r, s| {
        [
            0.01,
            0.1 * if r >= 2 { 1.2 } else { 1.0 } * (1.0 + 0.01 * crate::fixture::noise(3, r, s)),
            0.2,
            0.03,
            0.0,
        ]
    });
    earlier.write(&results.join("slowish"));
    assert_eq!(sbatch(&resume(), "exclude"), "n7,n1");
}
