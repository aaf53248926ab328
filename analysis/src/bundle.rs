//! Baselines that outlive the system they ran on: a sweep packed into one `.tar.zst` file
//! that `compare` and `history` read as they read the sweep's folder.
//!
//! A bundle holds what a comparison needs and nothing that can be rebuilt from it: of every
//! point folder with a manifest its `manifest.json`, `records.h5`, `point.json` and rendered
//! job scripts (`*.sh`, `*.sbatch`); of the sweep its `experiment.toml`, `local_peak.json`,
//! `calibration.json` and the files of its `slurm/` folder (scripts, ledger, job logs). The
//! archive's members are `<sweep>/<path>`, then `bundle.json` at the top: the bundle's schema
//! version, the sweep's name, when and by which harness it was made, every file with its size
//! and SHA-256, and what was left out (per-rank spools, logs, the tidy store, the report and
//! earlier attempts) and why.
//!
//! [`open_sweep`] takes a folder as it is, or unpacks a bundle into a temporary folder (under
//! `TMPDIR`) that lives as long as the returned [`SweepSource`], after checking every file
//! against `bundle.json`: a truncated or corrupted archive, a file whose digest or size differs,
//! a file missing or one not listed is refused, naming the file.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use shardsweep_records::{MANIFEST_FILE, POINT_FILE, RECORDS_FILE};

/// The version of the bundle layout and of `bundle.json`; readers refuse any other.
pub const BUNDLE_SCHEMA_VERSION: u32 = 1;
/// The bundle's own account, at the top of the archive.
pub const BUNDLE_FILE: &str = "bundle.json";
/// Files of the sweep's folder a bundle carries when present.
pub const SWEEP_FILES: [&str; 3] = ["experiment.toml", "local_peak.json", "calibration.json"];
/// The sweep's folder whose files a bundle carries whole.
pub const SLURM_DIR: &str = "slurm";
/// zstd's level for bundles: its default, fast, and records compress well already.
pub const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Write(#[from] shardsweep_records::RecordError),
    #[error("{0}: no point folder with a manifest (is it a sweep's results folder?)")]
    NotASweep(String),
    #[error("{0} exists (overwrite it with --force)")]
    Exists(String),
    #[error("{0}: neither a sweep's folder nor a bundle file")]
    NotFound(String),
    #[error("bundle {bundle}: cannot be read{}: {message} (truncated or corrupted?)", entry.as_ref().map(|e| format!(" at {e}")).unwrap_or_default())]
    Corrupt { bundle: String, entry: Option<String>, message: String },
    #[error("bundle {bundle}: {file} is not a plain file inside the bundle's sweep folder")]
    UnsafeEntry { bundle: String, file: String },
    #[error("bundle {bundle}: has no {BUNDLE_FILE} (not a shardsweep bundle?)")]
    NoAccount { bundle: String },
    #[error("bundle {bundle}: {BUNDLE_FILE}: {message}")]
    Account { bundle: String, message: String },
    #[error("bundle {bundle}: written with bundle schema version {found}; this build reads version {expected}")]
    Schema { bundle: String, found: u32, expected: u32 },
    #[error("bundle {bundle}: {file}: {what} differs from {BUNDLE_FILE} (expected {expected}, found {found}): the bundle was altered or damaged")]
    Mismatch { bundle: String, file: String, what: &'static str, expected: String, found: String },
    #[error("bundle {bundle}: {file} is listed in {BUNDLE_FILE} but not in the archive")]
    Missing { bundle: String, file: String },
    #[error("bundle {bundle}: {file} is in the archive but not listed in {BUNDLE_FILE}")]
    Unlisted { bundle: String, file: String },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io { path: path.display().to_string(), source }
}

/// One file of a bundle: its path below the sweep's folder, size and SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledFile {
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
}

/// Something of the sweep's folder a bundle does not carry, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub path: String,
    pub reason: String,
}

/// The harness that made a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Harness {
    pub version: String,
    pub commit: String,
}

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleAccount {
    pub bundle_schema_version: u32,
    pub sweep: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub harness: Harness,
    /// The record schema version of this build (each manifest names its own too).
    pub record_schema_version: u32,
    pub files: Vec<BundledFile>,
    pub left_out: Vec<LeftOut>,
}

#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Replace an existing output file.
    pub force: bool,
    pub harness: Harness,
}

