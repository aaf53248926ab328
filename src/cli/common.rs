//! What the command modules of every binary (`shardsweep`, `shardsweep-torch`,
//! `shardsweep-lite`) share: logging, the tables' look and how a command's result becomes the
//! exit status.

use std::process::ExitCode;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

/// Logs to stderr (measurements go only to record files), coloured on a terminal, at the level
/// `RUST_LOG` sets (`info` by default).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// A printed table with the project's look and these column headers.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    table
}

/// The exit status of a command that returned `result`: its error, and any failure to write
/// its output, end it with status 1 (printed to stderr).
pub fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            super::output::errln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    match super::output::finish() {
        Some(failure) => {
            super::output::errln!("error: {failure}");
            ExitCode::FAILURE
        }
        None => code,
    }
}
