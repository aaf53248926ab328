//! Per-point statistics: phase times are first reduced to the slowest rank of each step (the
//! step waits for it), then summarised over the steady-state steps (warm-up excluded).

use polars::prelude::*;

use crate::load::SweepRecords;
use crate::AnalysisError;

/// One row per point; see [`summarize`] for the columns.
pub struct Summary {
    pub table: DataFrame,
    /// Phase columns (medians of max-over-ranks seconds), in display order.
    pub phases: Vec<String>,
}

/// Columns: point, model, strategy, nodes, ranks_per_node, world_size, micro_batch,
/// global_batch, outcome, steady_steps, step_s_median, step_s_p10, step_s_p90, one
/// `<phase>` column per phase (median over steady steps of the max over ranks), other_s
/// (step time no phase accounts for), images_per_s, images_per_s_per_rank, model_flop_per_s,
/// final_loss (mean over ranks at the last recorded step).
pub fn summarize(records: &SweepRecords) -> Result<Summary, AnalysisError> {
    let p = &records.points;
    let meta = df!(
        "point" => p.iter().map(|x| x.point.clone()).collect::<Vec<_>>(),
        "model" => p.iter().map(|x| x.model.clone()).collect::<Vec<_>>(),
        "strategy" => p.iter().map(|x| x.strategy.clone()).collect::<Vec<_>>(),
        "nodes" => p.iter().map(|x| x.nodes).collect::<Vec<_>>(),
        "ranks_per_node" => p.iter().map(|x| x.ranks_per_node).collect::<Vec<_>>(),
        "world_size" => p.iter().map(|x| x.world_size).collect::<Vec<_>>(),
        "micro_batch" => p.iter().map(|x| x.micro_batch).collect::<Vec<_>>(),
        "global_batch" => p.iter().map(|x| x.global_batch as f64).collect::<Vec<_>>(),
        "outcome" => p.iter().map(|x| x.outcome.clone()).collect::<Vec<_>>(),
        "warmup_steps" => p.iter().map(|x| x.warmup_steps).collect::<Vec<_>>(),
        "train_flop_per_step" => p.iter().map(|x| x.train_flop_per_step).collect::<Vec<_>>(),
    )?;
    let mut phases: Vec<String> = records
        .steps
        .column("phase")?
        .str()?
        .unique()?
        .iter()
        .flatten()
        .filter(|name| name.ends_with("_s") && *name != "step_s")
        .map(str::to_string)
        .collect();
    let order = ["data_s", "forward_s", "backward_s", "comm_s", "optimizer_s"];
    phases.sort_by_key(|name| (order.iter().position(|o| o == name).unwrap_or(order.len()), name.clone()));

    let steady = records
        .steps
        .clone()
        .lazy()
        .join(meta.clone().lazy().select([col("point"), col("warmup_steps")]), [col("point")], [col("point")], JoinArgs::new(JoinType::Inner))
        .filter(col("step").gt_eq(col("warmup_steps")));
    let slowest_rank = steady
        .clone()
        .filter(col("phase").neq(lit("loss")))
        .group_by([col("point"), col("step"), col("phase")])
        .agg([col("value").max().alias("max_s")]);
    let of = |phase: &str| col("max_s").filter(col("phase").eq(lit(phase.to_string())));
    let mut aggregates = vec![
        of("step_s").n_unique().alias("steady_steps"),
        of("step_s").median().alias("step_s_median"),
        of("step_s").quantile(lit(0.1), QuantileMethod::Linear).alias("step_s_p10"),
        of("step_s").quantile(lit(0.9), QuantileMethod::Linear).alias("step_s_p90"),
    ];
    aggregates.extend(phases.iter().map(|phase| of(phase).median().alias(phase.clone())));
    let per_point = slowest_rank.group_by([col("point")]).agg(aggregates);

    let last_loss = records
        .steps
        .clone()
        .lazy()
        .filter(col("phase").eq(lit("loss")))
        .filter(col("step").eq(col("step").max().over([col("point")])?))
        .group_by([col("point")])
        .agg([col("value").mean().alias("final_loss")]);

    let accounted = phases.iter().fold(lit(0.0), |sum, phase| sum + col(phase.clone()));
    let table = meta
        .lazy()
        .join(per_point, [col("point")], [col("point")], JoinArgs::new(JoinType::Left))
        .join(last_loss, [col("point")], [col("point")], JoinArgs::new(JoinType::Left))
        .with_columns([
            (col("step_s_median") - accounted).alias("other_s"),
            (col("global_batch") / col("step_s_median")).alias("images_per_s"),
            (col("train_flop_per_step") / col("step_s_median")).alias("model_flop_per_s"),
        ])
        .with_columns([(col("images_per_s") / col("world_size").cast(DataType::Float64)).alias("images_per_s_per_rank")])
        .drop(cols(["warmup_steps", "train_flop_per_step"]))
        .sort(["point"], SortMultipleOptions::default())
        .collect()?;
    Ok(Summary { table, phases })
}
