//! Atomic writes: a temporary file beside the target, flushed, renamed over it and the folder
//! synced, so a reader sees the old file or the whole new one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::RecordError;

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never part
/// (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Writes `path` atomically: `write` fills a temporary file beside it, which is flushed to disk
/// and renamed over `path`, and the folder is synced so the rename lasts. Temporary names are
/// unique per process and call (`.<name>.tmp-<pid>-<n>`), so concurrent writers of one file
/// never share one; the last rename wins whole. On error the temporary file is removed.
///
/// # Errors
/// [`RecordError::Io`] naming `path`.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), RecordError> {
    let tmp = temporary_path(path);
    let result =
        File::create(&tmp).and_then(|mut file| write(&mut file)).and_then(|_| commit(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(RecordError::io(path))
}

/// A temporary name beside `path`, hidden (leading dot) and unique to this process and call.
pub fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Flushes a finished temporary file to disk and renames it over `path`, durably: the one
/// ending of every atomic write here (JSON, text, Parquet and HDF5 alike).
pub(crate) fn commit(tmp: &Path, path: &Path) -> std::io::Result<()> {
    File::open(tmp)?.sync_all()?;
    fs::rename(tmp, path)?;
    sync_parent(path)
}

/// Makes a rename durable by syncing the folder that holds it.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}
