//! `records.h5`: one file per point, readable by h5py, pandas (via h5py) and Polars.
//!
//! ```text
//! /                      attrs: schema_version, sweep, point, world_size, steps_planned, warmup_steps
//! /steps/step            [steps] u32
//! /steps/<phase>_s       [ranks, steps] f64  (NaN where a rank did not finish that step)
//! /steps/loss            [ranks, steps] f64
//! /steps/peak_rss_bytes  [ranks, steps] u64  (0 where missing)
//! /steps/completed       [ranks] u32         steps each rank finished
//! /memory/<category>_bytes [ranks, steps] u64  the harness's account: param_shards,
//!                        grad_shards, optimizer_state, gathered_params_peak,
//!                        unsharded_grads_peak, activations_peak (0 where missing)
//! /device_memory/<figure> [ranks, steps] u64  a GPU caching allocator's per-step figures,
//!                        only in files of GPU runs: allocated_peak_bytes, active_peak_bytes,
//!                        reserved_peak_bytes, alloc_retries (0 where missing)
//! /loader/<figure>      [ranks, steps] the input pipeline's own figures, summed over the
//!                        step's samples: read_bytes (u64), read_s, decode_s, augment_s (f64,
//!                        worker time, NaN where missing), queue_depth (u32, batches ready when
//!                        the step asked for data)
//! /units/<column>        [rows] one row per rank, step and unit: rank, step, unit (u32),
//!                        forward_s, backward_s, recompute_s (f64)
//! /collectives/<column>  [calls] one row per collective call: rank, step, unit (u32),
//!                        kind, dtype (strings), payload_bytes (u64), group_size (u32),
//!                        start_s, end_s (f64, from the start of the step), wait_s (f64,
//!                        how long compute waited for it), in_flight (u32, all-gathers
//!                        in flight when it was issued, itself included), stream_s (f64,
//!                        its time on NCCL's stream; NaN where the backend keeps none)
//! /ranks/<column>        [ranks] node, local_rank, pid (u32), hostname (string)
//! ```

use std::path::Path;

use hdf5::types::VarLenUnicode;
use hdf5::{File, Group, H5Type};
use ndarray::{Array1, Array2};

use super::atomic::{commit, temporary_path};
use super::schema::{DeviceMemoryRecord, LoaderRecord, MemoryRecord, Phases, SCHEMA_VERSION};
use super::spool::RankSpool;
use super::RecordError;

/// Switches HDF5's own file locking off for this process and the ranks it starts, unless the
/// user set `HDF5_USE_FILE_LOCKING`. HDF5 (1.10.7 and later) locks every file it opens with
/// flock(), which fails on file systems without it (some NFS and Lustre mounts). The harness
/// writes each HDF5 file once, under a temporary name renamed into place when complete, and
/// never writes it again, so the lock protects nothing here. Call it before any thread starts.
pub fn hdf5_without_file_locking() {
    const VARIABLE: &str = "HDF5_USE_FILE_LOCKING";
    if std::env::var_os(VARIABLE).is_none() {
        std::env::set_var(VARIABLE, "FALSE");
    }
}

/// What the file is about, stored as root attributes.
pub struct RecordsHeader<'a> {
    /// Name of the sweep.
    pub sweep: &'a str,
    /// The point's name.
    pub point: &'a str,
    /// Steps each rank was to run, warm-up included.
    pub steps_planned: u32,
    /// Leading steps the analysis leaves out of the steady state.
    pub warmup_steps: u32,
}

/// Writes the records of all ranks (index = rank) to `path`, atomically.
pub fn write_records(
    path: &Path,
    header: &RecordsHeader,
    ranks: &[RankSpool],
) -> Result<(), RecordError> {
    write_hdf5_atomic(path, |file| write_file(file, header, ranks))
}

/// Writes one fp32 dataset per named unit, atomically.
pub fn write_parameters(path: &Path, units: &[(String, Vec<f32>)]) -> Result<(), RecordError> {
    write_hdf5_atomic(path, |file| {
        for (name, values) in units {
            dataset(file, name, &Array1::from(values.clone()))?;
        }
        Ok(())
    })
}

