use std::path::{Path, PathBuf};
use std::time::Duration;

use super::supervise::{supervise, RunStatus};
use super::LaunchError;
use super::RunEnd;
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
    pub fn command(&self, point: &PointSpec, dir: &Path) -> Vec<String> {
        let program = [self.exe.display().to_string(), "worker".into(), dir.display().to_string()];
        mpirun_command(&self.mpirun, point.world_size(), &self.extra_args, &program)
    }

    /// Runs the point to its end or its time limit; output goes to the point's log files.
    pub fn run(
        &self,
        point: &PointSpec,
        dir: &Path,
        timeout: Duration,
        progress: impl FnMut(RunStatus),
    ) -> Result<RunEnd, LaunchError> {
        supervise(&self.command(point, dir), dir, timeout, progress)
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
