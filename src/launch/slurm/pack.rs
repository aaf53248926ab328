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

/// Packs `points` (each allowed `timeout_s` plus the system's start-up overhead) into jobs.
pub fn pack(points: &[&PointSpec], system: &System, timeout_s: u64) -> (Vec<JobPlan>, Vec<Unfit>) {
    let per_point_s = timeout_s + system.point_overhead_s;
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
                Some(limit) if per_point_s > limit => {
                    Some(format!("its time limit ({timeout_s} s + {} s start-up) exceeds the {limit} s walltime of {}-node jobs", system.point_overhead_s, point.nodes))
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
    for (nodes, group) in by_nodes {
        let limit = system.walltime_limit_s(nodes).expect("checked above");
        let per_job = (limit / per_point_s).max(1) as usize;
        let per_job = system.max_points_per_job.map_or(per_job, |m| per_job.min(m.max(1) as usize));
        for chunk in group.chunks(per_job) {
            let walltime_s = round_up_to_minutes(per_point_s * chunk.len() as u64).min(limit);
            jobs.push(JobPlan {
                nodes,
                walltime_s,
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
