//! Launch: start each point's ranks, watch them, stop them at the time limit, and have their
//! records finalised. Training code is never linked in here: ranks are separate processes
//! (`shardsweep worker`), started by mpirun on this machine ([`run_sweep`]) or by srun in the
//! batch jobs of a Slurm submission ([`slurm`]).

mod finalize;
mod folder;
mod local;
mod retry;
pub mod shell;
pub mod signals;
pub mod slurm;
mod supervise;
mod sweep;

pub use finalize::{classify, finalize, RunEnd};
pub use folder::point_dir;
pub use local::{free_port, mpirun_command, LocalLauncher};
pub use retry::{should_run, Skip};
pub use supervise::{supervise, RunStatus};
pub use sweep::{run_sweep, PointResult, SweepOptions};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("sweep {0} is already running here (its results folder is locked)")]
    Locked(String),
    #[error("{path}: cannot lock it ({source}): this file system does not support flock() (some NFS and Lustre mounts do not); run with --no-lock to go on without the lock, and start no second run of this sweep meanwhile")]
    CannotLock { path: String, source: std::io::Error },
    #[error("point {point}: an earlier run of it is still running here ({what}, in {dir}); stop it ({stop}) or wait for it, then run again")]
    LauncherAlive { point: String, what: String, stop: String, dir: String },
    #[error(transparent)]
    Record(#[from] crate::records::RecordError),
}

impl LaunchError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| LaunchError::Io { path: path.display().to_string(), source }
    }
}
