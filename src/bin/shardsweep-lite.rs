//! `shardsweep-lite`: the commands that never train (`plan`, `predict`, `analyze`, `compare`,
//! `trace`, `bench-analysis`, `bundle`, `history`, and `data import`, `rasters`, `digits`)
//! and nothing else, in a binary that does not link libtorch: the same code that `shardsweep`
//! runs for them itself (cli/lite.rs).

#[path = "../cli/lite.rs"]
mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main("shardsweep-lite", std::env::args_os().collect())
}
