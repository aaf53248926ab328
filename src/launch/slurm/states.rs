//! Every job state and pending reason Slurm documents (squeue(1) "JOB STATE CODES", sacct(1)
//! "JOB STATE CODES", and the job reason codes page), mapped once to what it means for a
//! sweep. `status` shows the standing, `collect --wait` waits only for jobs that will move
//! by themselves, `resume` never resubmits a point whose job is still alive (held ones
//! included), and `cancel` cancels every job that is alive. The README's state table is
//! rendered from [`STATES`] and [`REASONS`] (a test keeps the two equal).

use crate::records::Outcome;

/// What a job's state means for its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Waiting for resources, priority, a begin time or a dependency; starts by itself.
    Queued,
    /// Waiting on a person: held, a dependency that can never be met, a request the
    /// partition or the account can never grant. `collect --wait` stops waiting for it.
    NeedsUser,
    /// Allocated: starting, running, suspended, or finishing.
    Running,
    /// Ended; a point it cut short is collected as the rule's `stopped` outcome.
    Ended,
    /// A state this table does not know (a newer Slurm): nothing is decided from it.
    Unrecognised,
}

impl Standing {
    /// Still in the scheduler's hands: queued, held, running, or not understood.
    pub fn is_live(self) -> bool {
        !matches!(self, Standing::Ended)
    }
}

/// One job state: what it means, and how a point it cut short ended.
#[derive(Debug, Clone, Copy)]
pub struct StateRule {
    pub state: &'static str,
    pub standing: Standing,
    /// The outcome of a point still running when the job ended this way (none: the point's
    /// own records decide, as for a job that exited by itself).
    pub stopped: Option<Outcome>,
    pub meaning: &'static str,
}

const fn rule(
    state: &'static str,
    standing: Standing,
    stopped: Option<Outcome>,
    meaning: &'static str,
) -> StateRule {
    StateRule { state, standing, stopped, meaning }
}

use Standing::{Ended, NeedsUser, Queued, Running};

/// Every job state of squeue(1) and sacct(1).
pub const STATES: &[StateRule] = &[
    rule("PENDING", Queued, None, "waiting to start; its reason may need you (below)"),
    rule("REQUEUED", Queued, None, "requeued; runs again by itself"),
    rule("REQUEUE_FED", Queued, None, "requeued by its federation; runs again by itself"),
    rule("REQUEUE_HOLD", NeedsUser, None, "requeued and held: `scontrol release ID`"),
    rule(
        "SPECIAL_EXIT",
        NeedsUser,
        None,
        "requeued held after a special exit: `scontrol release ID`",
    ),
    rule(
        "RESV_DEL_HOLD",
        NeedsUser,
        None,
        "held because its reservation was deleted: `scontrol release ID`",
    ),
    rule("CONFIGURING", Running, None, "allocated; its nodes are being readied"),
    rule("RUNNING", Running, None, "running"),
    rule("SUSPENDED", Running, None, "suspended by the scheduler or an administrator"),
    rule("STOPPED", Running, None, "stopped (SIGSTOP) with its cores kept"),
    rule("RESIZING", Running, None, "changing size"),
    rule("SIGNALING", Running, None, "being signalled"),
    rule("COMPLETING", Running, None, "finishing: some processes still run"),
    rule("STAGE_OUT", Running, None, "staging out its burst buffer"),
    rule("COMPLETED", Ended, None, "ended with exit code 0"),
    rule("FAILED", Ended, None, "ended with a non-zero exit code"),
    rule("CANCELLED", Ended, Some(Outcome::Cancelled), "cancelled by a user or an administrator"),
    rule("TIMEOUT", Ended, Some(Outcome::Timeout), "ended at its time limit"),
    rule("DEADLINE", Ended, Some(Outcome::Timeout), "ended at its deadline"),
    rule("PREEMPTED", Ended, Some(Outcome::Cancelled), "ended by preemption"),
    rule("NODE_FAIL", Ended, Some(Outcome::NodeFail), "ended by a node failure"),
    rule("BOOT_FAIL", Ended, Some(Outcome::NodeFail), "ended by a node that failed to boot"),
    rule("OUT_OF_MEMORY", Ended, Some(Outcome::Oom), "ended by the out-of-memory killer"),
    rule("REVOKED", Ended, None, "revoked: a federated sibling job ran instead"),
];

/// A pending reason that needs a person, with what to do about it. Reasons not listed (Priority,
/// Resources, BeginTime, Dependency, the `*Grp*` aggregate limits, ReqNodeNotAvail, ...) clear
/// by themselves, and the job stays queued.
#[derive(Debug, Clone, Copy)]
pub struct ReasonRule {
    /// The reason as squeue's `%r` prints it, or the start of it.
    pub reason: &'static str,
    /// A part the rest of the reason must hold too (the per-job limits among the `*Max*`
    /// reasons; `AssocMaxJobsLimit` and its like clear when other jobs end).
    pub and_holds: &'static str,
    pub advice: &'static str,
}

const fn reason(reason: &'static str, advice: &'static str) -> ReasonRule {
    ReasonRule { reason, and_holds: "", advice }
}

const fn per_job(reason: &'static str, advice: &'static str) -> ReasonRule {
    ReasonRule { reason, and_holds: "PerJob", advice }
}

