//! One retry policy for every way a sweep's points are started again (`run`, `submit`,
//! `resume`): a point finished with the same configuration is not run again; a point whose
//! outcome would repeat (`oom`, `nan_loss`: the same configuration runs out of memory or
//! diverges again) is not run again unless asked (`--retry`); anything else (never run,
//! `failed`, `timeout`, `node_fail`, `cancelled`, or a changed configuration) runs.
//! `--force` runs every point. `resume` also bounds the attempts per point.

use crate::records::{Manifest, Outcome};

/// Why a point is not run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It finished (`ok`) with the same configuration.
    Finished,
    /// It ended in a way a retry would repeat.
    WouldRepeat(Outcome),
}

impl Skip {
    pub fn reason(self) -> String {
        match self {
            Skip::Finished => "finished".into(),
            Skip::WouldRepeat(outcome) => format!(
                "ended {}: running it again would end the same way (--retry runs it anyway)",
                outcome.name()
            ),
        }
    }
}

/// Whether a point whose last attempt left `previous` runs again. `digest` is the point's
/// configuration digest now: a point whose configuration changed always runs.
pub fn should_run(
    previous: Option<&Manifest>,
    digest: &str,
    force: bool,
    retry: bool,
) -> Result<(), Skip> {
    let Some(m) = previous.filter(|m| m.digest == digest) else { return Ok(()) };
    match m.outcome {
        _ if force => Ok(()),
        Outcome::Ok => Err(Skip::Finished),
        outcome if !outcome.is_retryable() && !retry => Err(Skip::WouldRepeat(outcome)),
        _ => Ok(()),
    }
}
