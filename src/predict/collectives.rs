//! Time of one collective call from a hierarchical latency-bandwidth (alpha-beta) model.
//!
//! Costs for p ranks and n bytes (n = all-gather output, reduce-scatter input, all-reduce
//! buffer), after Thakur, Rabenseifner and Gropp (IJHPCA 2005) and NCCL's tuning model
//! (`src/graph/tuning.cc`, the same structure in RCCL):
//! - ring all-gather / reduce-scatter: base + (p-1) steps + (p-1)/p * n / busbw. RCCL runs
//!   these as rings only, so their latency grows linearly with the group.
//! - all-reduce: the cheaper of a ring (2(p-1) steps, 2(p-1)/p * n / busbw) and, across
//!   nodes, a pipelined tree (2((r-1) intra steps + log2(nodes) network steps), 2n / busbw).
//!
//! A ring step waits for its slowest hop: inside a node the intra-node step latency, across
//! nodes the network step latency; and a ring over more nodes has more hops to be slow, so
//! its whole step (latency and transfer) slows with the nodes it spans
//! (`ring_congestion_nodes`; trees have log2(nodes) levels and are not slowed). Bandwidth: inside a node the ring's bus bandwidth (a package
//! pair has its own faster link); across nodes each rank gets its share of its NIC, and a
//! group with r ranks per node gets at most r shares.

use super::hardware::Hardware;
pub use crate::records::CollectiveKind;

/// How a process group lies on the machine: `ranks` in all, on `nodes` nodes, `per_node` on
/// each (groups are regular: consecutive ranks, or one rank per position in a shard group).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group {
    pub ranks: u32,
    pub nodes: u32,
    pub per_node: u32,
}

impl Group {
    /// `ranks` consecutive ranks on nodes of `ranks_per_node`.
    pub fn consecutive(ranks: u32, ranks_per_node: u32) -> Self {
        let per_node = ranks.min(ranks_per_node).max(1);
        Self { ranks, nodes: ranks.div_ceil(per_node), per_node }
    }

    /// The ranks at the same position of every shard group of `shard` consecutive ranks in a
    /// world of `world` (the hybrid strategies' all-reduce group).
    pub fn replicas(world: u32, shard: u32, ranks_per_node: u32) -> Self {
        let ranks = world / shard.max(1);
        let per_node = (ranks_per_node / shard.max(1)).max(1).min(ranks);
        Self { ranks, nodes: ranks.div_ceil(per_node), per_node }
    }
}

/// Seconds for one call of `kind` on `bytes` over `group`.
pub fn time_s(hw: &Hardware, kind: CollectiveKind, bytes: f64, group: Group) -> f64 {
    let p = f64::from(group.ranks);
    if group.ranks <= 1 || bytes <= 0.0 {
        return 0.0;
    }
    let intra_bw =
        if group.per_node <= 2 { hw.pair_bytes_per_s } else { hw.intra_node_bytes_per_s };
    let (step_s, busbw, slowdown) = if group.nodes <= 1 {
        (hw.intra_step_s, intra_bw, 1.0)
    } else {
        let net = f64::from(group.per_node) * hw.nic_bytes_per_s / f64::from(hw.ranks_per_nic);
        let bw = if group.per_node <= 1 { net } else { net.min(intra_bw) };
        (hw.net_ring_step_s.max(hw.intra_step_s), bw, ring_slowdown(hw, group.nodes))
    };
    let fraction = (p - 1.0) / p;
    match kind {
        CollectiveKind::AllGather | CollectiveKind::ReduceScatter => {
            hw.collective_base_s + slowdown * ((p - 1.0) * step_s + fraction * bytes / busbw)
        }
        CollectiveKind::AllReduce => {
            let ring = hw.collective_base_s
                + slowdown * (2.0 * (p - 1.0) * step_s + 2.0 * fraction * bytes / busbw);
            if group.nodes <= 1 {
                return ring;
            }
            let levels = f64::from(group.nodes).log2().ceil();
            let tree = hw.collective_base_s
                + 2.0
                    * (f64::from(group.per_node - 1) * hw.intra_step_s
                        + levels * hw.net_tree_step_s)
                + 2.0 * bytes / busbw;
            ring.min(tree)
        }
    }
}

/// How much slower each step of a ring spanning `nodes` nodes is than at two nodes: a ring
/// step ends when its slowest hop does, and a longer ring has more hops through more switches
/// and NIC queues to be slow (1 + (nodes - 2) / ring_congestion_nodes).
pub fn ring_slowdown(hw: &Hardware, nodes: u32) -> f64 {
    1.0 + (f64::from(nodes) - 2.0).max(0.0) / hw.ring_congestion_nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hw() -> Hardware {
        let mut h = Hardware::fallback();
        h.collective_base_s = 0.0;
        h.intra_step_s = 1e-6;
        h.net_ring_step_s = 2e-6;
        h.net_tree_step_s = 3e-6;
        h.intra_node_bytes_per_s = 1e9;
        h.pair_bytes_per_s = 4e9;
        h.nic_bytes_per_s = 2e9;
        h.ranks_per_nic = 2;
        h.ring_congestion_nodes = 1e12;
        h
    }

    #[test]
    fn ring_inside_a_node_is_alpha_beta() {
        let g = Group::consecutive(8, 8);
        let t = time_s(&hw(), CollectiveKind::AllGather, 8e6, g);
        assert!((t - (7.0 * 1e-6 + 7.0 / 8.0 * 8e6 / 1e9)).abs() < 1e-12);
        // A pair uses its own link.
        let t2 = time_s(&hw(), CollectiveKind::ReduceScatter, 8e6, Group::consecutive(2, 8));
        assert!((t2 - (1e-6 + 0.5 * 8e6 / 4e9)).abs() < 1e-12);
    }

    #[test]
    fn groups_lie_on_nodes_as_fsdp_builds_them() {
        assert_eq!(Group::consecutive(16, 8), Group { ranks: 16, nodes: 2, per_node: 8 });
        assert_eq!(Group::replicas(32, 8, 8), Group { ranks: 4, nodes: 4, per_node: 1 });
        assert_eq!(Group::replicas(32, 2, 8), Group { ranks: 16, nodes: 4, per_node: 4 });
        assert_eq!(Group::replicas(8, 1, 8), Group { ranks: 8, nodes: 1, per_node: 8 });
    }

    #[test]
    fn network_all_reduce_takes_the_tree_when_it_is_cheaper() {
        // One rank per node on 64 nodes: ring 126 steps, tree 2*6 steps.
        let g = Group { ranks: 64, nodes: 64, per_node: 1 };
        let t = time_s(&hw(), CollectiveKind::AllReduce, 1e3, g);
        let tree = 2.0 * 6.0 * 3e-6 + 2.0 * 1e3 / 1e9;
        assert!((t - tree).abs() < 1e-12, "{t} vs {tree}");
    }
}
