//! Reading a sweep's manifests: what each point is, how it ended, where its ranks ran.

use std::path::{Path, PathBuf};

use shardsweep_records::{
    Backend, BackwardPrefetch, DeviceKind, Dtype, Manifest, Outcome, Strategy, Timing,
    MANIFEST_FILE, RECORDS_FILE,
};

use shardsweep_records::sweep_dir;

use crate::tidy::Skipped;
use crate::AnalysisError;

/// A point as its manifest describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRecords {
    pub sweep: String,
    pub point: String,
    pub dir: PathBuf,
    pub digest: String,
    pub outcome: Outcome,
    pub model: String,
    pub strategy: Strategy,
    pub shard_group: u32,
    pub nodes: u32,
    pub ranks_per_node: u32,
    pub world_size: u32,
    pub micro_batch: u32,
    pub global_batch: u32,
    pub accumulation: u32,
    pub activation_checkpointing: bool,
    pub param_dtype: Dtype,
    pub backward_prefetch: BackwardPrefetch,
    pub limit_all_gathers: bool,
    pub reduce_dtype: Dtype,
    /// Worker threads of each rank's input pipeline.
    pub loader_workers: u32,
    /// `synthetic` or the image set file the point trained on.
    pub data: String,
    /// Where the ranks computed.
    pub device: DeviceKind,
    /// The collective library they used (their device's default unless the point set one).
    pub backend: Backend,
    /// How their steps were timed (their device's default unless the point set one).
    pub timing: Timing,
    pub warmup_steps: u32,
    pub steps_planned: u32,
    pub steps_completed: Vec<u32>,
    pub train_flop_per_step: f64,
    /// Peak FLOP/s of one rank's device and where the figure comes from: the system profile's,
    /// or for local runs the sweep's measured matrix-multiply rate (`<sweep>/local_peak.json`).
    pub peak_flop_per_s: Option<f64>,
    pub peak_source: String,
    /// Hostname of each rank.
    pub hostnames: Vec<String>,
    /// The manifest's provenance block (versions, environment, command).
    pub provenance: serde_json::Value,
}

impl PointRecords {
    pub fn steps_completed(&self, rank: usize) -> usize {
        self.steps_completed.get(rank).copied().unwrap_or(0) as usize
    }

    /// For the hybrid strategies, `node` for a shard group of one node (FSDP's default), else
    /// the group size; the others shard over the whole world, which grows with the nodes.
    pub fn shard_group_label(&self) -> String {
        match (self.strategy.is_hybrid(), self.shard_group == self.ranks_per_node) {
            (false, _) => "world".into(),
            (true, true) => "node".into(),
            (true, false) => self.shard_group.to_string(),
        }
    }
}

/// Every point folder of `sweep_dir` with a manifest and records, in name order, and the
/// points whose manifest cannot be read (left out, with the file and why).
pub fn load_points(sweep_dir: &Path) -> Result<(Vec<PointRecords>, Vec<Skipped>), AnalysisError> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(sweep_dir)
        .map_err(|e| AnalysisError::read(sweep_dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.join(MANIFEST_FILE).exists()
                && p.join(RECORDS_FILE).exists()
        })
        .collect();
    dirs.sort();
    let mut points = Vec::new();
    let mut skipped = Vec::new();
    for dir in &dirs {
        match read_manifest(dir) {
            Ok(p) => points.push(p),
            Err(e) => skipped.push(Skipped::from_error(dir, e)),
        }
    }
    if points.is_empty() {
        return Err(AnalysisError::Empty(sweep_dir.to_path_buf()));
    }
    Ok((points, skipped))
}

pub fn read_manifest(dir: &Path) -> Result<PointRecords, AnalysisError> {
    let path = dir.join(MANIFEST_FILE);
    let m = Manifest::read(dir)?.ok_or_else(|| AnalysisError::read(&path, "no manifest"))?;
    let config = m.point_config(dir)?;
    let mut hostnames = vec![String::new(); m.world_size as usize];
    for rank in &m.provenance.ranks {
        if let Some(slot) = hostnames.get_mut(rank.rank as usize) {
            slot.clone_from(&rank.hostname);
        }
    }
    let (peak_flop_per_s, peak_source) =
        match config.system.as_ref().and_then(|s| s.peak_flop_per_s) {
            Some(peak) => (Some(peak), config.system.map(|s| s.peak_source).unwrap_or_default()),
            None => local_peak(dir).map_or((None, String::new()), |(p, s)| (Some(p), s)),
        };
    Ok(PointRecords {
        dir: dir.to_path_buf(),
        outcome: m.outcome,
        model: config.model.name,
        strategy: config.strategy,
        shard_group: config.parallel.shard_group,
        nodes: m.nodes,
        ranks_per_node: m.ranks_per_node,
        world_size: m.world_size,
        micro_batch: config.micro_batch,
        global_batch: m.global_batch,
        accumulation: config.parallel.accumulation,
        activation_checkpointing: config.parallel.activation_checkpointing,
        param_dtype: config.parallel.param_dtype,
        backward_prefetch: config.parallel.backward_prefetch,
        limit_all_gathers: config.parallel.limit_all_gathers,
        reduce_dtype: config.parallel.reduce_dtype,
        loader_workers: config.loader_workers,
        data: config.data,
        device: config.settings.device,
        backend: config.settings.backend(),
        timing: config.settings.timing(),
        warmup_steps: m.warmup_steps,
        steps_planned: m.steps_planned,
        train_flop_per_step: m.train_flop_per_step,
        peak_flop_per_s,
        peak_source,
        hostnames,
        provenance: serde_json::to_value(&m.provenance).expect("provenance serialises"),
        sweep: m.sweep,
        point: m.point,
        digest: m.digest,
        steps_completed: m.steps_completed,
    })
}

/// The per-rank peak `shardsweep run` measured for the sweep holding `point_dir`, and how.
fn local_peak(point_dir: &Path) -> Option<(f64, String)> {
    let path = sweep_dir::local_peak_file(sweep_dir::sweep_of(point_dir)?);
    let peak: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let rate = peak["peak_flop_per_s"].as_f64().filter(|r| *r > 0.0)?;
    Some((rate, peak["source"].as_str()?.to_string()))
}