/// Reads the units `names` (in that order) from a file [`write_parameters`] wrote, each as a
/// 1-D fp32 tensor on the CPU.
pub fn read_parameters(path: &Path, names: &[String]) -> Result<Vec<Vec<f32>>, RecordError> {
    let err = &RecordError::hdf5(path);
    let file = File::open(path).map_err(err)?;
    names
        .iter()
        .map(|name| file.dataset(name).and_then(|d| d.read_raw::<f32>()).map_err(err))
        .collect()
}

/// Creates an HDF5 file beside `path`, lets `fill` write it, then renames it into place (the
/// atomic writer's ending: flushed, renamed, the folder synced). On error the temporary file is
/// removed and `path` is untouched.
///
/// # Errors
/// [`RecordError::Hdf5`] with what `fill` or HDF5 returned, [`RecordError::Io`] naming `path`.
pub fn write_hdf5_atomic(
    path: &Path,
    fill: impl FnOnce(&File) -> hdf5::Result<()>,
) -> Result<(), RecordError> {
    let tmp = temporary_path(path);
    let err = &RecordError::hdf5(path);
    let result = File::create(&tmp)
        .and_then(|file| fill(&file).and_then(|_| file.close()))
        .map_err(err)
        .and_then(|_| commit(&tmp, path).map_err(RecordError::io(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn text(s: &str) -> VarLenUnicode {
    s.parse().unwrap_or_else(|_| "?".parse().expect("ascii parses"))
}

fn write_file(file: &File, header: &RecordsHeader, ranks: &[RankSpool]) -> hdf5::Result<()> {
    attr(file, "schema_version", SCHEMA_VERSION)?;
    attr(file, "world_size", ranks.len() as u32)?;
    attr(file, "steps_planned", header.steps_planned)?;
    attr(file, "warmup_steps", header.warmup_steps)?;
    for (name, value) in [("sweep", header.sweep), ("point", header.point)] {
        file.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&text(value))?;
    }

    let (r, s) = (
        ranks.len(),
        ranks.iter().map(|k| k.steps.len()).max().unwrap_or(0).max(header.steps_planned as usize),
    );
    let steps = file.create_group("steps")?;
    dataset(&steps, "step", &Array1::from_iter(0..s as u32))?;
    let table = |value: &dyn Fn(&super::StepRecord) -> f64| {
        Array2::from_shape_fn((r, s), |(rank, step)| {
            ranks[rank].steps.get(step).map(value).unwrap_or(f64::NAN)
        })
    };
    for (i, name) in Phases::NAMES.iter().enumerate() {
        dataset(&steps, name, &table(&|rec| rec.phases.values()[i]))?;
    }
    dataset(&steps, "loss", &table(&|rec| rec.loss))?;
    let counts = |value: &dyn Fn(&super::StepRecord) -> u64| {
        Array2::from_shape_fn((r, s), |(rank, step)| ranks[rank].steps.get(step).map_or(0, value))
    };
    dataset(&steps, "peak_rss_bytes", &counts(&|rec| rec.peak_rss_bytes))?;
    dataset(&steps, "completed", &Array1::from_iter(ranks.iter().map(|k| k.steps.len() as u32)))?;
    let memory = file.create_group("memory")?;
    for (i, name) in MemoryRecord::NAMES.iter().enumerate() {
        dataset(&memory, name, &counts(&|rec| rec.memory.values()[i]))?;
    }
    if ranks.iter().flat_map(|k| &k.steps).any(|rec| rec.device_memory.is_some()) {
        let device = file.create_group("device_memory")?;
        for (i, name) in DeviceMemoryRecord::NAMES.iter().enumerate() {
            let value =
                |rec: &super::StepRecord| rec.device_memory.as_ref().map_or(0, |d| d.values()[i]);
            dataset(&device, name, &counts(&value))?;
        }
    }

    let loader = file.create_group("loader")?;
    dataset(&loader, "read_bytes", &counts(&|rec| rec.loader.read_bytes))?;
    for (i, name) in LoaderRecord::TIME_NAMES.iter().enumerate() {
        dataset(&loader, name, &table(&|rec| rec.loader.times()[i]))?;
    }
    let depth = Array2::from_shape_fn((r, s), |(rank, step)| {
        ranks[rank].steps.get(step).map_or(0, |rec| rec.loader.queue_depth)
    });
    dataset(&loader, "queue_depth", &depth)?;

    let units = file.create_group("units")?;
    let rows = table_rows(ranks, |step| &step.units);
    column(&units, "rank", &rows, |r| r.0)?;
    column(&units, "step", &rows, |r| r.1)?;
    column(&units, "unit", &rows, |r| r.2.unit)?;
    column(&units, "forward_s", &rows, |r| r.2.forward_s)?;
    column(&units, "backward_s", &rows, |r| r.2.backward_s)?;
    column(&units, "recompute_s", &rows, |r| r.2.recompute_s)?;

    let collectives = file.create_group("collectives")?;
    let rows = table_rows(ranks, |step| &step.collectives);
    column(&collectives, "rank", &rows, |r| r.0)?;
    column(&collectives, "step", &rows, |r| r.1)?;
    column(&collectives, "unit", &rows, |r| r.2.unit)?;
    column(&collectives, "group_size", &rows, |r| r.2.group_size)?;
    column(&collectives, "payload_bytes", &rows, |r| r.2.payload_bytes)?;
    column(&collectives, "start_s", &rows, |r| r.2.start_s)?;
    column(&collectives, "end_s", &rows, |r| r.2.end_s)?;
    column(&collectives, "wait_s", &rows, |r| r.2.wait_s)?;
    column(&collectives, "in_flight", &rows, |r| r.2.in_flight)?;
    column(&collectives, "stream_s", &rows, |r| r.2.stream_s.unwrap_or(f64::NAN))?;
    column(&collectives, "kind", &rows, |r| text(r.2.kind.name()))?;
    column(&collectives, "dtype", &rows, |r| text(&r.2.dtype))?;

    let group = file.create_group("ranks")?;
    let info = |f: &dyn Fn(&super::RankInfo) -> u32| {
        Array1::from_iter(ranks.iter().map(|k| k.info.as_ref().map_or(u32::MAX, f)))
    };
    dataset(&group, "node", &info(&|i| i.node))?;
    dataset(&group, "local_rank", &info(&|i| i.local_rank))?;
    dataset(&group, "pid", &info(&|i| i.pid))?;
    dataset(
        &group,
        "hostname",
        &Array1::from_iter(ranks.iter().map(|k| text(k.info.as_ref().map_or("", |i| &i.hostname)))),
    )?;
    Ok(())
}

/// One row per rank, step and item of the step (`items` picks them), in rank and step order.
fn table_rows<'a, T>(
    ranks: &'a [RankSpool],
    items: impl Fn(&'a super::StepRecord) -> &'a Vec<T>,
) -> Vec<(u32, u32, &'a T)> {
    let mut rows = Vec::new();
    for (rank, spool) in ranks.iter().enumerate() {
        for step in &spool.steps {
            rows.extend(items(step).iter().map(|item| (rank as u32, step.step, item)));
        }
    }
    rows
}

/// A 1-D dataset of `value` over `rows`.
fn column<R, T: H5Type>(
    group: &Group,
    name: &str,
    rows: &[R],
    value: impl Fn(&R) -> T,
) -> hdf5::Result<()> {
    dataset(group, name, &Array1::from_iter(rows.iter().map(value)))
}

fn attr<T: H5Type>(file: &File, name: &str, value: T) -> hdf5::Result<()> {
    file.new_attr::<T>().create(name)?.write_scalar(&value)
}

fn dataset<T: H5Type, D: ndarray::Dimension>(
    group: &Group,
    name: &str,
    data: &ndarray::Array<T, D>,
) -> hdf5::Result<()> {
    group.new_dataset_builder().with_data(data.view()).create(name).map(|_| ())
}
