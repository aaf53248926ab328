//! Turns what the ranks left behind into the point's records and manifest, for every way a run
//! can end: finished, crashed, killed at its time limit or for memory.

use std::path::Path;

use crate::plan::PointSpec;
use crate::records::{
    read_spool, spool_path, write_records, Manifest, Outcome, Provenance, RankLayout, RankSpool,
    RecordError, RecordsHeader, SchedulerInfo, RECORDS_FILE, SCHEMA_VERSION,
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
}

/// Reads every rank's spool, writes `records.h5` and then `manifest.json`.
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
    write_records(&point_dir.join(RECORDS_FILE), &header, &ranks)?;
    let (outcome, message) = classify(end, &ranks, point.settings.steps);
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
        records_file: Some(RECORDS_FILE.into()),
        scheduler: end.scheduler.clone(),
    };
    manifest.write(point_dir)?;
    Ok(manifest)
}

/// The outcome from the launcher's view and the ranks' own records.
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
    let oom = [
        "out of memory",
        "outofmemoryerror",
        "std::bad_alloc",
        "can't allocate memory",
        "exited on signal 9",
        "oom-kill",
    ]
    .iter()
    .any(|needle| {
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
    } else if oom {
        (Outcome::Oom, rank_error.or_else(tail))
    } else if end.exit_code == Some(0) && all_done {
        (Outcome::Ok, None)
    } else {
        let summary = match end.exit_code {
            Some(code) => format!("exit code {code}"),
            None => "killed by a signal".into(),
        };
        let detail = rank_error.or_else(tail).unwrap_or_default();
        (
            Outcome::Failed,
            Some(format!("{summary}; {detail}").trim_end_matches([';', ' ']).to_string()),
        )
    }
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
    }
}
