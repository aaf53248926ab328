//! What calibration fits to: measured throughputs per point (a table, or the steady state of a
//! sweep's records), per-unit compute times and per-collective times (a sweep's records, or
//! the message-size sweep of `shardsweep bench`).

use std::path::{Path, PathBuf};

use super::collectives::Group;
use crate::model::preset;
use crate::plan::read_point;
use crate::plan::{
    point_id, BackwardPrefetch, Dtype, OptimizerSettings, ParallelSpec, PointSpec, Settings,
    Strategy,
};
use crate::records::{measured, read_spool, spool_path, CollectiveKind, Manifest, Outcome};

use super::hardware::MeasurementDefaults;

#[derive(Debug, thiserror::Error)]
pub enum MeasurementError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: line {line}: {message}")]
    Row { path: String, line: usize, message: String },
    #[error("{path}: missing column {column:?} (columns: {header})")]
    Column { path: String, column: String, header: String },
    #[error("{0}")]
    Records(#[from] crate::records::RecordError),
}

/// A point and the throughput measured for it.
#[derive(Debug, Clone)]
pub struct Measured {
    pub point: PointSpec,
    pub images_per_s: f64,
    /// Where the row came from (file and line, or the point's folder).
    pub source: String,
    /// The measurement's spread (standard deviation of its log) where it is known: from
    /// records, the steady steps' robust spread over the square root of their count, at least
    /// [`DEFAULT_SPREAD`](super::anchor::DEFAULT_SPREAD) (one run says little of the next).
    pub spread: Option<f64>,
}

impl Measured {
    /// The measurement as an anchor for predictions of its configuration.
    pub fn anchor(&self) -> super::AnchorPoint {
        super::AnchorPoint::of(&self.point, self.images_per_s, self.spread, &self.source)
    }
}

/// One timed collective call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CollectiveSample {
    pub kind: CollectiveKind,
    pub bytes: f64,
    pub group: Group,
    pub seconds: f64,
}

/// One unit's forward time for a micro-batch.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSample {
    pub model: String,
    pub width: f64,
    /// FLOPs of the forward pass timed (micro-batch x per-image FLOPs).
    pub flop: f64,
    pub seconds: f64,
}

/// A point's caching-allocator peaks over its steady steps and ranks (GPU runs), bytes.
#[derive(Debug, Clone)]
pub struct MemorySample {
    pub point: PointSpec,
    pub active_peak_bytes: f64,
    pub reserved_peak_bytes: f64,
}

/// Everything read from a sweep's records.
#[derive(Debug, Clone, Default)]
pub struct RecordSamples {
    pub points: Vec<Measured>,
    pub units: Vec<UnitSample>,
    pub collectives: Vec<CollectiveSample>,
    /// Host input time per pixel (the records' data phase over the micro-batch's pixels).
    pub data_s_per_pixel: Vec<f64>,
    /// Each unit's backward time over its forward time (recompute excluded).
    pub backward_to_forward: Vec<f64>,
    /// Points run on GPUs: their allocator peaks.
    pub device_memory: Vec<MemorySample>,
}

