//! Packing: points with the same node count share one allocation and run one after another as
//! srun steps, as many as the queue's walltime for that size allows, so a sweep of many small
//! points is a handful of jobs instead of a flood.

use serde::Serialize;

use super::system::System;
use crate::plan::PointSpec;

/// One batch job: its size, walltime and the points it runs in order.
#[derive(Debug, Clone, Serialize)]
pub struct JobPlan {
    pub nodes: u32,
    pub walltime_s: u64,
    pub points: Vec<String>,
    /// Most ranks of any of its points (the local profile allocates tasks, not whole nodes).
    pub max_ranks: u32,
}

impl JobPlan {
    pub fn node_hours(&self) -> f64 {
        f64::from(self.nodes) * self.walltime_s as f64 / 3600.0
    }
}

/// A point the system cannot take, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unfit {
    pub id: String,
    pub reason: String,
}

/// Packs `points` (each allowed its time limit, `limit_s(point)`, plus the system's start-up
/// overhead) into jobs: points of one node count fill a job in order until its queue's walltime.
pub fn pack(
    points: &[&PointSpec],
    system: &System,
    limit_s: &dyn Fn(&PointSpec) -> u64,
) -> (Vec<JobPlan>, Vec<Unfit>) {
    let per_point_s = |p: &PointSpec| limit_s(p) + system.point_overhead_s;
    let mut unfit = Vec::new();
    let mut by_nodes: std::collections::BTreeMap<u32, Vec<&PointSpec>> = Default::default();
    for point in points {
        let reason = if point.ranks_per_node > system.ranks_per_node {
            Some(format!(
                "{} ranks per node; {} nodes take at most {}",
                point.ranks_per_node, system.name, system.ranks_per_node
            ))
        } else {
            match system.walltime_limit_s(point.nodes) {
                None => Some(format!("{} nodes; {} grants at most {}", point.nodes, system.name, system.max_nodes.min(system.queue_limits.last().map_or(0, |q| q.max_nodes)))),
                Some(limit) if per_point_s(point) > limit => {
                    Some(format!("its time limit ({} s + {} s start-up) exceeds the {limit} s walltime of {}-node jobs", limit_s(point), system.point_overhead_s, point.nodes))
                }
                Some(_) => None,
            }
        };
        match reason {
            Some(reason) => unfit.push(Unfit { id: point.id.clone(), reason }),
            None => by_nodes.entry(point.nodes).or_default().push(point),
        }
    }
    let mut jobs = Vec::new();
    let most = system.max_points_per_job.map_or(usize::MAX, |m| m.max(1) as usize);
    for (nodes, group) in by_nodes {
        let limit = system.walltime_limit_s(nodes).expect("checked above");
        let mut chunks: Vec<(Vec<&PointSpec>, u64)> = Vec::new();
        for point in group {
            let need = per_point_s(point);
            match chunks.last_mut() {
                Some((chunk, total)) if *total + need <= limit && chunk.len() < most => {
                    chunk.push(point);
                    *total += need;
                }
                _ => chunks.push((vec![point], need)),
            }
        }
        for (chunk, total) in chunks {
            jobs.push(JobPlan {
                nodes,
                walltime_s: round_up_to_minutes(total).min(limit),
                points: chunk.iter().map(|p| p.id.clone()).collect(),
                max_ranks: chunk.iter().map(|p| p.world_size()).max().unwrap_or(1),
            });
        }
    }
    (jobs, unfit)
}

/// Slurm counts time limits in whole minutes.
fn round_up_to_minutes(seconds: u64) -> u64 {
    seconds.div_ceil(60) * 60
}

/// `HH:MM:SS` for `#SBATCH --time`.
pub fn walltime(seconds: u64) -> String {
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}
