//! Slow ranks and the nodes they ran on, across a whole sweep. A rank's score in a step is its
//! forward time over the median forward time of all ranks in that step (forward time excludes
//! waits for collectives, so it measures the device and host, not the network); its score in a
//! point is the median over steady steps. A node's score is the median of its ranks' scores
//! over every point it ran; nodes above the threshold make an `--exclude` list.

use polars::prelude::*;

use crate::summary::PointSummary;
use crate::AnalysisError;

#[derive(Debug, Clone, PartialEq)]
pub struct NodeScore {
    pub hostname: String,
    /// Median over its ranks and points of (forward time / median forward time of the step).
    pub score: f64,
    pub worst_score: f64,
    pub rank_points: usize,
}

/// Node scores, slowest first.
pub fn node_scores(store: LazyFrame, summaries: &[PointSummary]) -> Result<Vec<NodeScore>, AnalysisError> {
    let steady = df!(
        "point" => summaries.iter().map(|s| s.meta.point.clone()).collect::<Vec<_>>(),
        "steady_from" => summaries.iter().map(|s| s.steady_from).collect::<Vec<_>>(),
    )?;
    let per_rank = store
        .filter(col("metric").eq(lit("time")).and(col("phase").eq(lit("forward"))))
        .select([col("point"), col("rank"), col("hostname"), col("step"), col("value")])
        .join(steady.lazy(), [col("point")], [col("point")], JoinArgs::new(JoinType::Inner))
        .filter(col("step").gt_eq(col("steady_from")))
        .with_column((col("value") / col("value").median().over([col("point"), col("step")])?).alias("ratio"))
        .group_by([col("point"), col("rank"), col("hostname")])
        .agg([col("ratio").median().alias("score")]);
    let nodes = per_rank
        .group_by([col("hostname")])
        .agg([col("score").median().alias("score"), col("score").max().alias("worst"), len().alias("n")])
        .sort(["score"], SortMultipleOptions::default().with_order_descending(true))
        .collect_with_engine(Engine::Streaming)?
        .unwrap_single();
    let (host, score, worst, n) = (nodes.column("hostname")?.str()?, nodes.column("score")?.f64()?, nodes.column("worst")?.f64()?, nodes.column("n")?.u32()?);
    Ok((0..nodes.height())
        .map(|i| NodeScore {
            hostname: host.get(i).unwrap_or_default().to_string(),
            score: score.get(i).unwrap_or(f64::NAN),
            worst_score: worst.get(i).unwrap_or(f64::NAN),
            rank_points: n.get(i).unwrap_or(0) as usize,
        })
        .collect())
}

/// Nodes slower than `1 + threshold` times the typical rank, as a Slurm node list.
pub fn exclude_list(scores: &[NodeScore], threshold: f64) -> Vec<String> {
    scores.iter().filter(|s| s.score > 1.0 + threshold && !s.hostname.is_empty()).map(|s| s.hostname.clone()).collect()
}
