use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LaunchError;
use crate::plan::PointSpec;
use crate::records::{spool_path, RunEnd, STDERR_FILE, STDOUT_FILE};

/// Starts a point's ranks with OpenMPI's mpirun on this machine. Simulated nodes are groups of
/// `ranks_per_node` consecutive ranks; all of them share this machine's cores.
pub struct LocalLauncher {
    pub mpirun: String,
    pub extra_args: Vec<String>,
    /// The program each rank runs (`<exe> worker <point dir>`).
    pub exe: PathBuf,
}

/// Seen while a point runs, for progress displays.
#[derive(Debug, Clone, Copy)]
pub struct RunStatus {
    pub steps_done: u32,
}

const POLL: Duration = Duration::from_millis(200);
const GRACE: Duration = Duration::from_secs(5);

impl LocalLauncher {
    pub fn command(&self, point: &PointSpec, dir: &Path) -> Vec<String> {
        let program = [self.exe.display().to_string(), "worker".into(), dir.display().to_string()];
        mpirun_command(&self.mpirun, point.world_size(), &self.extra_args, &program)
    }

    /// Runs the point to its end or its time limit; output goes to the point's log files.
    pub fn run(&self, point: &PointSpec, dir: &Path, timeout: Duration, mut progress: impl FnMut(RunStatus)) -> Result<RunEnd, LaunchError> {
        let command = self.command(point, dir);
        let stdout = File::create(dir.join(STDOUT_FILE)).map_err(LaunchError::io(dir))?;
        let stderr_path = dir.join(STDERR_FILE);
        let stderr = File::create(&stderr_path).map_err(LaunchError::io(dir))?;
        let started_at = crate::records::timestamp();
        let start = Instant::now();
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Its own process group, so a timeout can stop mpirun and everything it started.
            .process_group(0)
            .spawn()
            .map_err(|source| LaunchError::Spawn { program: command[0].clone(), source })?;
        let spool = spool_path(dir, 0);
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(LaunchError::io(dir))? {
                break status;
            }
            progress(RunStatus { steps_done: count_steps(&spool) });
            if !timed_out && start.elapsed() > timeout {
                timed_out = true;
                stop_group(child.id(), libc::SIGTERM);
                let deadline = Instant::now() + GRACE;
                while Instant::now() < deadline && child.try_wait().map_err(LaunchError::io(dir))?.is_none() {
                    std::thread::sleep(POLL);
                }
                stop_group(child.id(), libc::SIGKILL);
            }
            std::thread::sleep(POLL);
        };
        progress(RunStatus { steps_done: count_steps(&spool) });
        let stderr_text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let tail_start = stderr_text.len().saturating_sub(8192);
        Ok(RunEnd {
            exit_code: status.code(),
            timed_out,
            started_at,
            ended_at: crate::records::timestamp(),
            duration_s: start.elapsed().as_secs_f64(),
            stderr_tail: stderr_text[stderr_text.floor_char_boundary(tail_start)..].to_string(),
            command,
        })
    }
}

/// `mpirun` starting `ranks` copies of `program` on this machine, more ranks than cores
/// allowed and no pinning (ranks share the cores), `extra_args` before the program.
pub fn mpirun_command(mpirun: &str, ranks: u32, extra_args: &[String], program: &[String]) -> Vec<String> {
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

fn stop_group(pid: u32, signal: libc::c_int) {
    // SAFETY: signalling a process group we created; failure (already gone) is harmless.
    unsafe {
        libc::killpg(pid as libc::pid_t, signal);
    }
}

/// Steps rank 0 has recorded so far.
fn count_steps(spool: &Path) -> u32 {
    std::fs::read_to_string(spool).map(|t| t.lines().filter(|l| l.starts_with("{\"type\":\"step\"")).count() as u32).unwrap_or(0)
}
