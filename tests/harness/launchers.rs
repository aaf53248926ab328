//! Points started without mpirun: the test starts each rank itself as a plain process with the
//! variables torchrun or srun would set, and the ranks meet through c10d's TCPStore.

use std::path::Path;
use std::process::{Child, Command};

use shardsweep::plan::write_point;
use shardsweep::plan::{expand, Experiment, Machine};
use shardsweep::records::{read_spool, spool_path};

const STEPS: usize = 3;
const WORLD: usize = 2;

fn point_dir(root: &Path, name: &str) -> std::path::PathBuf {
    let text = format!(
        "name = \"{name}\"\n[axes]\nmodel = [\"vit-tiny\"]\nstrategy = [\"full_shard\"]\nnodes = [1]\nranks_per_node = [{WORLD}]\nmicro_batch = [2]\n[settings]\nsteps = {STEPS}\nwarmup_steps = 1\nbackend = \"gloo\"\n"
    );
    let experiment = Experiment::parse(&text, Path::new("test.toml")).unwrap();
    let plan = expand(&experiment, &Machine::local());
    assert_eq!(plan.points.len(), 1, "{:?}", plan.rejected);
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write_point(&dir, &plan.points[0]).unwrap();
    dir
}

/// Starts every rank of the point in `dir` with `vars(rank)` as its launcher environment (and
/// no inherited launcher variables), waits for all, and returns each rank's losses.
fn launch(dir: &Path, vars: impl Fn(usize) -> Vec<(String, String)>) -> Vec<Vec<f64>> {
    let port = shardsweep::launch::free_port().unwrap();
    let ranks: Vec<Child> = (0..WORLD)
        .map(|rank| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_shardsweep"));
            command.arg("worker").arg(dir);
            for (key, _) in std::env::vars() {
                if ["RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"]
                    .contains(&key.as_str())
                    || key.starts_with("OMPI_")
                    || key.starts_with("SLURM_")
                    || key.starts_with("PMIX_")
                {
                    command.env_remove(key);
                }
            }
            command.env("MASTER_ADDR", "127.0.0.1").env("MASTER_PORT", port.to_string());
            command.envs(vars(rank)).spawn().unwrap()
        })
        .collect();
    for mut child in ranks {
        assert!(child.wait().unwrap().success(), "a rank failed in {}", dir.display());
    }
    (0..WORLD)
        .map(|rank| {
            let spool = read_spool(&spool_path(dir, rank as u32)).unwrap();
            assert!(spool.finished && spool.error.is_none(), "rank {rank}: {:?}", spool.error);
            let info = spool.info.unwrap();
            assert_eq!((info.rank as usize, info.world_size as usize), (rank, WORLD));
            assert!(info.comm_library.starts_with("c10d gloo"), "{}", info.comm_library);
            spool.steps.iter().map(|s| s.loss).collect()
        })
        .collect()
}

#[test]
fn torchrun_and_srun_style_ranks_train_the_same_point_alike() {
    let root = tempfile::tempdir().unwrap();
    let torchrun = launch(&point_dir(root.path(), "torchrun"), |rank| {
        vec![
            ("RANK".into(), rank.to_string()),
            ("WORLD_SIZE".into(), WORLD.to_string()),
            ("LOCAL_RANK".into(), rank.to_string()),
        ]
    });
    let slurm = launch(&point_dir(root.path(), "slurm"), |rank| {
        vec![
            ("SLURM_PROCID".into(), rank.to_string()),
            ("SLURM_NTASKS".into(), WORLD.to_string()),
            ("SLURM_LOCALID".into(), rank.to_string()),
        ]
    });
    for losses in [&torchrun, &slurm] {
        assert!(losses.iter().all(|l| l.len() == STEPS && l.iter().all(|v| v.is_finite())));
    }
    // The same point and data: each rank's losses agree whichever launcher started it.
    for (a, b) in torchrun.iter().flatten().zip(slurm.iter().flatten()) {
        assert!((a - b).abs() <= 1e-6 * a.abs(), "torchrun {a} vs srun {b}");
    }
    // Ranks train on different images: their losses differ.
    assert_ne!(torchrun[0], torchrun[1]);
}

#[test]
fn a_worker_without_launcher_variables_says_what_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let dir = point_dir(root.path(), "none");
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardsweep"));
    for (key, _) in std::env::vars() {
        if ["RANK", "WORLD_SIZE"].contains(&key.as_str())
            || key.starts_with("OMPI_")
            || key.starts_with("SLURM_")
        {
            command.env_remove(key);
        }
    }
    let output = command.arg("worker").arg(&dir).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no launcher environment"), "{stderr}");
}
