//! Turns what the ranks left behind into the point's records and manifest, for every way a run
//! can end: finished, crashed, killed at its time limit or for memory.

use std::path::Path;

use crate::plan::PointSpec;
use crate::records::fault::Fault;
use crate::records::{
    read_spool, spool_path, write_records, Manifest, Outcome, Provenance, RankLayout, RankSpool,
    RecordError, RecordsHeader, SchedulerInfo, RANKS_DIR, RECORDS_FILE, SCHEMA_VERSION,
};

/// How the launcher saw the run end.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// Exit status of the launcher process (mpirun, srun); `None` if it was killed.
    pub exit_code: Option<i32>,
    /// Set when something outside the ranks ended the run: the launcher at the point's time
    /// limit, or the scheduler (job time limit, scancel, a lost node), with why.
    pub stopped_by: Option<(Outcome, String)>,
    pub started_at: String,
    pub ended_at: String,
    pub duration_s: f64,
    /// The end of the run's standard error, for the manifest's message.
    pub stderr_tail: String,
    pub command: Vec<String>,
    pub scheduler: Option<SchedulerInfo>,
    /// Processes the kernel's OOM killer ended in the launcher's cgroup during the run (the
    /// rise of `oom_kill` in its `memory.events`), where the cgroup says.
    pub oom_kills: u64,
}

/// Reads every rank's spool, writes `records.h5` and then `manifest.json`. When `records.h5`
/// cannot be written (a full disk, a file system that refuses it), the manifest is still
/// written and says so: which file, why, how much space it needed and how much was free. The
/// spools are never removed, so nothing a rank recorded is lost.
pub fn finalize(
    point_dir: &Path,
    point: &PointSpec,
    end: &RunEnd,
) -> Result<Manifest, RecordError> {
    let ranks: Vec<RankSpool> = (0..point.world_size())
        .map(|r| read_spool(&spool_path(point_dir, r)))
        .collect::<Result<_, _>>()?;
    let header = RecordsHeader {
        sweep: &point.sweep,
        point: &point.id,
        steps_planned: point.settings.steps,
        warmup_steps: point.settings.warmup_steps,
    };
    let records_path = point_dir.join(RECORDS_FILE);
    let written = if Fault::RecordsNoSpace.planted() {
        Err(RecordError::io(&records_path)(std::io::Error::from_raw_os_error(libc::ENOSPC)))
    } else {
        write_records(&records_path, &header, &ranks)
    };
    let (mut outcome, mut message) = classify(end, &ranks, point.settings.steps);
    if let Err(e) = &written {
        let problem = records_problem(point_dir, &records_path, e);
        tracing::error!(point = %point.id, "{problem}");
        if outcome == Outcome::Ok {
            outcome = Outcome::Failed;
        }
        message = Some(match message {
            Some(m) => format!("{problem}; {m}"),
            None => problem,
        });
    }
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        sweep: point.sweep.clone(),
        point: point.id.clone(),
        digest: point.digest(),
        outcome,
        exit_code: end.exit_code,
        message,
        started_at: end.started_at.clone(),
        ended_at: end.ended_at.clone(),
        duration_s: end.duration_s,
        steps_planned: point.settings.steps,
        warmup_steps: point.settings.warmup_steps,
        steps_completed: ranks.iter().map(|k| k.steps.len() as u32).collect(),
        world_size: point.world_size(),
        nodes: point.nodes,
        ranks_per_node: point.ranks_per_node,
        global_batch: point.global_batch(),
        train_flop_per_step: point.train_flop_per_step(),
        config: serde_json::to_value(point).expect("a point serialises"),
        provenance: provenance(&ranks, end),
        records_file: written.is_ok().then(|| RECORDS_FILE.into()),
        scheduler: end.scheduler.clone(),
        restarts: earlier_attempts(point_dir),
    };
    manifest.write(point_dir)?;
    Ok(manifest)
}

/// Attempts of the point set aside before this one (`<sweep>/.attempts/<point>/`): restarts
/// by a re-run, `resume` or a Slurm requeue.
pub fn earlier_attempts(point_dir: &Path) -> u32 {
    let (Some(sweep_dir), Some(point)) =
        (crate::records::sweep_dir::sweep_of(point_dir), point_dir.file_name())
    else {
        return 0;
    };
    crate::records::sweep_dir::attempts_set_aside(sweep_dir, &point.to_string_lossy())
}

