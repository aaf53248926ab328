//! The harness's integration tests as one test binary: each module was a binary of its own,
//! and each of those linked libtorch; one link is much less build time. The real Slurm cluster
//! tests (`tests/slurm_cluster.rs`) stay a binary of their own. Which tests run without
//! `SHARDSWEEP_TEST_TIER=full`: see `common`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../../analysis/tests/fixture/mod.rs"]
mod fixture;

mod baselines;
mod data;
mod end_to_end;
mod failures;
mod import_trees;
mod launchers;
mod outcomes;
mod pasted_and_piped;
mod plan;
mod predict;
mod probe;
mod rasters;
mod scheduler_answers;
mod slurm_scripts;
mod strategies;
mod training;
mod upgrades;
