//! How a run ended, decided from evidence: the launcher's exit and standard error, the
//! ranks' spools and the kernel's OOM-kill count. No launcher runs here; the texts are what
//! Open MPI, srun and slurmstepd print.

use shardsweep::launch::{classify, RunEnd};
use shardsweep::records::{Outcome, RankSpool};

fn end(exit_code: Option<i32>, stderr_tail: &str, oom_kills: u64) -> RunEnd {
    RunEnd {
        exit_code,
        stopped_by: None,
        started_at: String::new(),
        ended_at: String::new(),
        duration_s: 1.0,
        stderr_tail: stderr_tail.into(),
        command: Vec::new(),
        scheduler: None,
        oom_kills,
    }
}

/// Two ranks that recorded nothing (they were killed before their first step).
fn ranks() -> Vec<RankSpool> {
    vec![RankSpool::default(), RankSpool::default()]
}

const MPIRUN_SIGKILL: &str = "--------------------------------------------------------------------------\nPrimary job  terminated normally, but 1 process returned\na non-zero exit code. Per user-direction, the job has been aborted.\n--------------------------------------------------------------------------\n--------------------------------------------------------------------------\nmpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed).\n--------------------------------------------------------------------------\n";

#[test]
fn sigkill_alone_is_a_retryable_failure_naming_the_rank() {
    let (outcome, message) = classify(&end(Some(137), MPIRUN_SIGKILL, 0), &ranks(), 10);
    assert_eq!(outcome, Outcome::Failed);
    assert!(outcome.is_retryable());
    assert!(message.unwrap().starts_with("rank 1 killed by signal 9"));
    let srun = "srun: error: nid00012: task 3: Killed\n";
    let (outcome, message) = classify(&end(Some(137), srun, 0), &ranks(), 10);
    assert_eq!(outcome, Outcome::Failed);
    assert!(message.unwrap().starts_with("rank 3 killed by signal 9"));
}

#[test]
fn oom_needs_evidence() {
    let (outcome, message) = classify(&end(Some(137), MPIRUN_SIGKILL, 1), &ranks(), 10);
    assert_eq!(outcome, Outcome::Oom);
    assert!(message.unwrap().contains("OOM killer"));
    let slurm = "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=12.0.\n";
    assert_eq!(classify(&end(Some(137), slurm, 0), &ranks(), 10).0, Outcome::Oom);
    let alloc = "RuntimeError: DefaultCPUAllocator: can't allocate memory\n";
    assert_eq!(classify(&end(Some(1), alloc, 0), &ranks(), 10).0, Outcome::Oom);
    // The caching allocators' errors on GPUs, as libtorch words them (CUDA and ROCm builds),
    // recorded by a rank as its error line.
    for message in [
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.81 GiB of which 1.20 GiB is free.",
        "HIP out of memory. Tried to allocate 512.00 MiB. GPU 3 has a total capacity of 63.98 GiB of which 12.00 MiB is free.",
    ] {
        let rank = RankSpool { error: Some(message.into()), ..RankSpool::default() };
        let (outcome, why) = classify(&end(Some(3), "", 0), &[rank, RankSpool::default()], 10);
        assert_eq!(outcome, Outcome::Oom, "{message}");
        assert!(why.unwrap().contains("out of memory"), "{message}");
    }
}
