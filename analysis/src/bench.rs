//! The analysis at scale: a synthetic tidy store of realistic shape (points x ranks x steps x
//! four timed phases, with slow ranks and a slow start), and the same analysis `analyze` runs
//! over it (per-point step tables, statistics, breakdowns, stragglers), timed.

use shardsweep_records::{BackwardPrefetch, Dtype, Outcome, Strategy};
use std::path::Path;
use std::time::Instant;

use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::load::PointRecords;
use crate::stragglers::node_scores;
use crate::summary::summarize;
use crate::tidy::{write_parquet, Store};
use crate::AnalysisError;

pub struct Shape {
    pub points: usize,
    pub ranks: usize,
    pub steps: usize,
}

const PHASES: [&str; 4] = ["forward", "backward", "comm", "step"];
const RANKS_PER_NODE: usize = 8;

fn point_name(i: usize) -> String {
    format!("synthetic-{i:05}")
}

/// Writes `<dir>/synthetic-NNNNN.parquet`, one file per point, in the tidy store's schema.
pub fn generate(dir: &Path, shape: &Shape) -> Result<u64, AnalysisError> {
    std::fs::create_dir_all(dir).map_err(|e| AnalysisError::read(dir, e))?;
    let mut rows = 0u64;
    for i in 0..shape.points {
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        let n = shape.ranks * shape.steps * PHASES.len();
        let (mut rank, mut step, mut phase, mut value, mut host) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let slow_node = rng.random_range(0..shape.ranks.div_ceil(RANKS_PER_NODE));
        for r in 0..shape.ranks {
            let speed = if r / RANKS_PER_NODE == slow_node { 1.08 } else { 1.0 };
            let hostname = format!("nid{:05}", r / RANKS_PER_NODE);
            for s in 0..shape.steps {
                let warm = if s < 3 { 1.5 } else { 1.0 };
                let forward = 0.010 * speed * warm * (1.0 + 0.02 * rng.random::<f64>());
                let backward = 2.0 * forward;
                let comm = 0.004 * (1.0 + 0.1 * rng.random::<f64>());
                for (p, v) in
                    PHASES.iter().zip([forward, backward, comm, forward + backward + comm + 0.0005])
                {
                    rank.push(r as u32);
                    step.push(s as u32);
                    phase.push(*p);
                    value.push(v);
                    host.push(hostname.clone());
                }
            }
        }
        let name = point_name(i);
        let mut frame = df!(
            "sweep" => vec!["synthetic"; n],
            "point" => vec![name.as_str(); n],
            "rank" => rank,
            "hostname" => host,
            "step" => step,
            "phase" => phase,
            "metric" => vec!["time"; n],
            "value" => value,
            "unit" => vec!["s"; n],
        )?;
        write_parquet(&dir.join(format!("{name}.parquet")), &mut frame)?;
        rows += n as u64;
    }
    Ok(rows)
}

/// Timings of one analysis of the synthetic store.
pub struct Timing {
    pub total_s: f64,
    pub points: usize,
    pub nodes: usize,
}

/// Runs the analysis `analyze` runs over the store in `dir` (manifests replaced by the known
/// shape).
pub fn analyze(dir: &Path, shape: &Shape) -> Result<Timing, AnalysisError> {
    let metas: Vec<PointRecords> = (0..shape.points)
        .map(|i| PointRecords {
            sweep: "synthetic".into(),
            point: point_name(i),
            dir: dir.to_path_buf(),
            digest: String::new(),
            outcome: Outcome::Ok,
            model: "vit-synthetic".into(),
            strategy: Strategy::FullShard,
            shard_group: shape.ranks as u32,
            nodes: shape.ranks.div_ceil(RANKS_PER_NODE) as u32,
            ranks_per_node: RANKS_PER_NODE as u32,
            world_size: shape.ranks as u32,
            micro_batch: 32,
            global_batch: 32 * shape.ranks as u32,
            accumulation: 1,
            activation_checkpointing: false,
            param_dtype: Dtype::Bf16,
            backward_prefetch: BackwardPrefetch::Pre,
            limit_all_gathers: true,
            reduce_dtype: Dtype::Fp32,
            loader_workers: 1,
            data: "synthetic".into(),
            device: shardsweep_records::DeviceKind::Cpu,
            backend: shardsweep_records::Backend::Mpi,
            timing: shardsweep_records::Timing::Host,
            warmup_steps: 2,
            steps_planned: shape.steps as u32,
            steps_completed: vec![shape.steps as u32; shape.ranks],
            train_flop_per_step: 1e15,
            peak_flop_per_s: Some(191.5e12),
            peak_source: "synthetic".into(),
            hostnames: (0..shape.ranks).map(|r| format!("nid{:05}", r / RANKS_PER_NODE)).collect(),
            provenance: serde_json::Value::Null,
        })
        .collect();
    let start = Instant::now();
    let (mut summaries, rank_scores) = summarize(&metas, &Store::open(dir)?)?;
    crate::scaling::add_efficiencies(&mut summaries);
    let nodes = node_scores(&rank_scores, &metas)?;
    Ok(Timing {
        total_s: start.elapsed().as_secs_f64(),
        points: summaries.len(),
        nodes: nodes.len(),
    })
}
