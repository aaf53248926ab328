//! Numbers you can trust: data-parallel training over MPI must train to the same losses as one
//! rank on the same global batch.

mod common;

use common::{global_losses, Sweep};

const STEPS: usize = 12;

#[test]
fn no_shard_on_two_and_four_ranks_matches_one_rank() {
    // Global batch 8 everywhere: 1 x 8, 2 ranks x 4, and 2 simulated nodes x 2 ranks x 2.
    let sweep = Sweep::new(&format!(
        r#"
name = "equivalence"
zip = [["nodes", "ranks_per_node", "micro_batch"]]
[axes]
model = ["vit-tiny"]
strategy = ["no_shard"]
nodes = [1, 1, 2]
ranks_per_node = [1, 2, 2]
micro_batch = [8, 4, 2]
[settings]
steps = {STEPS}
warmup_steps = 1
precision = "fp32"
[optimizer]
base_lr = 0.1
lr_warmup_steps = 2
"#
    ));
    assert!(sweep.run(&[]).status.success());
    let single = global_losses(&sweep.point("equivalence", "vit-tiny-no_shard-n1x1-mb8"));
    assert_eq!(single.len(), STEPS);
    assert!(single[STEPS - 1] < single[0], "the reference trains: {single:?}");
    for point in ["vit-tiny-no_shard-n1x2-mb4", "vit-tiny-no_shard-n2x2-mb2"] {
        let losses = global_losses(&sweep.point("equivalence", point));
        for (step, (a, b)) in single.iter().zip(&losses).enumerate() {
            assert!((a - b).abs() <= 1e-5 * a.abs(), "{point} step {step}: {b} vs single rank {a}\n{losses:?}\n{single:?}");
        }
    }
}

#[test]
fn a_different_global_batch_gives_different_losses() {
    // The check above can fail: the same comparison on batches that differ is caught.
    let sweep = Sweep::new(
        r#"
name = "control"
zip = [["ranks_per_node", "micro_batch"]]
[axes]
model = ["vit-tiny"]
strategy = ["no_shard"]
nodes = [1]
ranks_per_node = [1, 2]
micro_batch = [8, 2]
[settings]
steps = 3
warmup_steps = 1
"#,
    );
    assert!(sweep.run(&[]).status.success());
    let a = global_losses(&sweep.point("control", "vit-tiny-no_shard-n1x1-mb8"));
    let b = global_losses(&sweep.point("control", "vit-tiny-no_shard-n1x2-mb2"));
    assert!((a[0] - b[0]).abs() > 1e-5 * a[0].abs(), "{a:?} vs {b:?}");
}
