//! Reading a sweep's record files into one long table of per-rank, per-step phase times.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::AnalysisError;

/// A point as its manifest describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRecords {
    pub point: String,
    pub dir: PathBuf,
    pub outcome: String,
    pub model: String,
    pub strategy: String,
    pub nodes: u32,
    pub ranks_per_node: u32,
    pub world_size: u32,
    pub micro_batch: u32,
    pub global_batch: u32,
    pub warmup_steps: u32,
    pub steps_planned: u32,
    pub train_flop_per_step: f64,
}

pub struct SweepRecords {
    pub sweep: String,
    pub points: Vec<PointRecords>,
    /// Long format: point, rank, step, phase, value (seconds for `*_s` phases, and `loss`).
    pub steps: DataFrame,
}

/// Reads every point folder of `sweep_dir` that has a manifest and records.
pub fn load_sweep(sweep_dir: &Path) -> Result<SweepRecords, AnalysisError> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(sweep_dir)
        .map_err(|e| AnalysisError::read(sweep_dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) && p.join("manifest.json").exists())
        .collect();
    dirs.sort();
    let mut points = Vec::new();
    let mut frames = Vec::new();
    for dir in dirs {
        let point = read_manifest(&dir)?;
        frames.push(read_steps(&dir.join("records.h5"), &point.point)?);
        points.push(point);
    }
    if points.is_empty() {
        return Err(AnalysisError::Empty(sweep_dir.display().to_string()));
    }
    let steps = concat(frames.iter().map(|f| f.clone().lazy()).collect::<Vec<_>>(), UnionArgs::default())?.collect()?;
    let sweep = sweep_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(SweepRecords { sweep, points, steps })
}

fn read_manifest(dir: &Path) -> Result<PointRecords, AnalysisError> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| AnalysisError::read(&path, e))?;
    let m: serde_json::Value = serde_json::from_str(&text).map_err(|e| AnalysisError::read(&path, e))?;
    let text_field = |v: &serde_json::Value| v.as_str().map(str::to_string).ok_or_else(|| AnalysisError::read(&path, format!("missing text field in {v}")));
    let number = |key: &str| m[key].as_u64().map(|v| v as u32).ok_or_else(|| AnalysisError::read(&path, format!("missing number {key}")));
    Ok(PointRecords {
        point: text_field(&m["point"])?,
        dir: dir.to_path_buf(),
        outcome: text_field(&m["outcome"])?,
        model: text_field(&m["config"]["model"]["name"])?,
        strategy: text_field(&m["config"]["strategy"])?,
        nodes: number("nodes")?,
        ranks_per_node: number("ranks_per_node")?,
        world_size: number("world_size")?,
        micro_batch: m["config"]["micro_batch"].as_u64().unwrap_or(0) as u32,
        global_batch: number("global_batch")?,
        warmup_steps: number("warmup_steps")?,
        steps_planned: number("steps_planned")?,
        train_flop_per_step: m["train_flop_per_step"].as_f64().unwrap_or(f64::NAN),
    })
}

/// `/steps/*` datasets of shape [ranks, steps] become long rows; missing steps (NaN) are dropped.
fn read_steps(path: &Path, point: &str) -> Result<DataFrame, AnalysisError> {
    let file = hdf5::File::open(path).map_err(|e| AnalysisError::read(path, e))?;
    let group = file.group("steps").map_err(|e| AnalysisError::read(path, e))?;
    let mut names = group.member_names().map_err(|e| AnalysisError::read(path, e))?;
    names.retain(|n| n.ends_with("_s") || n == "loss");
    names.sort();
    let (mut ranks, mut steps, mut phases, mut values) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for name in &names {
        let table = group.dataset(name).and_then(|d| d.read_2d::<f64>()).map_err(|e| AnalysisError::read(path, format!("{name}: {e}")))?;
        for ((rank, step), value) in table.indexed_iter() {
            if value.is_finite() {
                ranks.push(rank as u32);
                steps.push(step as u32);
                phases.push(name.as_str());
                values.push(*value);
            }
        }
    }
    let n = values.len();
    Ok(df!(
        "point" => vec![point; n],
        "rank" => ranks,
        "step" => steps,
        "phase" => phases,
        "value" => values,
    )?)
}
