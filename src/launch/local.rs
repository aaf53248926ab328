//! The local launcher: a point's ranks started with OpenMPI's mpirun on this machine, with the
//! c10d store's address for the c10d backends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::supervise::{supervise, RunStatus};
use super::LaunchError;
use super::RunEnd;
use crate::comm::C10dBackend;
use crate::plan::PointSpec;

/// Starts a point's ranks with OpenMPI's mpirun on this machine. Simulated nodes are groups of
/// `ranks_per_node` consecutive ranks; all of them share this machine's cores.
pub struct LocalLauncher {
    pub mpirun: String,
    pub extra_args: Vec<String>,
    /// The program each rank runs (`<exe> worker <point dir>`).
    pub exe: PathBuf,
}

impl LocalLauncher {
    /// mpirun starts the ranks whatever the backend; c10d backends also get the address of
    /// the store rank 0 hosts (`MASTER_ADDR`, `MASTER_PORT`: a port free when this is called).
    pub fn command(&self, point: &PointSpec, dir: &Path) -> Result<Vec<String>, LaunchError> {
        let program = [self.exe.display().to_string(), "worker".into(), dir.display().to_string()];
        let mut extra = Vec::new();
        if C10dBackend::of(point.backend()).is_some() {
            let port = free_port()?;
            for var in ["MASTER_ADDR=127.0.0.1".to_string(), format!("MASTER_PORT={port}")] {
                extra.extend(["-x".to_string(), var]);
            }
        }
        extra.extend(self.extra_args.iter().cloned());
        Ok(mpirun_command(&self.mpirun, point.world_size(), &extra, &program))
    }

    /// Runs the point to its end or its time limit; output goes to the point's log files.
    pub fn run(
        &self,
        point: &PointSpec,
        dir: &Path,
        timeout: Duration,
        progress: impl FnMut(RunStatus),
    ) -> Result<RunEnd, LaunchError> {
        supervise(&self.command(point, dir)?, dir, timeout, progress)
    }
}

/// `mpirun` starting `ranks` copies of `program` on this machine, more ranks than cores
/// allowed and no pinning (ranks share the cores), `extra_args` before the program.
pub fn mpirun_command(
    mpirun: &str,
    ranks: u32,
    extra_args: &[String],
    program: &[String],
) -> Vec<String> {
    let mut args = vec![mpirun.to_string()];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        args.push("--allow-run-as-root".into());
    }
    args.extend(["--oversubscribe", "--bind-to", "none", "-np"].map(String::from));
    args.push(ranks.to_string());
    args.extend(extra_args.iter().cloned());
    args.extend(program.iter().cloned());
    args
}

/// A TCP port on the loopback interface that nothing listens on now (the kernel's choice).
pub fn free_port() -> Result<u16, LaunchError> {
    let io = |source| LaunchError::Io { path: "127.0.0.1:0 (a free port)".into(), source };
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(io)?;
    Ok(listener.local_addr().map_err(io)?.port())
}