/// Why `records.h5` was not written, with the space it needed (the spools it is made from
/// hold about as much) and the space free on its file system (statvfs).
fn records_problem(point_dir: &Path, path: &Path, error: &RecordError) -> String {
    let spools: u64 = std::fs::read_dir(point_dir.join(RANKS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum();
    let free =
        free_bytes(point_dir).map_or_else(|| "unknown".to_string(), |b| format!("{b} bytes"));
    format!(
        "{} was not written ({error}): it needs about {spools} bytes (its spools' size), {free} free there; the spools in {} keep every step",
        path.display(),
        point_dir.join(RANKS_DIR).display()
    )
}

/// Bytes an unprivileged process may still write on the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs buffer we own.
    (unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } == 0)
        .then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Messages that are positive evidence of running out of memory: allocation failures
/// (libtorch's and C++'s), the kernel's and Slurm's out-of-memory reports. A rank killed by
/// SIGKILL alone is not evidence: a user, the launcher or a node agent can send it too.
const OOM_EVIDENCE: [&str; 6] = [
    "out of memory",
    "outofmemoryerror",
    "std::bad_alloc",
    "can't allocate memory",
    "oom-kill",
    "oom_kill",
];

/// The outcome from the launcher's view and the ranks' own records. `oom` needs evidence: an
/// allocation failure or out-of-memory message, or the OOM killer's count rising
/// ([`RunEnd::oom_kills`]); a rank killed by a signal without it is `failed` ("rank N killed
/// by signal 9"), which a retry may change.
pub fn classify(
    end: &RunEnd,
    ranks: &[RankSpool],
    steps_planned: u32,
) -> (Outcome, Option<String>) {
    let rank_error = ranks
        .iter()
        .enumerate()
        .find_map(|(r, k)| k.error.as_ref().map(|e| format!("rank {r}: {e}")));
    let stderr = end.stderr_tail.to_lowercase();
    let oom_message = OOM_EVIDENCE.iter().any(|needle| {
        stderr.contains(needle)
            || rank_error.as_deref().is_some_and(|e| e.to_lowercase().contains(needle))
    });
    let all_done = ranks.iter().all(|k| k.finished && k.steps.len() as u32 == steps_planned);
    let tail = || Some(last_lines(&end.stderr_tail, 20)).filter(|s| !s.is_empty());
    let diverged = ranks.iter().enumerate().find_map(|(r, k)| {
        k.steps.iter().find(|s| !s.loss.is_finite()).map(|s| (r, s.step, s.loss))
    });
    if let Some((outcome, why)) = &end.stopped_by {
        (*outcome, Some(why.clone()))
    } else if let Some((rank, step, loss)) = diverged {
        (Outcome::NanLoss, Some(format!("rank {rank}: loss {loss} at step {step}")))
    } else if oom_message {
        (Outcome::Oom, rank_error.or_else(tail))
    } else if end.oom_kills > 0 {
        let why = format!(
            "the kernel's OOM killer ended {} process(es) during the run (cgroup memory.events)",
            end.oom_kills
        );
        (Outcome::Oom, Some(why))
    } else if end.exit_code == Some(0) && all_done {
        (Outcome::Ok, None)
    } else {
        let summary = match (killed_by_signal(&end.stderr_tail), end.exit_code) {
            (Some((Some(rank), signal)), _) => format!("rank {rank} killed by signal {signal}"),
            (Some((None, signal)), _) => format!("a rank killed by signal {signal}"),
            (None, Some(code)) => format!("exit code {code}"),
            (None, None) => "killed by a signal".into(),
        };
        let detail = rank_error.or_else(tail).unwrap_or_default();
        (
            Outcome::Failed,
            Some(format!("{summary}; {detail}").trim_end_matches([';', ' ']).to_string()),
        )
    }
}

/// The rank a launcher reports killed by a signal, and the signal, from its standard error:
/// Open MPI's "process rank R with PID P on node N exited on signal S" or srun's
/// "task R: Killed" (SIGKILL).
fn killed_by_signal(stderr: &str) -> Option<(Option<u32>, i32)> {
    let number = |text: &str| -> Option<u32> {
        let digits: String = text.trim_start().chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    for line in stderr.lines() {
        if let Some((before, after)) = line.split_once("exited on signal") {
            let rank = before.split_once("process rank").and_then(|(_, r)| number(r));
            if let Some(signal) = number(after) {
                return Some((rank, signal as i32));
            }
        }
        if let Some((before, _)) = line.split_once(": Killed") {
            if let Some((_, task)) = before.rsplit_once("task ") {
                return Some((number(task), libc::SIGKILL));
            }
        }
    }
    None
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn provenance(ranks: &[RankSpool], end: &RunEnd) -> Provenance {
    let infos: Vec<_> = ranks.iter().filter_map(|k| k.info.as_ref()).collect();
    let first = infos.first();
    let field = |f: fn(&crate::records::RankInfo) -> &String| {
        first.map_or_else(|| "unknown".to_string(), |i| f(i).clone())
    };
    let mut hostnames: Vec<String> = infos.iter().map(|i| i.hostname.clone()).collect();
    hostnames.sort();
    hostnames.dedup();
    Provenance {
        git_commit: field(|i| &i.git_commit),
        binary_version: field(|i| &i.binary_version),
        torch_version: field(|i| &i.torch_version),
        comm_library: field(|i| &i.comm_library),
        hostnames,
        ranks: infos
            .iter()
            .map(|i| RankLayout {
                rank: i.rank,
                node: i.node,
                local_rank: i.local_rank,
                hostname: i.hostname.clone(),
                pid: i.pid,
            })
            .collect(),
        env: first.map(|i| i.env.clone()).unwrap_or_default(),
        command: end.command.clone(),
        fingerprint: first.map(|i| i.fingerprint.clone()).unwrap_or_default(),
    }
}
