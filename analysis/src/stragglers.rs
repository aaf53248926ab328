//! Slow ranks and the nodes they ran on, across a whole sweep. A rank's score in a step is its
//! forward time over the median forward time of all ranks in that step (forward time excludes
//! waits for collectives, so it measures the device and host, not the network); its score in a
//! point is the median over the steps after the warm-up (a slow start slows every rank alike). A node's score is the median of its ranks' scores
//! over every point it ran; nodes above the threshold make an `--exclude` list.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::load::PointRecords;
use crate::stats::median;

use crate::AnalysisError;

#[derive(Debug, Clone, PartialEq)]
pub struct NodeScore {
    pub hostname: String,
    /// Median over its ranks and points of (forward time / median forward time of the step).
    pub score: f64,
    pub worst_score: f64,
    pub rank_points: usize,
}

/// Node scores from rank scores (point: index in `points`, rank, score), slowest first; each
/// rank's node comes from its point's manifest.
pub fn node_scores(
    rank_scores: &DataFrame,
    points: &[PointRecords],
) -> Result<Vec<NodeScore>, AnalysisError> {
    let (point, rank, score) = (
        rank_scores.column("point")?.u32()?,
        rank_scores.column("rank")?.u32()?,
        rank_scores.column("score")?.f64()?,
    );
    let mut by_node: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for ((p, r), s) in point.iter().zip(rank.iter()).zip(score.iter()) {
        let (Some(p), Some(r), Some(s)) = (p, r, s) else { continue };
        let host = points
            .get(p as usize)
            .and_then(|p| p.hostnames.get(r as usize))
            .map_or("", String::as_str);
        match by_node.get_mut(host) {
            Some(scores) => scores.push(s),
            None => drop(by_node.insert(host.to_string(), vec![s])),
        }
    }
    let mut nodes: Vec<NodeScore> = by_node
        .into_iter()
        .map(|(hostname, scores)| NodeScore {
            hostname,
            score: median(&scores),
            worst_score: scores.iter().copied().fold(f64::MIN, f64::max),
            rank_points: scores.len(),
        })
        .collect();
    nodes.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(nodes)
}

/// Nodes slower than `1 + threshold` times the typical rank, as a Slurm node list.
pub fn exclude_list(scores: &[NodeScore], threshold: f64) -> Vec<String> {
    scores
        .iter()
        .filter(|s| s.score > 1.0 + threshold && !s.hostname.is_empty())
        .map(|s| s.hostname.clone())
        .collect()
}
