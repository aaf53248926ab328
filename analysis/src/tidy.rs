//! The tidy store: every point's records as long-format rows, one Parquet file per point under
//! `<sweep>/tidy/`, so `results/*/tidy/*.parquet` is one dataset that Polars, pandas and DuckDB
//! read directly. Columns: sweep, point, the point's configuration (model, strategy,
//! shard_group, nodes, ranks_per_node, world_size, micro_batch, global_batch, accumulation,
//! activation_checkpointing, param_dtype, reduce_dtype, backward_prefetch, limit_all_gathers,
//! loader_workers, data, and where it ran: device, backend, timing), rank, hostname, step,
//! phase, metric, value, unit. The configuration columns are text named as experiment files
//! spell the values (`full_shard`, `bf16`, `gloo`, `device_events`), numbers, or booleans
//! (activation_checkpointing, limit_all_gathers); backend and timing are the device's defaults
//! where the point named none.
//!
//! The rows, from the records' per-step datasets by one vocabulary ([`place`]):
//!
//! | phase | metric | unit | from |
//! |---|---|---|---|
//! | data, forward, backward, comm, optimizer, step | time | s | `/steps/<phase>_s` |
//! | recompute | time | s | `/units/recompute_s`, summed over units |
//! | comm.<kind> (all_gather, ...) | wait / span / payload | s / s / bytes | `/collectives`, summed |
//! | step | loss | 1 | `/steps/loss` |
//! | step | peak_rss | bytes | `/steps/peak_rss_bytes` |
//! | memory.<category> | bytes | bytes | `/memory/<category>_bytes` |
//! | device | allocated_peak, active_peak, reserved_peak / alloc_retries | bytes / 1 | `/device_memory` (GPU runs) |
//! | loader.read, loader.decode, loader.augment | work | s | `/loader/<figure>_s` (worker time) |
//! | loader | read / queue_depth | bytes / batches | `/loader/read_bytes`, `/loader/queue_depth` |
//!
//! The folder holds the points' Parquet files and nothing else, so that every reader takes it
//! as one dataset: Polars' `scan_parquet`/`read_parquet` refuse a folder with any other file
//! in it (hidden or `_`-prefixed ones included), which Arrow's readers would skip. So the
//! store is rebuilt per point only when the point's records change, by a fingerprint of its
//! manifest and records file kept beside the folder in `<sweep>/tidy.index.json`, and each
//! file is written in `<sweep>/.tidy-staging/` and renamed into the folder whole. A point
//! whose records cannot be read is left out and listed in [`StoreUpdate::skipped`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use shardsweep_records::{
    write_atomic_with, DeviceMemoryRecord, MemoryRecord, RecordsReader, MANIFEST_FILE, RECORDS_FILE,
};

use crate::load::PointRecords;
use crate::AnalysisError;

pub const STORE_DIR: &str = "tidy";
/// The fingerprints of the store's points, beside (not in) the store's folder.
pub const INDEX_FILE: &str = "tidy.index.json";
/// Where each point's file is written before it is renamed into the store whole.
const STAGING_DIR: &str = ".tidy-staging";
/// The store's columns and rows as this version writes them, part of every fingerprint: a
/// change (2: loader_workers, data and the loader's rows; 3: reduce_dtype, backward_prefetch,
/// limit_all_gathers, device, backend, timing) rebuilds every point once, so the folder never
/// mixes files of two layouts, which one-dataset readers reject.
const LAYOUT: &str = "layout3";
/// Where the index was kept before, inside the folder (`index.json`, then `_index.json`):
/// read once if there is no index beside it, then removed, since Polars fails on them.
const OLD_INDEXES: [&str; 2] = ["_index.json", "index.json"];

/// What updating the store did.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreUpdate {
    pub dir: PathBuf,
    pub rebuilt: Vec<String>,
    pub reused: usize,
    /// Points left out because their files cannot be read.
    pub skipped: Vec<Skipped>,
}

/// A point the analysis left out: the file that cannot be read and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

impl Skipped {
    pub(crate) fn from_error(dir: &Path, error: AnalysisError) -> Self {
        match error {
            AnalysisError::Read { path, message } => Skipped { path, reason: message },
            other => Skipped { path: dir.to_path_buf(), reason: other.to_string() },
        }
    }
}

