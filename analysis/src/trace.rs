//! One step of one point as a Chrome trace (chrome://tracing, ui.perfetto.dev): a process per
//! rank (rank r is pid r + 1: trace viewers treat pid 0 as the kernel's) with two threads. "collectives" has each collective call at its recorded start and end;
//! "phases" lays the step's phase durations end to end (data, forward, backward, exposed
//! comm, optimizer), since the records keep how long each phase took, not when.

use std::path::Path;

use serde_json::{json, Value};

use shardsweep_records::RecordsReader;

use crate::AnalysisError;

pub fn chrome_trace(point_dir: &Path, step: usize) -> Result<Value, AnalysisError> {
    let file = RecordsReader::open(point_dir)?;
    let table = |name: &str| file.table("steps", name);
    let step_s = table("step_s")?;
    if step >= step_s.ncols() || step_s.column(step).iter().any(|v| !v.is_finite()) {
        return Err(AnalysisError::read(
            file.path(),
            format!("step {step} was not completed by every rank"),
        ));
    }
    const PHASES: [&str; 5] = ["data", "forward", "backward", "comm", "optimizer"];
    let phase_s =
        PHASES.iter().map(|phase| table(&format!("{phase}_s"))).collect::<Result<Vec<_>, _>>()?;
    let us = 1e6;
    let mut events = Vec::new();
    // Ranks share a clock only within a host; each rank's step starts at 0 here.
    for rank in 0..step_s.nrows() {
        let pid = rank + 1;
        events.push(json!({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": format!("rank {rank}")}}));
        events.push(json!({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": rank}}));
        events.push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": 0, "args": {"name": "phases"}}));
        events.push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": 1, "args": {"name": "collectives"}}));
        let mut t = 0.0;
        for (phase, durations) in PHASES.iter().zip(&phase_s) {
            let d = durations[[rank, step]];
            events.push(json!({"ph": "X", "name": phase, "cat": "phase", "pid": pid, "tid": 0, "ts": t * us, "dur": d * us}));
            t += d;
        }
    }
    let column = |name: &str| file.column("collectives", name);
    let kinds = file.text_column("collectives", "kind")?;
    let (ranks, steps_of, units) = (column("rank")?, column("step")?, column("unit")?);
    let (start, end, wait, bytes, group) = (
        column("start_s")?,
        column("end_s")?,
        column("wait_s")?,
        column("payload_bytes")?,
        column("group_size")?,
    );
    // NCCL's time on its stream, where the backend kept one (NaN or no column otherwise).
    let stream = column("stream_s").unwrap_or_else(|_| vec![f64::NAN; kinds.len()]);
    // The records keep every column as f64; counts go out as the integers they are.
    for i in (0..kinds.len()).filter(|&i| steps_of[i] as usize == step) {
        let mut args = json!({"payload_bytes": bytes[i] as u64, "group_size": group[i] as u64, "wait_s": wait[i]});
        if stream[i].is_finite() {
            args["stream_s"] = json!(stream[i]);
        }
        events.push(json!({
            "ph": "X", "name": format!("{} unit {}", kinds[i].as_str(), units[i] as u64), "cat": "collective",
            "pid": ranks[i] as u64 + 1, "tid": 1, "ts": start[i] * us, "dur": (end[i] - start[i]) * us,
            "args": args,
        }));
    }
    Ok(
        json!({"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"point_dir": point_dir.display().to_string(), "step": step}}),
    )
}