/// A simple comma-separated table: a header, then rows without quoting.
struct Csv {
    path: String,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl Csv {
    fn read(path: &Path) -> Result<Self, MeasurementError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| MeasurementError::Io { path: name.clone(), source })?;
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let header = lines
            .next()
            .map(|(_, l)| l.split(',').map(|c| c.trim().to_string()).collect())
            .unwrap_or_default();
        let mut rows = Vec::new();
        for (i, line) in lines {
            if line.contains('"') {
                return Err(MeasurementError::Row {
                    path: name,
                    line: i + 1,
                    message: "quoted fields are not supported".into(),
                });
            }
            rows.push((i + 1, line.split(',').map(|c| c.trim().to_string()).collect()));
        }
        Ok(Self { path: name, header, rows })
    }

    fn column(&self, name: &str) -> Result<usize, MeasurementError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| MeasurementError::Column {
            path: self.path.clone(),
            column: name.into(),
            header: self.header.join(","),
        })
    }

    fn error(&self, line: usize, message: String) -> MeasurementError {
        MeasurementError::Row { path: self.path.clone(), line, message }
    }

    /// A number of `column` that is finite and above 0 (`positive`) or at least 0: `inf`,
    /// `1e999` (which parses as infinity), `nan` and out-of-range values are refused with the
    /// line and the value as written.
    fn number(
        &self,
        line: usize,
        row: &[String],
        column: usize,
        positive: bool,
    ) -> Result<f64, MeasurementError> {
        let value: f64 = self.field(line, row, column)?;
        let in_range = if positive { value > 0.0 } else { value >= 0.0 };
        if value.is_finite() && in_range {
            return Ok(value);
        }
        let text = row.get(column).map(String::as_str).unwrap_or("");
        let range = if positive { "above 0" } else { "of at least 0" };
        Err(self.error(
            line,
            format!("column {}: {text:?} is not a finite number {range}", self.header[column]),
        ))
    }

    fn field<T: std::str::FromStr>(
        &self,
        line: usize,
        row: &[String],
        column: usize,
    ) -> Result<T, MeasurementError> {
        let value = row.get(column).map(String::as_str).unwrap_or("");
        value.parse().map_err(|_| {
            self.error(line, format!("column {}: cannot read {value:?}", self.header[column]))
        })
    }
}

fn enum_from<T: serde::de::DeserializeOwned>(value: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).ok()
}

/// Builds the point a measurement row describes (no experiment file behind it).
#[allow(clippy::too_many_arguments)]
pub fn point_for(
    sweep: &str,
    model: &str,
    strategy: Strategy,
    shard_group: Option<u32>,
    nodes: u32,
    ranks_per_node: u32,
    micro_batch: u32,
    knobs: &MeasurementDefaults,
) -> Option<PointSpec> {
    let world = nodes * ranks_per_node;
    let shard_group = strategy.shard_group(world, ranks_per_node, shard_group.unwrap_or(0));
    let settings: Settings =
        serde_json::from_value(serde_json::json!({"steps": 30, "warmup_steps": 5})).ok()?;
    let point = PointSpec {
        sweep: sweep.into(),
        id: String::new(),
        model: preset(model)?,
        strategy,
        parallel: ParallelSpec {
            shard_group,
            accumulation: 1,
            activation_checkpointing: knobs.activation_checkpointing,
            backward_prefetch: BackwardPrefetch::Pre,
            limit_all_gathers: true,
            param_dtype: knobs.param_dtype,
            reduce_dtype: knobs.reduce_dtype,
        },
        nodes,
        ranks_per_node,
        micro_batch,
        data: Default::default(),
        loader_workers: 1,
        settings,
        optimizer: OptimizerSettings::default(),
        fault: None,
        system: None,
    };
    Some(PointSpec { id: point_id(&point), ..point })
}