/// What a point folder's entry is to a bundle: carried, or left out with a reason.
fn point_entry(name: &str, is_dir: bool) -> Result<(), &'static str> {
    match name {
        _ if is_dir && name == shardsweep_records::RANKS_DIR => {
            Err("per-rank spools: records.h5 holds the same steps")
        }
        _ if is_dir => Err("not read by the analysis"),
        MANIFEST_FILE | RECORDS_FILE | POINT_FILE => Ok(()),
        _ if name.ends_with(".sh") || name.ends_with(".sbatch") => Ok(()),
        shardsweep_records::STDOUT_FILE | shardsweep_records::STDERR_FILE => {
            Err("the run's logs: not read by the analysis")
        }
        shardsweep_records::PARAMETERS_FILE => Err("trained parameters: not read by a comparison"),
        _ => Err("not read by the analysis"),
    }
}

/// What a sweep folder's top-level entry (not a point) is to a bundle.
fn sweep_entry(name: &str, is_dir: bool) -> Result<(), &'static str> {
    match name {
        "tidy" if is_dir => Err("the tidy store: rebuilt from records.h5"),
        "report" if is_dir => Err("the analysis' output: made again from the records"),
        ".attempts" if is_dir => Err("earlier attempts of points: superseded"),
        SLURM_DIR if is_dir => Ok(()),
        _ if !is_dir && SWEEP_FILES.contains(&name) => Ok(()),
        _ => Err("not read by the analysis"),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, BundleError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error(&path))?;
        // Links are not followed: what a bundle carries is what the folder holds.
        if file_type.is_symlink() {
            continue;
        }
        entries.push((entry.file_name().to_string_lossy().into_owned(), path, file_type.is_dir()));
    }
    entries.sort();
    Ok(entries)
}

/// Every file below `dir`, as paths relative to `base`, in name order.
fn files_below(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) -> Result<(), BundleError> {
    for (_, path, is_dir) in sorted_entries(dir)? {
        if is_dir {
            files_below(&path, base, out)?;
        } else {
            out.push(path.strip_prefix(base).expect("below base").to_path_buf());
        }
    }
    Ok(())
}

