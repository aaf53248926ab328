//! An OSU-style sweep of collectives over message sizes and group sizes (after the OSU
//! micro-benchmarks' `osu_allgather`, `osu_reduce_scatter`, `osu_allreduce`: warm-up
//! iterations, then timed ones; here each repetition takes the slowest rank's time and the
//! sweep reports quantiles over repetitions). It talks only to the [`Comm`] trait, so any
//! backend can drive it; the caller names the backend in the rows. On a GPU the payloads live
//! in device memory and each call is followed by a device synchronise, so a repetition ends
//! when the device has finished, not when the host has queued the call (NCCL's own tests
//! instead time a batch of calls and average over ranks: their small-message latencies come
//! out lower). The all-reduce runs in place where the library reduces in place (c10d), out of
//! place otherwise (MPI, as `osu_allreduce`): each library's own form, with no copy timed.
//!
//! Groups: for each group size `g`, the world splits into world / g groups of consecutive
//! ranks (as FSDP's shard groups), and, when the world spans several nodes, into groups of one
//! rank per node (as the hybrid strategies' replica groups). All groups of a split run at once,
//! so links are shared as in training. Each row's `ranks_per_node` and `nodes` describe one
//! group: the nodes it spans and its ranks on each.

use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::comm::{Comm, CommError};
pub use crate::records::CollectiveKind;

/// What to sweep. Sizes are payload bytes as the records count them: the all-gather's
/// output, the reduce-scatter's input, the all-reduce's buffer (fp32 elements).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOptions {
    pub min_bytes: u64,
    pub max_bytes: u64,
    /// Each size is the previous one times this (2 or 4, as OSU's power-of-two steps).
    pub factor: u64,
    /// Group sizes (ranks); each must divide the world. Empty: every power of two from 2 up
    /// that divides the world, and the world itself.
    pub group_sizes: Vec<usize>,
    /// Ranks per node of the world (consecutive ranks share a node); must divide it.
    pub ranks_per_node: usize,
    pub warmup: usize,
    pub repeats: usize,
    /// Where the payloads (and the per-repetition times the ranks exchange) live: the CPU for
    /// MPI and Gloo, this rank's GPU for NCCL.
    pub device: Device,
}

/// One line of the sweep's CSV (columns in [`CSV_HEADER`]'s order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    pub backend: String,
    pub collective: CollectiveKind,
    pub group_size: usize,
    /// Ranks of the group on each node it spans.
    pub ranks_per_node: usize,
    /// Nodes the group spans.
    pub nodes: usize,
    pub payload_bytes: u64,
    pub repeats: usize,
    pub median_s: f64,
    pub p10_s: f64,
    pub p90_s: f64,
}

pub const CSV_HEADER: &str =
    "backend,collective,group_size,ranks_per_node,nodes,payload_bytes,repeats,median_s,p10_s,p90_s";

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{what} = {value}: {reason}")]
    Options { what: &'static str, value: String, reason: String },
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error(transparent)]
    Record(#[from] crate::records::RecordError),
}

fn invalid(what: &'static str, value: impl ToString, reason: impl Into<String>) -> SweepError {
    SweepError::Options { what, value: value.to_string(), reason: reason.into() }
}

/// Payload sizes from `min` to `max` bytes, each `factor` times the last, and `max` itself
/// where the ladder steps over it (8 B x4 reaches 32 MiB; 64 MiB is then measured too).
pub fn sizes(min: u64, max: u64, factor: u64) -> Vec<u64> {
    let mut ladder: Vec<u64> = std::iter::successors(Some(min), |&s| s.checked_mul(factor))
        .take_while(|&s| s <= max)
        .collect();
    if ladder.last() != Some(&max) {
        ladder.push(max);
    }
    ladder
}

impl SweepOptions {
    fn check(&self, world: usize) -> Result<Vec<usize>, SweepError> {
        if self.min_bytes == 0 || self.min_bytes > self.max_bytes {
            return Err(invalid(
                "min_bytes",
                self.min_bytes,
                format!("must be at least 1 and at most max_bytes ({})", self.max_bytes),
            ));
        }
        if self.factor < 2 {
            return Err(invalid("factor", self.factor, "must be at least 2"));
        }
        if self.repeats == 0 {
            return Err(invalid("repeats", self.repeats, "must be at least 1"));
        }
        if self.warmup == 0 && self.device.is_cuda() {
            // The first call on a group makes its NCCL communicator.
            return Err(invalid(
                "warmup",
                0,
                "must be at least 1 on a GPU (NCCL connects a group at its first call)",
            ));
        }
        if self.ranks_per_node == 0 || !world.is_multiple_of(self.ranks_per_node) {
            return Err(invalid(
                "ranks_per_node",
                self.ranks_per_node,
                format!("must divide the world of {world} ranks"),
            ));
        }
        let groups = if self.group_sizes.is_empty() {
            let mut g: Vec<usize> = std::iter::successors(Some(2), |g| Some(g * 2))
                .take_while(|g| *g <= world)
                .filter(|g| world.is_multiple_of(*g))
                .collect();
            if world > 1 && !g.contains(&world) {
                g.push(world);
            }
            g
        } else {
            self.group_sizes.clone()
        };
        if groups.is_empty() {
            return Err(invalid(
                "group_size",
                "none",
                format!("a world of {world} rank has no group of 2 or more to measure"),
            ));
        }
        for &g in &groups {
            if g < 2 || !world.is_multiple_of(g) {
                return Err(invalid(
                    "group_size",
                    g,
                    format!("must be at least 2 and divide the world of {world} ranks"),
                ));
            }
            // Consecutive groups must fill whole nodes or fit in one.
            let rpn = self.ranks_per_node;
            if g > rpn && !g.is_multiple_of(rpn) || g < rpn && !rpn.is_multiple_of(g) {
                return Err(invalid(
                    "group_size",
                    g,
                    format!("must divide or be a multiple of {rpn} ranks per node"),
                ));
            }
        }
        Ok(groups)
    }
}

