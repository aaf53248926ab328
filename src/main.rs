//! The `shardsweep` command line. The commands that never train (`plan`, `predict`, `analyze`,
//! `compare`, `trace`, `bench-analysis`, `bundle`, `history`, `data import`, `rasters`,
//! `digits`: cli/lite.rs) run here, in a binary that does not link libtorch, so they start in
//! milliseconds: loading libtorch costs about 0.7 s and 0.5 GiB of resident memory before
//! `main` (more for CUDA builds). For every other command, and for `--help` and `--version`,
//! this process becomes `shardsweep-torch`, the binary beside it, with the same arguments.

#[path = "cli/lite.rs"]
mod cli;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// The binary with every command, beside this one.
const TORCH_BINARY: &str = "shardsweep-torch";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if cli::handles(args.get(1..).unwrap_or_default()) {
        return cli::main("shardsweep", args);
    }
    let torch = match std::env::current_exe() {
        Ok(me) => me.with_file_name(TORCH_BINARY),
        Err(e) => {
            eprintln!("error: cannot find this program, so not {TORCH_BINARY} beside it: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut command = Command::new(&torch);
    // The same name in its usage lines and errors as this program's.
    if let Some(name) = args.first() {
        command.arg0(name);
    }
    let error = command.args(args.iter().skip(1)).exec();
    eprintln!(
        "error: cannot start {}: {error} (every command but the ones that never train is its; \
         `cargo build` makes it beside this program)",
        torch.display()
    );
    // The shell's codes for a command not found and one that cannot be run.
    ExitCode::from(if error.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 })
}