/// Brings `<sweep>/tidy/` up to date with the points' records.
pub fn update_store(
    sweep_dir: &Path,
    points: &[PointRecords],
) -> Result<StoreUpdate, AnalysisError> {
    let dir = sweep_dir.join(STORE_DIR);
    let staging = sweep_dir.join(STAGING_DIR);
    for folder in [&dir, &staging] {
        std::fs::create_dir_all(folder).map_err(|e| AnalysisError::read(folder, e))?;
    }
    let index_path = sweep_dir.join(INDEX_FILE);
    let read_index = |path: &Path| -> Option<BTreeMap<String, String>> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    let old = read_index(&index_path)
        .or_else(|| OLD_INDEXES.iter().find_map(|name| read_index(&dir.join(name))))
        .unwrap_or_default();
    let mut index = BTreeMap::new();
    let mut rebuilt = Vec::new();
    let mut reused = 0;
    let mut skipped = Vec::new();
    for point in points {
        let fingerprint = match fingerprint(&point.dir) {
            Ok(f) => f,
            Err(e) => {
                skipped.push(Skipped::from_error(&point.dir, e));
                continue;
            }
        };
        let file = dir.join(format!("{}.parquet", point.point));
        if old.get(&point.point) == Some(&fingerprint) && file.exists() {
            reused += 1;
        } else {
            match tidy_point(point) {
                Ok(mut frame) => write_into_store(&staging, &file, &mut frame)?,
                // One unreadable point (a truncated records.h5) costs that point only.
                Err(e) => {
                    let _ = std::fs::remove_file(&file);
                    skipped.push(Skipped::from_error(&point.dir, e));
                    continue;
                }
            }
            rebuilt.push(point.point.clone());
        }
        index.insert(point.point.clone(), fingerprint);
    }
    // Points whose folders are gone (moved to .attempts/) leave the store too.
    for stale in old.keys().filter(|p| !index.contains_key(*p)) {
        let _ = std::fs::remove_file(dir.join(format!("{stale}.parquet")));
    }
    let json = serde_json::to_vec_pretty(&index).expect("an index serialises");
    write_file(&index_path, &json)?;
    for name in OLD_INDEXES {
        let _ = std::fs::remove_file(dir.join(name));
    }
    // Empty unless another analysis is writing (or one was killed mid-write).
    let _ = std::fs::remove_dir(&staging);
    Ok(StoreUpdate { dir, rebuilt, reused, skipped })
}

/// Writes `frame` to `file` in the store without a partial or temporary file ever being in
/// the store's folder: written whole under a name of this process's own in `staging` (on the
/// same file system), then renamed into place.
fn write_into_store(
    staging: &Path,
    file: &Path,
    frame: &mut DataFrame,
) -> Result<(), AnalysisError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let staged = staging.join(format!("{name}.{}-{n}", std::process::id()));
    write_parquet(&staged, frame)?;
    std::fs::rename(&staged, file).map_err(|e| {
        let _ = std::fs::remove_file(&staged);
        AnalysisError::read(file, e)
    })
}

/// All points of the store at `dir` (or a glob of stores) as one lazy frame.
pub fn scan_store(glob: &Path) -> Result<LazyFrame, AnalysisError> {
    let pattern = if glob.is_dir() { glob.join("*.parquet") } else { glob.to_path_buf() };
    Ok(LazyFrame::scan_parquet(
        PlRefPath::new(pattern.display().to_string()),
        ScanArgsParquet::default(),
    )?)
}

/// A store's point files: every aggregation of the analysis is per point, so points are read
/// one file at a time and memory is bounded by a few points, not by the sweep.
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, AnalysisError> {
        std::fs::metadata(dir).map_err(|e| AnalysisError::read(dir, e))?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// The file of `point` and its size (bytes), if the store has one.
    pub fn file(&self, point: &str) -> Option<(PathBuf, u64)> {
        let file = self.dir.join(format!("{point}.parquet"));
        let bytes = std::fs::metadata(&file).ok().filter(|m| m.is_file())?.len();
        Some((file, bytes))
    }
}

