//! Anchored prediction: where the same configuration was measured at another node count (or
//! micro-batch), the prediction is that measurement times the model's ratio between the two
//! configurations,
//!
//!   images/s(target) = measured(anchor) x model(target) / model(anchor),
//!
//! so what the model gets wrong about a configuration's level (a strategy's real overheads, a
//! kernel the width curve misjudges) cancels, measured differences between strategies survive,
//! and the model supplies only the change: the communication that grows with the nodes. The
//! physical model stays as it is (few bounded parameters); anchors are how measurements enter.
//!
//! The uncertainty of a prediction is a log-normal interval whose width combines the anchor's
//! run-to-run spread and an extrapolation error per doubling of the distance from it, fitted by
//! `calibrate` from pairs of its own measurements (one predicted from the other); a prediction
//! with no anchor takes the model's fitted error instead.

use serde::{Deserialize, Serialize};

use crate::plan::{BackwardPrefetch, Dtype, PointSpec, Strategy};

/// A measured point that predictions of the same configuration can stand on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorPoint {
    pub model: String,
    pub strategy: Strategy,
    /// The hybrid strategies' shard group; `None` for the others, whose group follows the world.
    pub shard_group: Option<u32>,
    pub nodes: u32,
    pub ranks_per_node: u32,
    pub micro_batch: u32,
    pub accumulation: u32,
    pub activation_checkpointing: bool,
    pub backward_prefetch: BackwardPrefetch,
    pub limit_all_gathers: bool,
    pub param_dtype: Dtype,
    pub reduce_dtype: Dtype,
    /// The measured throughput (images/s over all ranks).
    pub images_per_s: f64,
    /// Relative run-to-run spread of the measurement (the standard deviation of its log),
    /// where the records give it; a table's single figure has none.
    pub spread: Option<f64>,
    /// Where the measurement came from (file and line, or the point's folder).
    pub source: String,
}

impl AnchorPoint {
    /// The anchor of `point`, measured at `images_per_s`.
    pub fn of(point: &PointSpec, images_per_s: f64, spread: Option<f64>, source: &str) -> Self {
        let k = &point.parallel;
        Self {
            model: point.model.name.clone(),
            strategy: point.strategy,
            shard_group: point.strategy.is_hybrid().then_some(k.shard_group),
            nodes: point.nodes,
            ranks_per_node: point.ranks_per_node,
            micro_batch: point.micro_batch,
            accumulation: k.accumulation,
            activation_checkpointing: k.activation_checkpointing,
            backward_prefetch: k.backward_prefetch,
            limit_all_gathers: k.limit_all_gathers,
            param_dtype: k.param_dtype,
            reduce_dtype: k.reduce_dtype,
            images_per_s,
            spread,
            source: source.into(),
        }
    }

    /// Whether `point` is this anchor's configuration, at any node count and micro-batch.
    pub fn configures(&self, point: &PointSpec) -> bool {
        let k = &point.parallel;
        self.is_sibling_of(point)
            && self.strategy == point.strategy
            && self.shard_group == point.strategy.is_hybrid().then_some(k.shard_group)
            && self.backward_prefetch == k.backward_prefetch
            && self.limit_all_gathers == k.limit_all_gathers
    }

    /// `point` moved to this anchor's node count and micro-batch: the configuration measured.
    pub fn spec(&self, point: &PointSpec) -> PointSpec {
        let mut at = point.clone();
        at.nodes = self.nodes;
        at.micro_batch = self.micro_batch;
        at.parallel.shard_group = point.strategy.shard_group(
            at.world_size(),
            at.ranks_per_node,
            point.parallel.shard_group,
        );
        at
    }

    /// Whether this anchor measured `point`'s model on the same node layout, accumulation,
    /// checkpointing and dtypes, with another strategy or shard group: a sibling whose
    /// measurement a prediction can stand on when its own configuration was never measured.
    pub fn is_sibling_of(&self, point: &PointSpec) -> bool {
        let k = &point.parallel;
        self.model == point.model.name
            && self.ranks_per_node == point.ranks_per_node
            && self.accumulation == k.accumulation
            && self.activation_checkpointing == k.activation_checkpointing
            && (self.param_dtype, self.reduce_dtype) == (k.param_dtype, k.reduce_dtype)
    }

