//! Reading a sweep's manifests: what each point is, how it ended, where its ranks ran.

use std::path::{Path, PathBuf};

use crate::tidy::Skipped;
use crate::AnalysisError;

/// A point as its manifest describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRecords {
    pub sweep: String,
    pub point: String,
    pub dir: PathBuf,
    pub digest: String,
    pub outcome: String,
    pub model: String,
    pub strategy: String,
    pub shard_group: u32,
    pub nodes: u32,
    pub ranks_per_node: u32,
    pub world_size: u32,
    pub micro_batch: u32,
    pub global_batch: u32,
    pub accumulation: u32,
    pub activation_checkpointing: bool,
    pub param_dtype: String,
    pub backward_prefetch: String,
    pub limit_all_gathers: bool,
    pub reduce_dtype: String,
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
        match (self.strategy.starts_with("hybrid"), self.shard_group == self.ranks_per_node) {
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
                && p.join("manifest.json").exists()
                && p.join("records.h5").exists()
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
        return Err(AnalysisError::Empty(sweep_dir.display().to_string()));
    }
    Ok((points, skipped))
}

pub fn read_manifest(dir: &Path) -> Result<PointRecords, AnalysisError> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| AnalysisError::read(&path, e))?;
    let m: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| AnalysisError::read(&path, e))?;
    let text_field = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| AnalysisError::read(&path, format!("missing text field in {v}")))
    };
    let number = |v: &serde_json::Value| {
        v.as_u64()
            .map(|v| v as u32)
            .ok_or_else(|| AnalysisError::read(&path, format!("missing number in {v}")))
    };
    let config = &m["config"];
    let parallel = &config["parallel"];
    let mut hostnames = vec![String::new(); number(&m["world_size"])? as usize];
    for rank in m["provenance"]["ranks"].as_array().into_iter().flatten() {
        if let (Some(r), Some(h)) = (rank["rank"].as_u64(), rank["hostname"].as_str()) {
            if let Some(slot) = hostnames.get_mut(r as usize) {
                *slot = h.to_string();
            }
        }
    }
    let (peak_flop_per_s, peak_source) = match config["system"]["peak_flop_per_s"].as_f64() {
        Some(peak) => {
            (Some(peak), config["system"]["peak_source"].as_str().unwrap_or_default().to_string())
        }
        None => local_peak(dir).map_or((None, String::new()), |(p, s)| (Some(p), s)),
    };
    Ok(PointRecords {
        sweep: text_field(&m["sweep"])?,
        point: text_field(&m["point"])?,
        dir: dir.to_path_buf(),
        digest: text_field(&m["digest"])?,
        outcome: text_field(&m["outcome"])?,
        model: text_field(&config["model"]["name"])?,
        strategy: text_field(&config["strategy"])?,
        shard_group: number(&parallel["shard_group"])?,
        nodes: number(&m["nodes"])?,
        ranks_per_node: number(&m["ranks_per_node"])?,
        world_size: number(&m["world_size"])?,
        micro_batch: number(&config["micro_batch"])?,
        global_batch: number(&m["global_batch"])?,
        accumulation: number(&parallel["accumulation"])?,
        activation_checkpointing: parallel["activation_checkpointing"].as_bool().unwrap_or(false),
        param_dtype: parallel["param_dtype"].as_str().unwrap_or("fp32").to_string(),
        backward_prefetch: parallel["backward_prefetch"].as_str().unwrap_or("pre").to_string(),
        limit_all_gathers: parallel["limit_all_gathers"].as_bool().unwrap_or(true),
        reduce_dtype: parallel["reduce_dtype"].as_str().unwrap_or("fp32").to_string(),
        warmup_steps: number(&m["warmup_steps"])?,
        steps_planned: number(&m["steps_planned"])?,
        steps_completed: m["steps_completed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_u64().map(|v| v as u32))
            .collect(),
        train_flop_per_step: m["train_flop_per_step"].as_f64().unwrap_or(f64::NAN),
        peak_flop_per_s,
        peak_source,
        hostnames,
        provenance: m["provenance"].clone(),
    })
}

/// The per-rank peak `shardsweep run` measured for the sweep holding `point_dir`, and how.
fn local_peak(point_dir: &Path) -> Option<(f64, String)> {
    let path = point_dir.parent()?.join("local_peak.json");
    let peak: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let rate = peak["peak_flop_per_s"].as_f64().filter(|r| *r > 0.0)?;
    Some((rate, peak["source"].as_str()?.to_string()))
}