/// Size and modification time of the manifest and the records: they change when a point is
/// re-run or re-collected.
fn fingerprint(point_dir: &Path) -> Result<String, AnalysisError> {
    let mut parts = vec![LAYOUT.to_string()];
    for name in [MANIFEST_FILE, RECORDS_FILE] {
        let path = point_dir.join(name);
        let meta = std::fs::metadata(&path).map_err(|e| AnalysisError::read(&path, e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        parts.push(format!("{}:{modified}", meta.len()));
    }
    Ok(parts.join("/"))
}

/// The groups of `[ranks, steps]` datasets, one row per rank and step each.
pub const STEP_GROUPS: [&str; 4] = ["steps", "memory", "device_memory", "loader"];

/// Where a dataset of one of the [`STEP_GROUPS`] goes in the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    /// Rows of this phase, metric and unit.
    Rows { phase: String, metric: &'static str, unit: &'static str },
    /// No per-step figure: the step index and the steps each rank completed (`/steps`).
    Index,
}

/// The store's one vocabulary of the records' per-step datasets: the phase, metric and unit
/// of `group`/`name`, or `None` for a dataset this version does not know (left out of the
/// store; a test fails for any the record format writes).
pub fn place(group: &str, name: &str) -> Option<Place> {
    let rows = |phase: &str, metric, unit| Some(Place::Rows { phase: phase.into(), metric, unit });
    match (group, name) {
        ("steps", "step" | "completed") => Some(Place::Index),
        ("steps", "loss") => rows("step", "loss", "1"),
        ("steps", "peak_rss_bytes") => rows("step", "peak_rss", "bytes"),
        ("steps", other) => rows(other.strip_suffix("_s")?, "time", "s"),
        ("memory", other) => {
            rows(&format!("memory.{}", MemoryRecord::category(other)?), "bytes", "bytes")
        }
        ("device_memory", other) => {
            let name = DeviceMemoryRecord::NAMES.into_iter().find(|n| *n == other)?;
            match name.strip_suffix("_bytes") {
                Some(metric) => rows("device", metric, "bytes"),
                None => rows("device", name, "1"),
            }
        }
        ("loader", "read_bytes") => rows("loader", "read", "bytes"),
        ("loader", "queue_depth") => rows("loader", "queue_depth", "batches"),
        ("loader", other) => rows(&format!("loader.{}", other.strip_suffix("_s")?), "work", "s"),
        _ => None,
    }
}

/// Long rows of one point's records.
pub fn tidy_point(point: &PointRecords) -> Result<DataFrame, AnalysisError> {
    let file = RecordsReader::open(&point.dir)?;
    let mut rows = Rows::default();
    // Records from before a group existed (the loader's, the device's on CPU runs) lack it.
    for group in STEP_GROUPS {
        for name in file.names(group)?.unwrap_or_default() {
            let Some(Place::Rows { phase, metric, unit }) = place(group, &name) else {
                continue;
            };
            let table = file.table(group, &name)?;
            for ((rank, step), value) in table.indexed_iter() {
                let completed = step < point.steps_completed(rank);
                let kept = match group {
                    // A loss is kept while the rank ran, NaN included (a diverged step).
                    "steps" => value.is_finite() || metric == "loss" && completed,
                    "loader" => value.is_finite() && completed,
                    _ => completed,
                };
                if kept {
                    rows.push(rank as u32, step as u32, &phase, metric, *value, unit);
                }
            }
        }
    }
    if file.names("units")?.is_some() {
        let column = |name: &str| file.column("units", name);
        let (rank, step) = (column("rank")?, column("step")?);
        let mut sums: BTreeMap<(u32, u32), f64> = BTreeMap::new();
        for (i, value) in column("recompute_s")?.into_iter().enumerate() {
            *sums.entry((rank[i] as u32, step[i] as u32)).or_default() += value;
        }
        for ((rank, step), value) in sums {
            rows.push(rank, step, "recompute", "time", value, "s");
        }
    }
    if file.names("collectives")?.is_some() {
        let column = |name: &str| file.column("collectives", name);
        let kinds = file.text_column("collectives", "kind")?;
        let (rank, step) = (column("rank")?, column("step")?);
        let (start, end, bytes) = (column("start_s")?, column("end_s")?, column("payload_bytes")?);
        // Records from before exposed waits were measured have no wait_s: NaN, left out below.
        let wait = column("wait_s").unwrap_or_else(|_| vec![f64::NAN; kinds.len()]);
        // Only NCCL keeps a time on its stream; other backends' records hold NaN, and older
        // records no column: left out below, as waits are.
        let stream = column("stream_s").unwrap_or_else(|_| vec![f64::NAN; kinds.len()]);
        let mut sums: BTreeMap<(u32, u32, &str), [f64; 4]> = BTreeMap::new();
        for i in 0..kinds.len() {
            let sum = sums.entry((rank[i] as u32, step[i] as u32, kinds[i].as_str())).or_default();
            sum[0] += wait[i];
            sum[1] += end[i] - start[i];
            sum[2] += bytes[i];
            sum[3] += stream[i];
        }
        for ((rank, step, kind), [wait, span, bytes, stream]) in sums {
            let phase = format!("comm.{kind}");
            if wait.is_finite() {
                rows.push(rank, step, &phase, "wait", wait, "s");
            }
            if stream.is_finite() {
                rows.push(rank, step, &phase, "stream", stream, "s");
            }
            rows.push(rank, step, &phase, "span", span, "s");
            rows.push(rank, step, &phase, "payload", bytes, "bytes");
        }
    }
    // Rows of one metric together: the analysis resolves a phase and metric once per run of
    // equal rows, and a reader's query for a rare metric (memory, loss) skips the row groups
    // of times by their statistics.
    Ok(rows
        .into_frame(point)?
        .sort(["metric"], SortMultipleOptions::default().with_maintain_order(true))?)
}

#[derive(Default)]
struct Rows {
    rank: Vec<u32>,
    step: Vec<u32>,
    phase: Vec<String>,
    metric: Vec<&'static str>,
    value: Vec<f64>,
    unit: Vec<&'static str>,
}

impl Rows {
    fn push(
        &mut self,
        rank: u32,
        step: u32,
        phase: &str,
        metric: &'static str,
        value: f64,
        unit: &'static str,
    ) {
        self.rank.push(rank);
        self.step.push(step);
        self.phase.push(phase.to_string());
        self.metric.push(metric);
        self.value.push(value);
        self.unit.push(unit);
    }

    fn into_frame(self, p: &PointRecords) -> Result<DataFrame, AnalysisError> {
        let n = self.value.len();
        let hostname: Vec<&str> = self
            .rank
            .iter()
            .map(|&r| p.hostnames.get(r as usize).map_or("", String::as_str))
            .collect();
        Ok(df!(
            "sweep" => vec![p.sweep.as_str(); n],
            "point" => vec![p.point.as_str(); n],
            "model" => vec![p.model.as_str(); n],
            "strategy" => vec![p.strategy.name(); n],
            "shard_group" => vec![p.shard_group; n],
            "nodes" => vec![p.nodes; n],
            "ranks_per_node" => vec![p.ranks_per_node; n],
            "world_size" => vec![p.world_size; n],
            "micro_batch" => vec![p.micro_batch; n],
            "global_batch" => vec![p.global_batch; n],
            "accumulation" => vec![p.accumulation; n],
            "activation_checkpointing" => vec![p.activation_checkpointing; n],
            "param_dtype" => vec![p.param_dtype.name(); n],
            "reduce_dtype" => vec![p.reduce_dtype.name(); n],
            "backward_prefetch" => vec![p.backward_prefetch.name(); n],
            "limit_all_gathers" => vec![p.limit_all_gathers; n],
            "loader_workers" => vec![p.loader_workers; n],
            "data" => vec![p.data.as_str(); n],
            "device" => vec![p.device.name(); n],
            "backend" => vec![p.backend.name(); n],
            "timing" => vec![p.timing.name(); n],
            "rank" => self.rank,
            "hostname" => hostname,
            "step" => self.step,
            "phase" => self.phase,
            "metric" => self.metric,
            "value" => self.value,
            "unit" => self.unit,
        )?)
    }
}

/// Writes `path` atomically: `write` fills a temporary file beside it, which then replaces
/// `path` by a rename, so no reader ever sees half a file: the record format's one atomic
/// writer, whose temporary names (`.<name>.tmp-<pid>-<n>`) are unique per process and call and
/// hidden from Arrow dataset readers by their leading dot.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<(), AnalysisError>,
) -> Result<(), AnalysisError> {
    let mut failure = None;
    let written = write_atomic_with(path, |file| {
        write(file).map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            failure = Some(e);
            io
        })
    });
    match (failure, written) {
        (Some(e), _) => Err(e),
        (None, result) => Ok(result?),
    }
}

pub fn write_parquet(path: &Path, frame: &mut DataFrame) -> Result<(), AnalysisError> {
    write_atomically(path, |file| {
        ParquetWriter::new(file).with_compression(ParquetCompression::Zstd(None)).finish(frame)?;
        Ok(())
    })
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), AnalysisError> {
    write_atomically(path, |file| {
        std::io::Write::write_all(file, bytes).map_err(|e| AnalysisError::read(path, e))
    })
}
