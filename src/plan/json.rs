//! `shardsweep plan --json`: the plan as one JSON document, streamed.

use super::{rank_memory_bytes, Plan, PointSpec};
use crate::predict::PerfModel;

/// Writes the plan as one JSON document, `{"points": [...], "rejected": [...], "sweep": NAME}`,
/// pretty-printed with every object's keys in order, followed by a newline. Each point's
/// document (the point, its derived sizes and the prediction) is built, written and dropped
/// in turn, so memory does not grow with the number of points.
pub fn write_json(
    plan: &Plan,
    model: &PerfModel,
    out: impl std::io::Write,
) -> serde_json::Result<()> {
    use serde::ser::{SerializeMap, Serializer};
    let point = |p: &PointSpec| {
        let mut value = serde_json::to_value(p).expect("a point serialises");
        let document = value.as_object_mut().expect("a point is an object");
        for (key, extra) in [
            ("world_size", serde_json::json!(p.world_size())),
            ("global_batch", serde_json::json!(p.global_batch())),
            ("trainable_params", serde_json::json!(p.model.trainable_params())),
            ("train_flop_per_step", serde_json::json!(p.train_flop_per_step())),
            ("rank_memory_bytes", serde_json::json!(rank_memory_bytes(p))),
            ("predicted", serde_json::to_value(model.predict(p)).expect("a prediction")),
        ] {
            document.insert(key.into(), extra);
        }
        value
    };
    // Rejections as values too: their keys in order, as the points' are.
    let rejected = |r| serde_json::to_value(r).expect("a rejection serialises");
    let mut serializer = serde_json::Serializer::pretty(out);
    let mut map = serializer.serialize_map(Some(3))?;
    map.serialize_entry("points", &Items(|| plan.points.iter().map(point)))?;
    map.serialize_entry("rejected", &Items(|| plan.rejected.iter().map(rejected)))?;
    map.serialize_entry("sweep", &plan.sweep)?;
    map.end()?;
    let mut out = serializer.into_inner();
    out.write_all(b"\n").map_err(serde_json::Error::io)
}

/// A sequence serialised as its items come from the iterator that `.0` makes.
struct Items<F>(F);

impl<F, I> serde::Serialize for Items<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: serde::Serialize,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq((self.0)())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{expand, Experiment, Machine};
    use crate::predict::Hardware;

    /// The document as it was built before it was streamed: every point's value in memory.
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
            write_json(&plan, &model, &mut streamed).unwrap();
            assert_eq!(String::from_utf8(streamed).unwrap(), in_memory(&plan, &model));
        }
    }
}