/// What a bundle of `sweep_dir` carries (paths relative to it) and what it leaves out.
pub fn bundle_contents(sweep_dir: &Path) -> Result<(Vec<PathBuf>, Vec<LeftOut>), BundleError> {
    let mut files = Vec::new();
    let mut left_out = Vec::new();
    let mut points = 0;
    let mut leave =
        |path: String, reason: &str| left_out.push(LeftOut { path, reason: reason.into() });
    for (name, path, is_dir) in sorted_entries(sweep_dir)? {
        if is_dir && path.join(MANIFEST_FILE).is_file() {
            points += 1;
            for (inner, _, inner_dir) in sorted_entries(&path)? {
                match point_entry(&inner, inner_dir) {
                    Ok(()) => files.push(PathBuf::from(&name).join(&inner)),
                    Err(reason) => {
                        leave(format!("{name}/{inner}{}", if inner_dir { "/" } else { "" }), reason)
                    }
                }
            }
            continue;
        }
        match sweep_entry(&name, is_dir) {
            Ok(()) if is_dir => files_below(&path, sweep_dir, &mut files)?,
            Ok(()) => files.push(PathBuf::from(&name)),
            Err(reason) => leave(format!("{name}{}", if is_dir { "/" } else { "" }), reason),
        }
    }
    if points == 0 {
        return Err(BundleError::NotASweep(sweep_dir.display().to_string()));
    }
    Ok((files, left_out))
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A path with `/` separators, as archives and `bundle.json` name files.
fn slashed(path: &Path) -> String {
    path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Packs `sweep_dir` into the bundle `out` (written under a temporary name and renamed into
/// place; an existing `out` is refused unless `options.force`). Returns its account.
pub fn write_bundle(
    sweep_dir: &Path,
    out: &Path,
    options: &BundleOptions,
) -> Result<BundleAccount, BundleError> {
    if out.exists() && !options.force {
        return Err(BundleError::Exists(out.display().to_string()));
    }
    let sweep = std::fs::canonicalize(sweep_dir)
        .map_err(io_error(sweep_dir))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    let (paths, left_out) = bundle_contents(sweep_dir)?;
    let mut account = BundleAccount {
        bundle_schema_version: BUNDLE_SCHEMA_VERSION,
        sweep: sweep.clone(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        harness: options.harness.clone(),
        record_schema_version: shardsweep_records::SCHEMA_VERSION,
        files: Vec::new(),
        left_out,
    };
    let mut failure: Option<BundleError> = None;
    let result = shardsweep_records::write_atomic_with(out, |file| {
        let encoder = zstd::Encoder::new(file, ZSTD_LEVEL)?;
        let mut tar = tar::Builder::new(encoder);
        for relative in &paths {
            let path = sweep_dir.join(relative);
            match append_file(&mut tar, &path, &format!("{sweep}/{}", slashed(relative))) {
                Ok((size_bytes, sha256)) => {
                    account.files.push(BundledFile { path: slashed(relative), size_bytes, sha256 })
                }
                Err(e) => {
                    failure = Some(e);
                    return Err(io::Error::other("a file could not be packed"));
                }
            }
        }
        let json = serde_json::to_vec_pretty(&account).map_err(io::Error::other)?;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let mut header = regular_header(json.len() as u64, now);
        tar.append_data(&mut header, BUNDLE_FILE, json.as_slice())?;
        tar.into_inner()?.finish()?.flush()
    });
    match (failure, result) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(BundleError::Write(e)),
        (None, Ok(())) => Ok(account),
    }
}

fn regular_header(size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header
}

/// Appends the file at `path` as `name`, hashing it as it is read; its size and SHA-256.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
) -> Result<(u64, String), BundleError> {
    let file = File::open(path).map_err(io_error(path))?;
    let metadata = file.metadata().map_err(io_error(path))?;
    let size = metadata.len();
    let mtime = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut reader =
        Hashing { inner: BufReader::new(file).take(size), hasher: Sha256::new(), bytes: 0 };
    let mut header = regular_header(size, mtime);
    tar.append_data(&mut header, name, &mut reader).map_err(io_error(path))?;
    if reader.bytes != size {
        // The file shrank while it was read (a sweep still running): the archive would lie.
        return Err(BundleError::Io {
            path: path.display().to_string(),
            source: io::Error::other(format!(
                "changed while packed ({size} bytes, {} read)",
                reader.bytes
            )),
        });
    }
    Ok((size, hex(reader.hasher.finalize())))
}

/// A sweep to read: a folder as given, or a bundle unpacked into a temporary folder that is
/// removed when this is dropped.
#[derive(Debug)]
pub struct SweepSource {
    dir: PathBuf,
    origin: PathBuf,
    account: Option<BundleAccount>,
    _unpacked: Option<tempfile::TempDir>,
}

impl SweepSource {
    /// The sweep's folder (for a bundle, the unpacked copy).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path it was opened from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// `bundle.json`, for a bundle.
    pub fn account(&self) -> Option<&BundleAccount> {
        self.account.as_ref()
    }

    /// The sweep's name: the folder's, or the one the bundle records.
    pub fn name(&self) -> String {
        match &self.account {
            Some(a) => a.sweep.clone(),
            None => {
                self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            }
        }
    }

    /// Where outputs about this sweep go by default: the folder itself, or for a bundle a
    /// folder beside it named as the bundle without `.tar.zst` (the unpacked copy is temporary).
    pub fn home(&self) -> PathBuf {
        match &self.account {
            None => self.dir.clone(),
            Some(_) => {
                let name = self.origin.file_name().unwrap_or_default().to_string_lossy();
                let stem = name.strip_suffix(".tar.zst").or_else(|| name.strip_suffix(".tzst"));
                self.origin.with_file_name(stem.map_or_else(|| format!("{name}.d"), str::to_string))
            }
        }
    }
}

/// Opens `path` as a sweep: a folder as it is, a bundle (see the module's documentation)
/// checked against its `bundle.json` and unpacked.
pub fn open_sweep(path: &Path) -> Result<SweepSource, BundleError> {
    if path.is_dir() {
        return Ok(SweepSource {
            dir: path.to_path_buf(),
            origin: path.to_path_buf(),
            account: None,
            _unpacked: None,
        });
    }
    if !path.is_file() {
        return Err(BundleError::NotFound(path.display().to_string()));
    }
    let unpacked = tempfile::Builder::new()
        .prefix("shardsweep-bundle-")
        .tempdir()
        .map_err(io_error(&std::env::temp_dir()))?;
    let (account, dir) = unpack(path, unpacked.path())?;
    Ok(SweepSource {
        dir,
        origin: path.to_path_buf(),
        account: Some(account),
        _unpacked: Some(unpacked),
    })
}

/// Unpacks the bundle at `path` into `into`, checks it and returns its account and the
/// unpacked sweep folder.
fn unpack(path: &Path, into: &Path) -> Result<(BundleAccount, PathBuf), BundleError> {
    let bundle = path.display().to_string();
    let corrupt = |entry: Option<&str>, e: &dyn std::fmt::Display| BundleError::Corrupt {
        bundle: bundle.clone(),
        entry: entry.map(str::to_string),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(io_error(path))?;
    let decoder = zstd::Decoder::new(file).map_err(|e| corrupt(None, &e))?;
    let mut archive = tar::Archive::new(decoder);
    let mut found: Vec<(String, u64, String)> = Vec::new();
    let mut account_bytes: Option<Vec<u8>> = None;
    let mut sweep_root: Option<String> = None;
    for entry in archive.entries().map_err(|e| corrupt(None, &e))? {
        let mut entry = entry.map_err(|e| {
            let after = found.last().map(|f| format!("the member after {}", f.0));
            corrupt(after.as_deref(), &e)
        })?;
        let name = entry.path().map_err(|e| corrupt(None, &e))?.to_string_lossy().into_owned();
        let unsafe_entry =
            || BundleError::UnsafeEntry { bundle: bundle.clone(), file: name.clone() };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(unsafe_entry());
        }
        if name == BUNDLE_FILE {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(|e| corrupt(Some(&name), &e))?;
            account_bytes = Some(bytes);
            continue;
        }
        // `<sweep>/<relative path>`, nothing that climbs out or starts at the root.
        let parts: Vec<Component> = Path::new(&name).components().collect();
        let plain = parts.iter().all(|c| matches!(c, Component::Normal(_)));
        let (Some(Component::Normal(root)), true, true) = (parts.first(), plain, parts.len() >= 2)
        else {
            return Err(unsafe_entry());
        };
        let root = root.to_string_lossy().into_owned();
        if sweep_root.get_or_insert_with(|| root.clone()) != &root {
            return Err(unsafe_entry());
        }
        let target = into.join(&name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let out = File::create(&target).map_err(io_error(&target))?;
        let mut hashing = Hashing { inner: &mut entry, hasher: Sha256::new(), bytes: 0 };
        io::copy(&mut hashing, &mut io::BufWriter::new(out))
            .map_err(|e| corrupt(Some(&name), &e))?;
        let relative = parts[1..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        found.push((relative, hashing.bytes, hex(hashing.hasher.finalize())));
    }
    let bytes = account_bytes.ok_or_else(|| BundleError::NoAccount { bundle: bundle.clone() })?;
    let version: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| BundleError::Account { bundle: bundle.clone(), message: e.to_string() })?;
    let found_version = version["bundle_schema_version"].as_u64().unwrap_or(0) as u32;
    if found_version != BUNDLE_SCHEMA_VERSION {
        return Err(BundleError::Schema {
            bundle,
            found: found_version,
            expected: BUNDLE_SCHEMA_VERSION,
        });
    }
    let account: BundleAccount = serde_json::from_value(version)
        .map_err(|e| BundleError::Account { bundle: bundle.clone(), message: e.to_string() })?;
    verify(&bundle, &account, &found)?;
    let root = sweep_root.unwrap_or_else(|| account.sweep.clone());
    if root != account.sweep {
        return Err(BundleError::Account {
            bundle,
            message: format!("names sweep {:?}, the archive holds {root:?}", account.sweep),
        });
    }
    Ok((account, into.join(root)))
}

/// Every listed file found with its size and digest, and nothing else.
fn verify(
    bundle: &str,
    account: &BundleAccount,
    found: &[(String, u64, String)],
) -> Result<(), BundleError> {
    let listed: std::collections::BTreeMap<&str, &BundledFile> =
        account.files.iter().map(|f| (f.path.as_str(), f)).collect();
    for (path, size, sha256) in found {
        let Some(expected) = listed.get(path.as_str()) else {
            return Err(BundleError::Unlisted { bundle: bundle.into(), file: path.clone() });
        };
        let mismatch = |what, expected: String, found: String| BundleError::Mismatch {
            bundle: bundle.into(),
            file: path.clone(),
            what,
            expected,
            found,
        };
        if *size != expected.size_bytes {
            return Err(mismatch(
                "size",
                format!("{} bytes", expected.size_bytes),
                format!("{size} bytes"),
            ));
        }
        if *sha256 != expected.sha256 {
            return Err(mismatch("SHA-256", expected.sha256.clone(), sha256.clone()));
        }
    }
    let present: std::collections::BTreeSet<&str> = found.iter().map(|f| f.0.as_str()).collect();
    if let Some(missing) = account.files.iter().find(|f| !present.contains(f.path.as_str())) {
        return Err(BundleError::Missing { bundle: bundle.into(), file: missing.path.clone() });
    }
    Ok(())
}
