//! Batch scripts from a system's template. Every value that reaches a shell command goes
//! through the `q` filter (POSIX shell quoting); names that appear in `#SBATCH` lines are
//! validated before rendering, since sbatch reads those lines without a shell.

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use serde::Serialize;

use super::system::System;
use super::SlurmError;

/// Everything a template may use.
#[derive(Debug, Serialize)]
pub struct ScriptContext<'a> {
    pub sweep: &'a str,
    pub system: &'a System,
    pub account: Option<&'a str>,
    pub exclude_nodes: Option<&'a str>,
    /// This binary, as every node sees it.
    pub exe: String,
    /// Where the rendered script is kept (its own path).
    pub script: String,
    /// One line that submits this script again.
    pub rerun: String,
    pub template: String,
    pub job: JobContext,
}

#[derive(Debug, Serialize)]
pub struct JobContext {
    pub name: String,
    pub nodes: u32,
    pub max_ranks: u32,
    pub walltime: String,
    pub output: String,
    pub points: Vec<PointContext>,
}

#[derive(Debug, Serialize)]
pub struct PointContext {
    pub id: String,
    pub dir: String,
    pub nodes: u32,
    pub ranks_per_node: u32,
    pub ranks: u32,
    pub timeout_s: u64,
    /// `mpi`, `gloo` or `nccl`: c10d backends need `MASTER_ADDR` and `MASTER_PORT` set.
    pub backend: &'static str,
}

pub fn render(template: &str, context: &ScriptContext) -> Result<String, SlurmError> {
    let mut env = Environment::new();
    // A misspelt variable is an error, not an empty string in a job script.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_filter("q", quote);
    env.add_template("job", template).map_err(|e| SlurmError::Template(format!("{e:#}")))?;
    let script = env
        .get_template("job")
        .and_then(|t| t.render(context))
        .map_err(|e| SlurmError::Template(format!("{e:#}")))?;
    Ok(script)
}

fn quote(value: String) -> Result<String, Error> {
    shlex::try_quote(&value).map(|q| q.into_owned()).map_err(|e| {
        Error::new(ErrorKind::InvalidOperation, format!("cannot quote {value:?}: {e}"))
    })
}
