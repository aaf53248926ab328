//! Runs a point's launcher command (mpirun here, srun inside a Slurm allocation) to its end or
//! its time limit, with its output in the point's log files, and says how it ended.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LaunchError;
use super::RunEnd;
use crate::metrics::timestamp;
use crate::records::{spool_path, Outcome, STDERR_FILE, STDOUT_FILE};

/// Seen while a point runs, for progress displays.
#[derive(Debug, Clone, Copy)]
pub struct RunStatus {
    pub steps_done: u32,
}

const POLL: Duration = Duration::from_millis(200);
/// Time between asking the launcher to stop (SIGTERM, which mpirun and srun pass on to the
/// ranks) and killing it.
const GRACE: Duration = Duration::from_secs(5);

pub fn supervise(
    command: &[String],
    dir: &Path,
    timeout: Duration,
    mut progress: impl FnMut(RunStatus),
) -> Result<RunEnd, LaunchError> {
    let stdout = File::create(dir.join(STDOUT_FILE)).map_err(LaunchError::io(dir))?;
    let stderr_path = dir.join(STDERR_FILE);
    let stderr = File::create(&stderr_path).map_err(LaunchError::io(dir))?;
    let started_at = timestamp();
    let start = Instant::now();
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Its own process group, so a timeout can stop the launcher and everything it started.
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
            while Instant::now() < deadline
                && child.try_wait().map_err(LaunchError::io(dir))?.is_none()
            {
                std::thread::sleep(POLL);
            }
            stop_group(child.id(), libc::SIGKILL);
        }
        std::thread::sleep(POLL);
    };
    progress(RunStatus { steps_done: count_steps(&spool) });
    Ok(RunEnd {
        exit_code: status.code(),
        stopped_by: timed_out.then(|| {
            (Outcome::Timeout, format!("stopped at the time limit of {} s", timeout.as_secs()))
        }),
        started_at,
        ended_at: timestamp(),
        duration_s: start.elapsed().as_secs_f64(),
        stderr_tail: stderr_tail(&stderr_path),
        command: command.to_vec(),
        scheduler: None,
    })
}

/// The last 8 KiB of a run's standard error, for its manifest's message.
pub(crate) fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text[text.floor_char_boundary(text.len().saturating_sub(8192))..].to_string()
}

fn stop_group(pid: u32, signal: libc::c_int) {
    // SAFETY: signalling a process group we created; failure (already gone) is harmless.
    unsafe {
        libc::killpg(pid as libc::pid_t, signal);
    }
}

/// Steps rank 0 has recorded so far.
fn count_steps(spool: &Path) -> u32 {
    std::fs::read_to_string(spool)
        .map(|t| t.lines().filter(|l| l.starts_with("{\"type\":\"step\"")).count() as u32)
        .unwrap_or(0)
}