    /// `point` moved to this sibling's strategy, shard group, node count and micro-batch.
    pub fn sibling_spec(&self, point: &PointSpec) -> PointSpec {
        let mut at = point.clone();
        at.strategy = self.strategy;
        at.parallel.backward_prefetch = self.backward_prefetch;
        at.parallel.limit_all_gathers = self.limit_all_gathers;
        at.parallel.shard_group = self.shard_group.unwrap_or(1);
        self.spec(&at)
    }

    /// The configuration measured, for a label: `full_shard`, `hybrid_shard-sg8`.
    pub fn configuration(&self) -> String {
        match self.shard_group {
            Some(g) => format!("{}-sg{g}", self.strategy.name()),
            None => self.strategy.name().into(),
        }
    }

    /// How far `point` lies from this anchor, in doublings of nodes and of micro-batch.
    pub fn doublings(&self, point: &PointSpec) -> f64 {
        let d = |a: u32, b: u32| (f64::from(a) / f64::from(b)).log2().abs();
        d(point.nodes, self.nodes) + d(point.micro_batch, self.micro_batch)
    }
}

/// The anchor a prediction of `point` stands on: the same configuration, at the same
/// micro-batch if measured, at the node count nearest in doublings (from below on a tie: the
/// smaller run is the one a user has); `None` if no anchor has the configuration.
pub fn nearest<'a>(anchors: &'a [AnchorPoint], point: &PointSpec) -> Option<&'a AnchorPoint> {
    anchors.iter().filter(|a| a.configures(point)).min_by(|a, b| {
        let key = |a: &AnchorPoint| {
            (a.micro_batch != point.micro_batch, a.doublings(point), a.nodes > point.nodes)
        };
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(ka.2.cmp(&kb.2))
    })
}

/// With no anchor of `point`'s configuration, the sibling ([`AnchorPoint::is_sibling_of`]) a
/// prediction stands on: nearest in doublings, then of the same strategy, then of the nearest
/// shard group.
pub fn nearest_sibling<'a>(
    anchors: &'a [AnchorPoint],
    point: &PointSpec,
) -> Option<&'a AnchorPoint> {
    let group = |a: &AnchorPoint| {
        let g = f64::from(a.shard_group.unwrap_or(point.parallel.shard_group).max(1));
        (g / f64::from(point.parallel.shard_group.max(1))).log2().abs()
    };
    anchors.iter().filter(|a| a.is_sibling_of(point)).min_by(|a, b| {
        let key = |a: &AnchorPoint| (a.doublings(point), a.strategy != point.strategy, group(a));
        let (ka, kb) = (key(a), key(b));
        ka.0.total_cmp(&kb.0).then(ka.1.cmp(&kb.1)).then(ka.2.total_cmp(&kb.2))
    })
}

/// What a prediction stands on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Basis {
    /// The model alone: no measurement of this configuration.
    Model,
    /// A measurement of this configuration at `nodes` and `micro_batch`, times the model's ratio.
    Anchor { source: String, nodes: u32, micro_batch: u32, measured_images_per_s: f64 },
    /// A measurement of another strategy or shard group (`configuration`) of the same model,
    /// times the model's ratio: the model supplies the difference between the configurations.
    Sibling {
        source: String,
        configuration: String,
        nodes: u32,
        micro_batch: u32,
        measured_images_per_s: f64,
    },
}

impl Basis {
    /// `model`, or `anchor:<nodes>n-mb<micro_batch>` (a table's short form).
    pub fn label(&self) -> String {
        match self {
            Basis::Model => "model".into(),
            Basis::Anchor { nodes, micro_batch, .. } => format!("anchor:{nodes}n-mb{micro_batch}"),
            Basis::Sibling { configuration, nodes, micro_batch, .. } => {
                format!("sibling:{configuration}@{nodes}n-mb{micro_batch}")
            }
        }
    }
}

/// The width of a 90% interval in standard deviations of the log error (normal quantile).
pub const Z90: f64 = 1.645;

/// Extrapolation error per doubling (standard deviation of the log) when the calibration
/// had no pair of measurements to fit it to: the 2.9% median error of linear extrapolation
/// over 1-6 doublings in the paper's sweep, rounded up.
pub const DEFAULT_ERROR_PER_DOUBLING: f64 = 0.05;

/// Error of the model's ratio between two configurations at one scale when the calibration had
/// no pair to fit it to (standard deviation of the log): strategies measured 1-6% apart where
/// the model put them within 1% (the paper's 2-node cells).
pub const DEFAULT_ERROR_ACROSS_CONFIGURATIONS: f64 = 0.05;