pub const REASONS: &[ReasonRule] = &[
    reason("JobHeldUser", "held by its user: `scontrol release ID`"),
    reason("JobHeldAdmin", "held by an administrator: ask them to release it"),
    reason(
        "launch failed requeued held",
        "its launch failed and it was held: check the nodes, then `scontrol release ID`",
    ),
    reason("DependencyNeverSatisfied", "its dependency can never be met: `scancel ID`"),
    reason("BadConstraints", "its constraints can never be met: cancel it and fix the profile"),
    reason("PartitionDown", "its partition is down: wait for the administrators, or cancel it"),
    reason(
        "PartitionInactive",
        "its partition is inactive: wait for the administrators, or cancel it",
    ),
    reason(
        "PartitionNodeLimit",
        "it asks for more nodes than its partition allows: cancel it and fix the profile",
    ),
    reason(
        "PartitionTimeLimit",
        "it asks for more time than its partition allows: cancel it and fix queue_limits",
    ),
    reason("InvalidAccount", "its account is invalid: cancel it and pass --account"),
    reason("InvalidQOS", "its QOS is invalid: cancel it and fix the profile's qos"),
    reason(
        "AccountNotAllowed",
        "its account may not use the partition: cancel it and fix the profile",
    ),
    reason("QOSNotAllowed", "its QOS may not use the partition: cancel it and fix the profile"),
    per_job("AssocMax", "it exceeds a per-job limit of its association: cancel it and resize it"),
    per_job("QOSMax", "it exceeds a per-job limit of its QOS: cancel it and resize it"),
];

/// The rule for a state name as squeue or sacct prints it (`CANCELLED by 0` is `CANCELLED`).
pub fn state_rule(state: &str) -> Option<&'static StateRule> {
    STATES.iter().find(|r| r.state == state)
}

/// The advice for a pending reason that needs a person, if it is one.
pub fn reason_rule(reason: &str) -> Option<&'static ReasonRule> {
    REASONS
        .iter()
        .find(|r| reason.strip_prefix(r.reason).is_some_and(|rest| rest.contains(r.and_holds)))
}

/// How `state` (with its pending `reason`) stands, and what a person should do about it.
pub fn standing(state: &str, reason: &str) -> (Standing, Option<&'static str>) {
    match state_rule(state) {
        None => (Standing::Unrecognised, None),
        Some(r) if r.standing == Queued => match reason_rule(reason) {
            Some(needs) => (NeedsUser, Some(needs.advice)),
            None => (Queued, None),
        },
        Some(r) if r.standing == NeedsUser => (NeedsUser, Some(r.meaning)),
        Some(r) => (r.standing, None),
    }
}

/// The state table as the README shows it (Markdown).
pub fn markdown_table() -> String {
    let mut text = String::from(
        "| Slurm state | standing | `status` shows | `collect --wait` | `resume` | `cancel` |\n|---|---|---|---|---|---|\n",
    );
    for r in STATES {
        let (waits, resume, cancel) = consequences(r.standing, r.stopped);
        text += &format!(
            "| `{}` | {} | {} | {waits} | {resume} | {cancel} |\n",
            r.state,
            standing_name(r.standing),
            r.meaning
        );
    }
    text += "\n| pending reason | `status` shows |\n|---|---|\n";
    for r in REASONS {
        let pattern = match r.and_holds {
            "" => r.reason.to_string(),
            part => format!("{}*{part}*", r.reason),
        };
        text += &format!("| `{pattern}` | needs you: {} |\n", r.advice);
    }
    text
}

fn standing_name(standing: Standing) -> &'static str {
    match standing {
        Queued => "queued",
        NeedsUser => "needs you",
        Running => "running",
        Ended => "ended",
        Standing::Unrecognised => "unrecognised",
    }
}

/// What `collect --wait`, `resume` and `cancel` do with a job of this standing.
fn consequences(
    standing: Standing,
    stopped: Option<Outcome>,
) -> (&'static str, &'static str, &'static str) {
    match (standing, stopped) {
        (Queued | Running, _) => ("waits", "leaves its points", "cancels it"),
        (NeedsUser | Standing::Unrecognised, _) => {
            ("stops waiting, says what to do", "leaves its points", "cancels it")
        }
        (Ended, Some(Outcome::Cancelled)) => {
            ("collects: cancelled", "reruns unfinished points", "nothing")
        }
        (Ended, Some(Outcome::Timeout)) => {
            ("collects: timeout", "reruns unfinished points", "nothing")
        }
        (Ended, Some(Outcome::NodeFail)) => {
            ("collects: node_fail", "reruns unfinished points", "nothing")
        }
        (Ended, Some(Outcome::Oom)) => ("collects: oom", "reruns with --retry", "nothing"),
        (Ended, _) => ("collects from the records", "reruns unfinished points", "nothing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_reasons_need_the_user_and_others_stay_queued() {
        assert_eq!(standing("PENDING", "JobHeldUser").0, NeedsUser);
        assert_eq!(standing("PENDING", "launch failed requeued held").0, NeedsUser);
        assert_eq!(standing("PENDING", "AssocMaxNodesPerJobLimit").0, NeedsUser);
        assert_eq!(standing("PENDING", "AssocMaxJobsLimit").0, Queued);
        assert_eq!(standing("PENDING", "QOSMaxWallDurationPerJobLimit").0, NeedsUser);
        assert_eq!(standing("PENDING", "Priority").0, Queued);
        assert_eq!(standing("PENDING", "ReqNodeNotAvail, UnavailableNodes:n[1-2]").0, Queued);
        assert_eq!(standing("REQUEUE_HOLD", "JobHeldAdmin").0, NeedsUser);
        assert_eq!(standing("RUNNING", "None").0, Running);
        assert_eq!(standing("LAUNCHED_ELSEWHERE", "").0, Standing::Unrecognised);
        assert!(Standing::Unrecognised.is_live() && !Ended.is_live());
    }

    #[test]
    fn every_state_is_named_once() {
        let mut names: Vec<&str> = STATES.iter().map(|r| r.state).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), STATES.len());
    }

    #[test]
    fn the_readme_shows_this_table() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README's state table differs from the code's; paste this:\n{}",
            markdown_table()
        );
    }
}