/// How the world splits into concurrent groups of one size.
#[derive(Debug, Clone, Copy)]
struct Layout {
    group_size: usize,
    ranks_per_node: usize,
    nodes: usize,
    /// One rank per node (replica groups) rather than consecutive ranks.
    strided: bool,
}

impl Layout {
    /// The group `rank` belongs to, for [`Comm::split`].
    fn color(&self, rank: usize, world_rpn: usize) -> u32 {
        let color = if self.strided {
            let (node, local) = (rank / world_rpn, rank % world_rpn);
            local + world_rpn * (node / self.group_size)
        } else {
            rank / self.group_size
        };
        color as u32
    }
}

fn layouts(groups: &[usize], world: usize, rpn: usize) -> Vec<Layout> {
    let world_nodes = world / rpn;
    let mut out = Vec::new();
    for &g in groups {
        out.push(Layout {
            group_size: g,
            ranks_per_node: g.min(rpn),
            nodes: g.div_ceil(rpn),
            strided: false,
        });
        // One rank per node is a different layout only when consecutive ranks share nodes.
        if rpn > 1 && world_nodes > 1 && world_nodes.is_multiple_of(g) {
            out.push(Layout { group_size: g, ranks_per_node: 1, nodes: g, strided: true });
        }
    }
    out
}

/// The `q` quantile of `samples` by statrs (the estimator the analysis uses for its p10/p90,
/// so the two agree).
pub(crate) fn quantile(samples: &[f64], q: f64) -> f64 {
    use statrs::statistics::{Data, OrderStatistics};
    Data::new(samples.to_vec()).quantile(q)
}

/// Runs the sweep on every rank of `world`; every rank returns the same rows, and hands the
/// rows so far to `done` after each one (so a sweep cut short can keep them).
///
/// # Errors
/// Options that do not fit the world, a failed collective, or an error from `done`.
pub fn sweep(
    world: &dyn Comm,
    backend: &str,
    options: &SweepOptions,
    done: &mut dyn FnMut(&[SweepRow]) -> Result<(), SweepError>,
) -> Result<Vec<SweepRow>, SweepError> {
    let groups = options.check(world.size())?;
    let ladder = sizes(options.min_bytes, options.max_bytes, options.factor);
    // Each repetition's time, and the slowest rank's (gathered fp32: microsecond resolution
    // holds far beyond any time measured here).
    let on = (Kind::Float, options.device);
    let mine = Tensor::zeros([1], on);
    let all = Tensor::zeros([world.size() as i64], on);
    // A GPU collective is done when the device is, not when `wait` returns (NCCL's `wait` only
    // orders the current stream after it).
    let finish = || {
        if let Device::Cuda(index) = options.device {
            tch::Cuda::synchronize(index as i64);
        }
    };
    let mut rows = Vec::new();
    for layout in layouts(&groups, world.size(), options.ranks_per_node) {
        let color = layout.color(world.rank(), options.ranks_per_node);
        let group = world.split(color, world.rank() as u32);
        let g = group.size();
        debug_assert_eq!(g, layout.group_size);
        for collective in CollectiveKind::ALL {
            let mut last = 0;
            for &bytes in &ladder {
                // Whole fp32 elements, and for the scattering collectives whole elements per
                // rank: a payload too small for that is measured at the next size that is.
                let mut elements = bytes.div_ceil(4) as usize;
                if collective != CollectiveKind::AllReduce {
                    elements = elements.div_ceil(g) * g;
                }
                let payload_bytes = 4 * elements as u64;
                if payload_bytes == last {
                    continue;
                }
                last = payload_bytes;
                let (input, output) = match collective {
                    CollectiveKind::AllGather => (elements / g, elements),
                    CollectiveKind::ReduceScatter => (elements, elements / g),
                    CollectiveKind::AllReduce => (elements, elements),
                };
                // Zeros: an in-place all-reduce repeated keeps them finite.
                let input = Tensor::zeros([input as i64], on);
                let output = match collective {
                    CollectiveKind::AllReduce => group.all_reduce_output(&input),
                    _ => Tensor::zeros([output as i64], on),
                };
                let run = || match collective {
                    CollectiveKind::AllGather => group.all_gather(&input, &output),
                    CollectiveKind::ReduceScatter => group.reduce_scatter_sum(&input, &output),
                    CollectiveKind::AllReduce => group.all_reduce_sum(&input, &output),
                };
                for _ in 0..options.warmup {
                    run()?;
                }
                finish();
                let mut samples = Vec::with_capacity(options.repeats);
                for _ in 0..options.repeats {
                    world.barrier();
                    let start = Instant::now();
                    run()?;
                    finish();
                    let elapsed_s = start.elapsed().as_secs_f64();
                    let _ = mine.shallow_clone().fill_(elapsed_s);
                    world.all_gather(&mine, &all)?;
                    samples.push(all.max().double_value(&[]));
                }
                rows.push(SweepRow {
                    backend: backend.to_string(),
                    collective,
                    group_size: g,
                    ranks_per_node: layout.ranks_per_node,
                    nodes: layout.nodes,
                    payload_bytes,
                    repeats: options.repeats,
                    median_s: quantile(&samples, 0.5),
                    p10_s: quantile(&samples, 0.1),
                    p90_s: quantile(&samples, 0.9),
                });
                done(&rows)?;
            }
        }
    }
    Ok(rows)
}