/// Run-to-run spread assumed for a measurement that states none (standard deviation of the
/// log): the scale of step-time spread between repeated allocations on one system.
pub const DEFAULT_SPREAD: f64 = 0.02;

/// The 90% interval of a prediction `images_per_s` whose log error has standard deviation
/// `sigma`: (low, high).
pub fn interval(images_per_s: f64, sigma: f64) -> (f64, f64) {
    let f = (Z90 * sigma).exp();
    (images_per_s / f, images_per_s * f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::measurements::point_for;
    use crate::predict::Hardware;

    fn point(strategy: Strategy, group: Option<u32>, nodes: u32, mb: u32) -> PointSpec {
        let knobs = Hardware::fallback().measurement_defaults;
        point_for("t", "vit-base", strategy, group, nodes, 8, mb, &knobs).unwrap()
    }

    #[test]
    fn the_nearest_anchor_of_the_same_configuration_is_chosen() {
        let anchors: Vec<AnchorPoint> = [
            (Strategy::FullShard, None, 1, 32),
            (Strategy::FullShard, None, 2, 32),
            (Strategy::FullShard, None, 4, 16),
            (Strategy::HybridShard, Some(2), 2, 32),
            (Strategy::HybridShard, Some(8), 2, 32),
        ]
        .into_iter()
        .map(|(s, g, n, b)| AnchorPoint::of(&point(s, g, n, b), 100.0 * f64::from(n), None, "t"))
        .collect();
        let pick =
            |s, g, n, b| nearest(&anchors, &point(s, g, n, b)).map(|a| (a.nodes, a.micro_batch));
        // Full shard's group follows the world: any node count is its configuration.
        assert_eq!(pick(Strategy::FullShard, None, 64, 32), Some((2, 32)));
        assert_eq!(pick(Strategy::FullShard, None, 1, 32), Some((1, 32)));
        // The same micro-batch first, then the nearest nodes.
        assert_eq!(pick(Strategy::FullShard, None, 4, 32), Some((2, 32)));
        assert_eq!(pick(Strategy::FullShard, None, 4, 16), Some((4, 16)));
        assert_eq!(pick(Strategy::FullShard, None, 8, 8), Some((4, 16)));
        // A hybrid group is its own configuration; none measured, no anchor.
        assert_eq!(pick(Strategy::HybridShard, Some(8), 16, 32), Some((2, 32)));
        assert_eq!(pick(Strategy::HybridShard, Some(4), 16, 32), None);
        assert_eq!(pick(Strategy::NoShard, None, 2, 32), None);
    }

    #[test]
    fn a_configuration_never_measured_stands_on_its_nearest_sibling() {
        let anchors: Vec<AnchorPoint> = [
            (Strategy::FullShard, None, 2),
            (Strategy::HybridShard, Some(2), 1),
            (Strategy::HybridShard, Some(8), 1),
        ]
        .into_iter()
        .map(|(s, g, n)| AnchorPoint::of(&point(s, g, n, 32), 100.0, None, "t"))
        .collect();
        let target = point(Strategy::HybridShard, Some(4), 2, 32);
        assert!(nearest(&anchors, &target).is_none());
        // The nearest in doublings first (full shard at 2 nodes), then strategy and group.
        assert_eq!(nearest_sibling(&anchors, &target).unwrap().configuration(), "full_shard");
        let far = point(Strategy::HybridShard, Some(16), 1, 32);
        let s = nearest_sibling(&anchors, &far).unwrap();
        assert_eq!(s.configuration(), "hybrid_shard-sg8");
        let at = s.sibling_spec(&far);
        assert_eq!((at.strategy, at.parallel.shard_group, at.nodes), (Strategy::HybridShard, 8, 1));
    }

    #[test]
    fn an_anchor_spec_is_the_measured_configuration() {
        let target = point(Strategy::FullShard, None, 64, 32);
        let anchor = AnchorPoint::of(&point(Strategy::FullShard, None, 2, 32), 1.0, None, "t");
        let at = anchor.spec(&target);
        assert_eq!((at.nodes, at.parallel.shard_group, at.micro_batch), (2, 16, 32));
        assert_eq!(anchor.doublings(&target), 5.0);
        let (low, high) = interval(100.0, 0.1);
        assert!((low * high - 1e4).abs() < 1e-6 && high > 117.0 && high < 118.0);
    }
}
