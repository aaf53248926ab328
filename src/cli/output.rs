//! The commands' standard output and error. A reader that goes away early
//! (`shardsweep plan ... | head`) is not an error: the rest of the text is dropped quietly and
//! the command still finishes its work (the files it writes are its results), where `println!`
//! would panic (exit 101). Any other failure to write (a full disk behind `> file`) is kept and
//! reported when the command ends, so output is never lost without a word.
//!
//! `outln!` writes to stdout, `errln!` to stderr. [`pipe_safety_net`] covers printing
//! that does not go through them.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set once a stream's reader has gone: nothing more is written to it.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);
/// The first failure to write other than a reader gone, reported by [`finish`].
static FAILURE: Mutex<Option<String>> = Mutex::new(None);
/// Set by the panic hook when a `println!` elsewhere met a closed pipe.
static PIPE_PANIC: AtomicBool = AtomicBool::new(false);

macro_rules! outln {
    () => { $crate::cli::output::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::output::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::output::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use errln;

pub fn stdout(text: fmt::Arguments) {
    write_to(&STDOUT_GONE, "stdout", &mut std::io::stdout().lock(), text);
}

pub fn stderr(text: fmt::Arguments) {
    write_to(&STDERR_GONE, "stderr", &mut std::io::stderr().lock(), text);
}

fn write_to(gone: &AtomicBool, name: &str, stream: &mut dyn Write, text: fmt::Arguments) {
    write_with(gone, name, stream, |stream| stream.write_fmt(text));
}

/// Writes with `write` and flushes, unless the stream's reader has gone; a failure is kept as
/// [`write_to`] keeps it.
fn write_with(
    gone: &AtomicBool,
    name: &str,
    stream: &mut dyn Write,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = write(&mut *stream).and_then(|()| stream.flush()) {
        gone.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            let mut failure = FAILURE.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert_with(|| format!("cannot write to {name}: {e}"));
        }
    }
}

/// Standard output as an [`std::io::Write`], for output produced piece by piece (a serializer
/// streaming a large document): buffered in blocks of [`STDOUT_BLOCK_BYTES`], with the rules of
/// `outln!` (a reader gone drops the rest quietly; another failure is reported by [`finish`]).
/// Writes never fail, so a serializer writing here always runs to its end. Flushed when
/// dropped.
pub struct StdoutWriter {
    pending: Vec<u8>,
}

/// Bytes [`StdoutWriter`] collects before writing them out (one system call per block).
pub const STDOUT_BLOCK_BYTES: usize = 1 << 16;

impl StdoutWriter {
    pub fn new() -> Self {
        Self { pending: Vec::with_capacity(STDOUT_BLOCK_BYTES) }
    }
}

impl Default for StdoutWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for StdoutWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= STDOUT_BLOCK_BYTES {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let pending = &self.pending;
            write_with(&STDOUT_GONE, "stdout", &mut std::io::stdout().lock(), |s| {
                s.write_all(pending)
            });
            self.pending.clear();
        }
        Ok(())
    }
}

impl Drop for StdoutWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// What went wrong writing the command's output, other than a reader that went away.
pub fn finish() -> Option<String> {
    let _ = std::io::stdout().lock().flush();
    FAILURE.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Runs `command` so that a `println!` that meets a closed pipe (a panic "failed printing to
/// stdout: Broken pipe") ends the command quietly with 141, the status of a process that
/// SIGPIPE ended, instead of a panic's message and 101; its destructors still run (locks
/// released, temporary files removed). Every other panic is reported as before.
pub fn pipe_safety_net(command: impl FnOnce() -> std::process::ExitCode) -> std::process::ExitCode {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            PIPE_PANIC.store(true, Ordering::SeqCst);
        } else {
            default(info);
        }
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)) {
        Ok(code) => code,
        Err(_) if PIPE_PANIC.load(Ordering::SeqCst) => std::process::ExitCode::from(141),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}