/// The rows as CSV: [`CSV_HEADER`], then one line per row; times in seconds to 7 significant
/// digits (the precision of the gathered fp32 times).
pub fn to_csv(rows: &[SweepRow]) -> String {
    let mut text = format!("{CSV_HEADER}\n");
    for r in rows {
        text += &format!(
            "{},{},{},{},{},{},{},{:.6e},{:.6e},{:.6e}\n",
            r.backend,
            r.collective.name(),
            r.group_size,
            r.ranks_per_node,
            r.nodes,
            r.payload_bytes,
            r.repeats,
            r.median_s,
            r.p10_s,
            r.p90_s
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladders_of_sizes() {
        assert_eq!(sizes(8, 64, 2), [8, 16, 32, 64]);
        assert_eq!(sizes(8, 1 << 26, 4).len(), 13);
        assert_eq!(sizes(8, 1 << 26, 2).len(), 24);
        assert_eq!(sizes(8, 100, 4), [8, 32, 100]);
    }

    #[test]
    fn quantiles_are_ordered_and_the_median_is_the_middle() {
        let s = [10.0, 2.0, 4.0, 3.0, 1.0];
        assert_eq!(quantile(&s, 0.5), 3.0);
        assert!(quantile(&s, 0.1) <= 1.5 && quantile(&s, 0.9) >= 6.0);
        assert_eq!(quantile(&[2.0], 0.1), 2.0);
    }

    #[test]
    fn groups_of_consecutive_ranks_and_of_one_rank_per_node() {
        // 8 ranks on 4 nodes of 2.
        let all = layouts(&[2, 4], 8, 2);
        let spans: Vec<(usize, usize, usize, bool)> =
            all.iter().map(|l| (l.group_size, l.ranks_per_node, l.nodes, l.strided)).collect();
        assert_eq!(spans, [(2, 2, 1, false), (2, 1, 2, true), (4, 2, 2, false), (4, 1, 4, true)]);
        let colors = |l: &Layout| (0..8).map(|r| l.color(r, 2)).collect::<Vec<_>>();
        assert_eq!(colors(&all[0]), [0, 0, 1, 1, 2, 2, 3, 3]);
        // Strided pairs: nodes {0, 1} and {2, 3}, one group per local rank.
        assert_eq!(colors(&all[1]), [0, 1, 0, 1, 2, 3, 2, 3]);
        assert_eq!(colors(&all[3]), [0, 1, 0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn options_are_checked_against_the_world() {
        let options = SweepOptions {
            min_bytes: 8,
            max_bytes: 64,
            factor: 2,
            group_sizes: vec![],
            ranks_per_node: 2,
            warmup: 1,
            repeats: 1,
            device: Device::Cpu,
        };
        assert_eq!(options.check(4).unwrap(), [2, 4]);
        assert_eq!(options.check(6).unwrap(), [2, 6]);
        let bad = SweepOptions { group_sizes: vec![3], ..options.clone() };
        let message = bad.check(4).unwrap_err().to_string();
        assert!(message.contains("group_size = 3: must be at least 2 and divide"), "{message}");
        let one = SweepOptions { ranks_per_node: 1, ..options.clone() };
        let message = one.check(1).unwrap_err().to_string();
        assert!(message.contains("a world of 1 rank has no group"), "{message}");
        let gpu = SweepOptions { warmup: 0, device: Device::Cuda(0), ..options.clone() };
        assert!(gpu.check(4).unwrap_err().to_string().starts_with("warmup = 0"));
        assert!(SweepOptions { warmup: 0, ..options.clone() }.check(4).is_ok());
        let bad = SweepOptions { ranks_per_node: 3, ..options };
        assert!(bad.check(4).unwrap_err().to_string().starts_with("ranks_per_node = 3"));
    }
}