/// Reads a measurement table: columns `model,strategy,shard_group,nodes,ranks_per_node,
/// micro_batch,images_per_s` (shard_group may be empty), optionally
/// `activation_checkpointing`, `param_dtype`, `reduce_dtype`; knobs without a column come from
/// `defaults`.
pub fn read_table(
    path: &Path,
    defaults: &MeasurementDefaults,
) -> Result<Vec<Measured>, MeasurementError> {
    let csv = Csv::read(path)?;
    let col = |n: &str| csv.column(n);
    let (cm, cs, cg, cn, cr, cb, ci) = (
        col("model")?,
        col("strategy")?,
        col("shard_group")?,
        col("nodes")?,
        col("ranks_per_node")?,
        col("micro_batch")?,
        col("images_per_s")?,
    );
    let optional = |n: &str| csv.header.iter().position(|h| h == n);
    let (cac, cpd, crd) =
        (optional("activation_checkpointing"), optional("param_dtype"), optional("reduce_dtype"));
    let mut out = Vec::new();
    for (line, row) in &csv.rows {
        let line = *line;
        let text = |c: usize| row.get(c).map(String::as_str).unwrap_or("");
        let strategy: Strategy = enum_from(text(cs))
            .ok_or_else(|| csv.error(line, format!("strategy {:?} is not known", text(cs))))?;
        let shard_group =
            if text(cg).is_empty() { None } else { Some(csv.field::<u32>(line, row, cg)?) };
        let mut knobs = defaults.clone();
        if let Some(c) = cac {
            knobs.activation_checkpointing = csv.field(line, row, c)?;
        }
        for (column, slot) in [(cpd, &mut knobs.param_dtype), (crd, &mut knobs.reduce_dtype)] {
            if let Some(c) = column {
                *slot = enum_from::<Dtype>(text(c))
                    .ok_or_else(|| csv.error(line, format!("dtype {:?} is not known", text(c))))?;
            }
        }
        let images_per_s = csv.number(line, row, ci, true)?;
        let point = point_for(
            "measurements",
            text(cm),
            strategy,
            shard_group,
            csv.field(line, row, cn)?,
            csv.field(line, row, cr)?,
            csv.field(line, row, cb)?,
            &knobs,
        )
        .ok_or_else(|| csv.error(line, format!("model {:?} is not a preset", text(cm))))?;
        let source = format!("{}:{line}", csv.path);
        out.push(Measured { point, images_per_s, source, spread: None });
    }
    Ok(out)
}

/// Reads `shardsweep bench --sizes` output: `backend,collective,group_size,ranks_per_node,
/// nodes,payload_bytes,repeats,median_s,p10_s,p90_s`, one median per row. A file is one
/// backend's: a row of another backend than the first row's is an error (a system is
/// calibrated for the library its points run on).
pub fn read_bench(path: &Path) -> Result<Vec<CollectiveSample>, MeasurementError> {
    let csv = Csv::read(path)?;
    let column = csv.column("backend")?;
    let backend = |row: &[String]| row.get(column).cloned().unwrap_or_default();
    let first = csv.rows.first().map(|(_, row)| backend(row));
    if let Some((line, row)) = csv.rows.iter().find(|(_, row)| Some(backend(row)) != first) {
        let (first, this) = (first.unwrap_or_default(), backend(row));
        return Err(csv.error(
            *line,
            format!("backend {this:?} after rows of {first:?}: calibrate one backend at a time (one --sizes run per --backend)"),
        ));
    }
    let (ck, cg, cr, cn, cb, cm) = (
        csv.column("collective")?,
        csv.column("group_size")?,
        csv.column("ranks_per_node")?,
        csv.column("nodes")?,
        csv.column("payload_bytes")?,
        csv.column("median_s")?,
    );
    let mut out = Vec::new();
    for (line, row) in &csv.rows {
        let text = row.get(ck).map(String::as_str);
        let Some(kind) = CollectiveKind::ALL.into_iter().find(|k| Some(k.name()) == text) else {
            return Err(csv.error(*line, format!("collective {text:?} is not known")));
        };
        let ranks: u32 = csv.field(*line, row, cg)?;
        let per_node: u32 = csv.field(*line, row, cr)?;
        let nodes: u32 = csv.field(*line, row, cn)?;
        let group = Group { ranks, nodes: nodes.max(1), per_node: per_node.min(ranks).max(1) };
        out.push(CollectiveSample {
            kind,
            bytes: csv.number(*line, row, cb, false)?,
            group,
            seconds: csv.number(*line, row, cm, true)?,
        });
    }
    Ok(out)
}

/// The median of the finite values, as the analysis computes it (statrs: the mean of the
/// middle two for even counts); `None` if there are none.
fn median(mut v: Vec<f64>) -> Option<f64> {
    use statrs::statistics::{Data, Median};
    v.retain(|x| x.is_finite());
    (!v.is_empty()).then(|| Data::new(v).median())
}

