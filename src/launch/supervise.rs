//! Runs a point's launcher command (mpirun here, srun inside a Slurm allocation) to its end, its
//! time limit or a stop request ([`signals`](super::signals)), with its output in the point's
//! log files, and says how it ended. While the launcher runs, `launcher.pid` in the point's
//! folder names its process group, so a later run never starts the point beside it.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::signals::{interrupted, Interrupt};
use super::LaunchError;
use super::RunEnd;
use crate::metrics::timestamp;
use crate::records::{read_spool, spool_path, Outcome, RANKS_DIR, STDERR_FILE, STDOUT_FILE};

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
    let pid_file = dir.join(LAUNCHER_PID_FILE);
    let host = this_host();
    // Best effort: without it only the alive check of a later run is lost.
    let _ = std::fs::write(&pid_file, format!("{host} {}\n", child.id()));
    let oom_kills_before = oom_kill_count();
    let spool = spool_path(dir, 0);
    let mut timed_out = false;
    let mut stopped: Option<Interrupt> = None;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(LaunchError::io(dir))? {
            break status;
        }
        progress(RunStatus { steps_done: count_steps(&spool) });
        let stop = interrupted().filter(|_| stopped.is_none() && !timed_out);
        if stop.is_some() || (!timed_out && stopped.is_none() && start.elapsed() > timeout) {
            // The launcher forwards SIGTERM (and SIGINT) to the ranks; after the grace period,
            // or at once on a second signal, everything left in the group is killed.
            let signal = stop.map_or(libc::SIGTERM, |i| i.signal);
            stopped = stop;
            timed_out = stop.is_none();
            stop_group(child.id(), signal);
            let deadline = Instant::now() + GRACE;
            while Instant::now() < deadline
                && interrupted().is_none_or(|i| i.count < 2)
                && child.try_wait().map_err(LaunchError::io(dir))?.is_none()
            {
                std::thread::sleep(POLL);
            }
            stop_group(child.id(), libc::SIGKILL);
            // Ranks in groups of their own that the launcher left behind.
            for pid in live_ranks(dir) {
                // SAFETY: signalling a rank of this point, checked by its command line.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(POLL);
    };
    let _ = std::fs::remove_file(&pid_file);
    let steps_done = count_steps(&spool);
    progress(RunStatus { steps_done });
    let stopped_by = match (timed_out, stopped) {
        (true, _) => Some((
            Outcome::Timeout,
            format!("stopped at the time limit of {} s", timeout.as_secs()),
        )),
        (false, Some(i)) => Some((
            Outcome::Cancelled,
            format!("stopped by {} to the runner after {steps_done} steps of rank 0", i.name()),
        )),
        (false, None) => None,
    };
    Ok(RunEnd {
        exit_code: status.code(),
        stopped_by,
        started_at,
        ended_at: timestamp(),
        duration_s: start.elapsed().as_secs_f64(),
        stderr_tail: stderr_tail(&stderr_path),
        command: command.to_vec(),
        scheduler: None,
        oom_kills: oom_kill_count().saturating_sub(oom_kills_before),
    })
}

/// Names the running launcher's process group: `<hostname> <pgid>`.
pub(crate) const LAUNCHER_PID_FILE: &str = "launcher.pid";

/// What of an earlier run of the point in `dir` is still alive on this host (its runner was
/// killed before it could stop it), and the command that stops it: the launcher's process
/// group, or ranks that outlived it (Open MPI puts each rank in a process group of its own).
pub(crate) fn live_launcher(dir: &Path) -> Option<(String, String)> {
    let here = this_host();
    let group = std::fs::read_to_string(dir.join(LAUNCHER_PID_FILE)).ok().and_then(|text| {
        let (host, pgid) = text.trim().split_once(' ')?;
        let pgid: i32 = pgid.parse().ok()?;
        // SAFETY: signal 0 only checks that the group exists.
        (host == here && pgid > 1 && unsafe { libc::killpg(pgid, 0) } == 0).then_some(pgid)
    });
    if let Some(pgid) = group {
        return Some((format!("process group {pgid}"), format!("kill -TERM -- -{pgid}")));
    }
    let ranks = live_ranks(dir);
    let pids: Vec<String> = ranks.iter().map(|p| p.to_string()).collect();
    (!ranks.is_empty())
        .then(|| (format!("ranks {}", pids.join(", ")), format!("kill -TERM {}", pids.join(" "))))
}

fn this_host() -> String {
    hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Pids of the point's ranks still alive on this host, from their spools' start lines, each
/// checked to be a worker of `dir` (a pid can be reused).
fn live_ranks(dir: &Path) -> Vec<i32> {
    let here = this_host();
    let Ok(entries) = std::fs::read_dir(dir.join(RANKS_DIR)) else { return Vec::new() };
    let needle = dir.display().to_string();
    entries
        .flatten()
        .filter_map(|e| read_spool(&e.path()).ok()?.info)
        .filter(|info| info.hostname == here && info.pid > 1)
        .map(|info| info.pid as i32)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(&needle)
            })
        })
        .collect()
}

/// Processes the kernel's OOM killer has ended in this process's cgroup (cgroup v2's
/// `memory.events`, `oom_kill`); 0 where there is no such file.
fn oom_kill_count() -> u64 {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(path) = cgroup.lines().find_map(|l| l.strip_prefix("0::")) else { return 0 };
    let events = format!("/sys/fs/cgroup{}/memory.events", path.trim_end_matches('/'));
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok()))
        .unwrap_or(0)
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
