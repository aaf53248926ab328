//! `shardsweep plan --json`: the plan with each point's prediction, as one JSON document,
//! streamed. It lives here, not in `plan`, because the planner knows nothing of prediction.

use rayon::prelude::*;
use serde::Serialize;

use super::{PerfModel, Prediction};
use crate::plan::{rank_memory_bytes, Plan, PointSpec};

/// Points whose documents are made at once (on every core) before they are written: enough
/// to keep the cores busy, few enough that memory does not grow with the plan.
const CHUNK_POINTS: usize = 4096;

/// One point's document: the point, its derived sizes and the prediction.
#[derive(Serialize)]
struct PointDocument<'a> {
    #[serde(flatten)]
    point: &'a PointSpec,
    world_size: u32,
    global_batch: u32,
    trainable_params: i64,
    train_flop_per_step: f64,
    rank_memory_bytes: f64,
    predicted: Prediction,
}

impl<'a> PointDocument<'a> {
    fn new(point: &'a PointSpec, model: &PerfModel) -> Self {
        Self {
            point,
            world_size: point.world_size(),
            global_batch: point.global_batch(),
            trainable_params: point.model.trainable_params(),
            train_flop_per_step: point.train_flop_per_step(),
            rank_memory_bytes: rank_memory_bytes(point),
            predicted: model.predict(point),
        }
    }
}

/// Writes the plan as one JSON document, `{"points": [...], "rejected": [...], "sweep": NAME}`,
/// pretty-printed (two spaces), followed by a newline. A point's keys are its fields in
/// order, then `world_size`, `global_batch`, `trainable_params`, `train_flop_per_step`,
/// `rank_memory_bytes` and `predicted`. Documents are made [`CHUNK_POINTS`] at a time on
/// every core (the predictions are most of the cost), written in order and dropped, so
/// memory does not grow with the number of points.
///
/// # Errors
/// What `out` returns.
pub fn write_plan_json(
    plan: &Plan,
    model: &PerfModel,
    mut out: impl std::io::Write,
) -> std::io::Result<()> {
    out.write_all(b"{\n  \"points\": ")?;
    write_items(&mut out, &plan.points, |points| {
        items_text(&points.iter().map(|p| PointDocument::new(p, model)).collect::<Vec<_>>())
    })?;
    out.write_all(b",\n  \"rejected\": ")?;
    write_items(&mut out, &plan.rejected, items_text)?;
    out.write_all(b",\n  \"sweep\": ")?;
    serde_json::to_writer(&mut out, &plan.sweep)?;
    out.write_all(b"\n}\n")
}

/// Items printed by one task: enough to outweigh its start, few enough to share the cores.
const PIECE_ITEMS: usize = 128;

/// Writes `items` as a pretty JSON array one level deep in the document (`[]` when empty), as
/// `serde_json::to_writer_pretty` would: the text of each [`PIECE_ITEMS`] items (`text`, as
/// [`items_text`] makes it) is made on every core, [`CHUNK_POINTS`] items at a time.
fn write_items<T: Sync>(
    out: &mut impl std::io::Write,
    items: &[T],
    text: impl Fn(&[T]) -> Vec<u8> + Sync,
) -> std::io::Result<()> {
    if items.is_empty() {
        return out.write_all(b"[]");
    }
    out.write_all(b"[")?;
    for (c, chunk) in items.chunks(CHUNK_POINTS).enumerate() {
        let texts: Vec<Vec<u8>> = chunk.par_chunks(PIECE_ITEMS).map(&text).collect();
        for (i, text) in texts.iter().enumerate() {
            if c + i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(text)?;
        }
    }
    out.write_all(b"\n  ]")
}

/// `items` as they stand one level deep in a pretty document, `\n    {...},\n    {...}`: the
/// pretty text of `{"items": [...]}` without its first and last lines, so that serde_json's
/// printer indents them itself.
fn items_text<D: Serialize>(items: &[D]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Wrapper<'a, D> {
        items: &'a [D],
    }
    const OPEN: &[u8] = b"{\n  \"items\": [";
    const CLOSE: &[u8] = b"\n  ]\n}";
    let mut text = serde_json::to_vec_pretty(&Wrapper { items }).expect("a plan serialises");
    assert!(text.starts_with(OPEN) && text.ends_with(CLOSE), "a pretty array of items");
    text.truncate(text.len() - CLOSE.len());
    text.drain(..OPEN.len());
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{expand, Experiment, Machine};
    use crate::predict::Hardware;

    /// The document as it was first built: every point a value in memory, keys sorted.
    fn in_memory(plan: &Plan, model: &PerfModel) -> String {
        let points: Vec<serde_json::Value> = plan
            .points
            .iter()
            .map(|p| {
                let mut value = serde_json::to_value(p).unwrap();
                let extra = serde_json::json!({
                    "world_size": p.world_size(),
                    "global_batch": p.global_batch(),
                    "trainable_params": p.model.trainable_params(),
                    "train_flop_per_step": p.train_flop_per_step(),
                    "rank_memory_bytes": rank_memory_bytes(p),
                    "predicted": model.predict(p),
                });
                value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                value
            })
            .collect();
        let out =
            serde_json::json!({ "sweep": plan.sweep, "points": points, "rejected": plan.rejected });
        serde_json::to_string_pretty(&out).unwrap() + "\n"
    }

    #[test]
    fn the_streamed_document_is_the_one_built_in_memory() {
        let model = PerfModel {
            hardware: Hardware::fallback(),
            calibration: None,
            peak_flop_per_s: Default::default(),
            anchors: Vec::new(),
        };
        // One with points and rejections, one with no point at all (empty arrays print `[]`).
        for (nodes, memory_bytes) in [("[1, 2]", 64u64 << 30), ("[1]", 1)] {
            let text = format!(
                "name = \"s\"\n[axes]\nmodel = [\"vit-tiny\", \"vit-mini\"]\nstrategy = [\"no_shard\", \"hybrid_shard\"]\nshard_group = [3]\nnodes = {nodes}\nranks_per_node = [2]\nmicro_batch = [2, 4]\n[settings]\nsteps = 4\nwarmup_steps = 1\n"
            );
            let experiment = Experiment::parse(&text, std::path::Path::new("s.toml")).unwrap();
            let plan = expand(&experiment, &Machine { memory_bytes, per_rank: true });
            let mut streamed = Vec::new();
            write_plan_json(&plan, &model, &mut streamed).unwrap();
            let streamed = String::from_utf8(streamed).unwrap();
            // The same content as the document of values (whose keys are sorted)...
            let parsed: serde_json::Value = serde_json::from_str(&streamed).unwrap();
            assert_eq!(
                parsed,
                serde_json::from_str::<serde_json::Value>(&in_memory(&plan, &model)).unwrap()
            );
            // ...and the same text as serde_json's pretty printer makes of the whole.
            #[derive(serde::Serialize)]
            struct Whole<'a> {
                points: Vec<PointDocument<'a>>,
                rejected: &'a [crate::plan::Rejected],
                sweep: &'a str,
            }
            let whole = Whole {
                points: plan.points.iter().map(|p| PointDocument::new(p, &model)).collect(),
                rejected: &plan.rejected,
                sweep: &plan.sweep,
            };
            assert_eq!(streamed, serde_json::to_string_pretty(&whole).unwrap() + "\n");
        }
    }
}