/// The spread of a run's median step time as [`Measured::spread`] takes it: the median absolute
/// deviation of the steps' logs (x 1.4826, a standard deviation for normal data) over the
/// square root of their count, at least the default run-to-run spread.
fn log_spread(step_s: &[f64]) -> Option<f64> {
    let logs: Vec<f64> = step_s.iter().filter(|s| **s > 0.0).map(|s| s.ln()).collect();
    let centre = median(logs.clone())?;
    let mad = median(logs.iter().map(|l| (l - centre).abs()).collect())?;
    let sigma = 1.4826 * mad / (logs.len() as f64).sqrt();
    Some(sigma.max(super::anchor::DEFAULT_SPREAD))
}

/// The points of a sweep folder that ended `ok`.
fn ok_points(sweep: &Path) -> Result<Vec<PathBuf>, MeasurementError> {
    let io = |source| MeasurementError::Io { path: sweep.display().to_string(), source };
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(sweep).map_err(io)? {
        let dir = entry.map_err(io)?.path();
        if dir.is_dir() && Manifest::read(&dir)?.is_some_and(|m| m.outcome == Outcome::Ok) {
            dirs.push(dir);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Reads every finished point of a sweep: its throughput as measured
/// ([`steady_throughput`](crate::records::measured::steady_throughput): slowest rank, MSER-5
/// steady state, median; the analysis's figure), per-unit forward times, and the duration of every
/// collective that compute waited for over at least 90% of its span, with its payload and
/// group (an overlapped call's span is not its duration; a warning counts those left out).
/// `keep` selects the points to use.
pub fn read_records(
    sweep: &Path,
    keep: &dyn Fn(&PointSpec) -> bool,
) -> Result<RecordSamples, MeasurementError> {
    let mut out = RecordSamples::default();
    let mut overlapped = std::collections::BTreeMap::<&str, usize>::new();
    for dir in ok_points(sweep)? {
        let point = read_point(&dir)?;
        if !keep(&point) {
            continue;
        }
        let units = super::compute::units(&point.model);
        let shard = point.shard_ranks();
        let shard_group = Group::consecutive(shard, point.ranks_per_node);
        let world = point.world_size();
        let warm = point.settings.warmup_steps as usize;
        let mut per_rank: Vec<Vec<f64>> = Vec::new();
        let mut peaks: Option<(f64, f64)> = None;
        for rank in 0..world {
            let spool = read_spool(&spool_path(&dir, rank))?;
            per_rank.push(spool.steps.iter().map(|s| s.phases.step_s).collect());
            for d in spool.steps.iter().skip(warm).filter_map(|s| s.device_memory.as_ref()) {
                let (a, r) = peaks.unwrap_or((0.0, 0.0));
                peaks =
                    Some((a.max(d.active_peak_bytes as f64), r.max(d.reserved_peak_bytes as f64)));
            }
            for step in spool.steps.iter().skip(warm) {
                let b = f64::from(point.micro_batch * point.parallel.accumulation);
                let pixels = (point.model.image_size.pow(2) * point.model.channels) as f64;
                out.data_s_per_pixel.push(step.phases.data_s / (b * pixels));
                for u in &step.units {
                    if u.forward_s > 0.0 && u.backward_s > 0.0 {
                        out.backward_to_forward.push(u.backward_s / u.forward_s);
                    }
                    if let Some(unit) = units.get(u.unit as usize) {
                        out.units.push(UnitSample {
                            model: point.model.name.clone(),
                            width: unit.width,
                            flop: b * unit.forward_flop,
                            seconds: u.forward_s,
                        });
                    }
                }
                for c in &step.collectives {
                    let group = match c.kind {
                        CollectiveKind::AllGather | CollectiveKind::ReduceScatter => shard_group,
                        CollectiveKind::AllReduce if c.group_size == world => {
                            Group::consecutive(world, point.ranks_per_node)
                        }
                        CollectiveKind::AllReduce => {
                            Group::replicas(world, shard, point.ranks_per_node)
                        }
                    };
                    // A call's span is its duration only when compute waited for all of it;
                    // an overlapped call (a prefetched gather, or a reduction waited for at the
                    // next unit's post-backward) may have finished long before its wait ended.
                    let span = c.end_s - c.start_s;
                    if c.group_size != group.ranks || span <= 0.0 {
                        continue;
                    }
                    if c.wait_s >= 0.9 * span {
                        out.collectives.push(CollectiveSample {
                            kind: c.kind,
                            bytes: c.payload_bytes as f64,
                            group,
                            seconds: span,
                        });
                    } else {
                        *overlapped.entry(c.kind.name()).or_default() += 1;
                    }
                }
            }
        }
        if let Some((active_peak_bytes, reserved_peak_bytes)) = peaks {
            out.device_memory.push(MemorySample {
                point: point.clone(),
                active_peak_bytes,
                reserved_peak_bytes,
            });
        }
        // The one definition of measured (the analysis's too): slowest rank, steady state,
        // median.
        let slowest = measured::slowest_rank(&per_rank);
        if let Some(state) = measured::steady_throughput(&slowest, warm, point.global_batch()) {
            out.points.push(Measured {
                images_per_s: state.images_per_s,
                spread: log_spread(&state.step_s),
                point,
                source: dir.display().to_string(),
            });
        }
    }
    for (kind, left_out) in overlapped {
        let kept = out.collectives.iter().filter(|c| c.kind.name() == kind).count();
        tracing::warn!(
            sweep = %sweep.display(),
            kind,
            kept,
            left_out,
            "collectives that overlapped compute are left out of the fit (their span is not their duration); `bench --sizes` measures them alone"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bench_file_of_two_backends_is_refused_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.csv");
        let header = "backend,collective,group_size,ranks_per_node,nodes,payload_bytes,repeats,median_s,p10_s,p90_s";
        let row = |backend: &str| format!("{backend},all_gather,2,2,1,64,3,0.001,0.001,0.001");
        std::fs::write(&path, format!("{header}\n{}\n{}\n", row("mpi"), row("mpi"))).unwrap();
        assert_eq!(read_bench(&path).unwrap().len(), 2);
        std::fs::write(&path, format!("{header}\n{}\n{}\n", row("mpi"), row("gloo"))).unwrap();
        let error = read_bench(&path).unwrap_err().to_string();
        assert!(
            error.contains("line 3") && error.contains("\"gloo\" after rows of \"mpi\""),
            "{error}"
        );
    }

    #[test]
    fn a_number_that_is_not_finite_or_in_range_is_refused_with_file_line_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("measured.csv");
        let header = "model,strategy,shard_group,nodes,ranks_per_node,micro_batch,images_per_s";
        let defaults = crate::predict::Hardware::fallback().measurement_defaults;
        let table = |value: &str| {
            std::fs::write(
                &path,
                format!(
                    "{header}\nvit-tiny,no_shard,,1,2,4,10\nvit-tiny,no_shard,,1,2,4,{value}\n"
                ),
            )
            .unwrap();
            read_table(&path, &defaults)
        };
        assert_eq!(table("12.5").unwrap().len(), 2);
        for value in ["inf", "-inf", "1e999", "nan", "NaN", "0", "-3", "+inf", "infinity"] {
            let error = table(value).unwrap_err().to_string();
            let shown = format!("{}: line 3: column images_per_s: \"{value}\"", path.display());
            assert!(error.starts_with(&shown), "{value}: {error}");
        }
        let bench = dir.path().join("bench.csv");
        let header = "backend,collective,group_size,ranks_per_node,nodes,payload_bytes,repeats,median_s,p10_s,p90_s";
        for (bytes, seconds, column) in [
            ("1e999", "0.001", "payload_bytes"),
            ("64", "inf", "median_s"),
            ("64", "0", "median_s"),
        ] {
            let row = format!("mpi,all_gather,2,2,1,{bytes},3,{seconds},0.001,0.001");
            std::fs::write(&bench, format!("{header}\n{row}\n")).unwrap();
            let error = read_bench(&bench).unwrap_err().to_string();
            assert!(error.contains(&format!("line 2: column {column}")), "{error}");
        }
    }
}
