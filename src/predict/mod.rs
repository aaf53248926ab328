//! The performance and memory model: predicts, for a point, its step time split as the records
//! split it, throughput, MFU, peak memory by category and node-hours, from the model's shapes,
//! a system's hardware figures and (optionally) a calibration fitted to measurements.
//!
//! - [`compute`]: the engine's units, their parameters and FLOPs;
//! - [`collectives`]: hierarchical latency-bandwidth costs of each collective;
//! - [`timeline`]: one step simulated unit by unit on compute and communication streams;
//! - [`memory`]: peak memory by FSDP category (the formula of [`crate::memory`], which the
//!   planner uses too);
//! - [`calibration`]: the calibration file; [`fit`]: fitting it to measurements;
//! - [`anchor`]: predictions that stand on a measurement of the same configuration;
//! - [`decision`]: the best strategy per (model, nodes) and those it cannot be told from;
//! - [`validate`]: scoring predictions against measurements they were not fitted to;
//!   [`hindcast`]: a measured sweep's points predicted as before they ran, and scored;
//! - [`measurements`]: reading measurement tables, bench tables and sweep records;
//!   [`collective_files`]: nccl-tests / rccl-tests and OSU outputs.

pub mod anchor;
pub mod calibration;
pub mod collective_files;
pub mod collectives;
pub mod compute;
pub mod decision;
pub mod fit;
pub mod hardware;
pub mod hindcast;
pub mod measurements;
mod plan_json;
/// Peak memory by FSDP category: the formula below both the planner and the model.
pub mod memory {
    pub use crate::memory::{peak, Inputs, MemoryBytes};
}
pub mod timeline;
pub mod validate;

use serde::Serialize;

pub use anchor::{AnchorPoint, Basis};
pub use calibration::Calibration;
pub use hardware::Hardware;
pub use memory::MemoryBytes;
pub use plan_json::write_plan_json;
pub use timeline::StepTimes;

use crate::plan::PointSpec;

/// Everything the model predicts for one point.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub times: StepTimes,
    pub images_per_s: f64,
    /// Model FLOP/s (3 x forward per image) over the ranks' peak, if the peak is known.
    pub mfu: Option<f64>,
    pub memory: MemoryBytes,
    /// Node-hours of the point's steps (start-up excluded).
    pub node_hours: f64,
    /// The 90% interval of `images_per_s` (see [`anchor`]).
    pub images_per_s_low: f64,
    pub images_per_s_high: f64,
    /// What the prediction stands on: a measurement of the same configuration, or the model.
    pub basis: Basis,
}

impl Prediction {
    /// The same prediction with `factor` times the throughput: every time divided by it.
    fn scaled(mut self, factor: f64) -> Self {
        let t = &mut self.times;
        for phase in [
            &mut t.data_s,
            &mut t.forward_s,
            &mut t.backward_s,
            &mut t.recompute_s,
            &mut t.exposed_all_gather_s,
            &mut t.exposed_reduce_scatter_s,
            &mut t.exposed_all_reduce_s,
            &mut t.optimizer_s,
            &mut t.step_s,
        ] {
            *phase /= factor;
        }
        self.images_per_s *= factor;
        self.mfu = self.mfu.map(|m| m * factor);
        self.node_hours /= factor;
        self
    }
}

/// The model's parameters for one system: hardware figures (calibrated or public defaults)
/// and per-model compute corrections.
#[derive(Debug, Clone)]
pub struct PerfModel {
    pub hardware: Hardware,
    pub calibration: Option<Calibration>,
    /// Peak FLOP/s per rank by compute type, for MFU.
    pub peak_flop_per_s: std::collections::BTreeMap<String, f64>,
    /// Measurements predictions stand on (the calibration's and any the user adds).
    pub anchors: Vec<AnchorPoint>,
}

impl PerfModel {
    /// The compute multiplier for `model`: fitted if the calibration saw it, else 1 (the
    /// width curve alone).
    pub fn compute_scale(&self, model: &str) -> f64 {
        self.calibration
            .as_ref()
            .and_then(|c| c.model_compute_scale.get(model).copied())
            .unwrap_or(1.0)
    }

    pub fn hardware(&self) -> &Hardware {
        self.calibration.as_ref().map(|c| &c.hardware).unwrap_or(&self.hardware)
    }

    /// The prediction for `point`: the model's, standing on the nearest measurement of the same
    /// configuration where there is one, else on the nearest sibling's (another strategy or
    /// shard group of the model), else the model's alone ([`anchor`]), with its 90% interval.
    pub fn predict(&self, point: &PointSpec) -> Prediction {
        let model = self.model_only(point);
        let calibration = self.calibration.as_ref();
        let per_doubling = calibration
            .and_then(|c| c.error_per_doubling)
            .unwrap_or(anchor::DEFAULT_ERROR_PER_DOUBLING);
        // What the prediction stands on, the configuration it measured, and the error of the
        // model's ratio between configurations (none for the same configuration).
        let (a, measured, across, basis) = if let Some(a) = anchor::nearest(&self.anchors, point) {
            let basis = Basis::Anchor {
                source: a.source.clone(),
                nodes: a.nodes,
                micro_batch: a.micro_batch,
                measured_images_per_s: a.images_per_s,
            };
            (a, a.spec(point), 0.0, basis)
        } else if let Some(s) = anchor::nearest_sibling(&self.anchors, point) {
            let across = calibration
                .and_then(|c| c.error_across_configurations)
                .unwrap_or(anchor::DEFAULT_ERROR_ACROSS_CONFIGURATIONS);
            let basis = Basis::Sibling {
                source: s.source.clone(),
                configuration: s.configuration(),
                nodes: s.nodes,
                micro_batch: s.micro_batch,
                measured_images_per_s: s.images_per_s,
            };
            (s, s.sibling_spec(point), across, basis)
        } else {
            // The model alone: its fitted error (the median absolute log error as a standard
            // deviation, x 1.4826), or a wide one uncalibrated.
            let fitted = calibration.and_then(|c| c.summary.fitted_median_abs_error);
            let sigma = fitted.map_or(UNCALIBRATED_SIGMA, |e| 1.4826 * e);
            let (low, high) = anchor::interval(model.images_per_s, sigma);
            return Prediction { images_per_s_low: low, images_per_s_high: high, ..model };
        };
        let prediction = model.scaled(a.images_per_s / self.model_only(&measured).images_per_s);
        let spread = a.spread.unwrap_or(anchor::DEFAULT_SPREAD);
        let distance = per_doubling * a.doublings(point);
        let sigma = (spread.powi(2) + across.powi(2) + distance.powi(2)).sqrt();
        let (low, high) = anchor::interval(prediction.images_per_s, sigma);
        Prediction { images_per_s_low: low, images_per_s_high: high, basis, ..prediction }
    }

    /// The physical model alone, no anchor: what calibration fits and anchors take ratios of.
    pub fn model_only(&self, point: &PointSpec) -> Prediction {
        let hw = self.hardware();
        let units = compute::units(&point.model);
        let times = timeline::simulate(point, &units, hw, self.compute_scale(&point.model.name));
        let images_per_s = f64::from(point.global_batch()) / times.step_s;
        let peak = self.peak_flop_per_s.get(point.parallel.param_dtype.name()).copied();
        let mfu = peak.map(|p| {
            images_per_s * point.model.train_flop_per_image() / (p * f64::from(point.world_size()))
        });
        let mut memory = memory::peak(point, hw.memory_overhead_fraction);
        memory.reserved_peak = memory.peak * (1.0 + hw.memory_reserved_fraction);
        let node_hours =
            f64::from(point.nodes) * times.step_s * f64::from(point.settings.steps) / 3600.0;
        let (images_per_s_low, images_per_s_high) =
            anchor::interval(images_per_s, UNCALIBRATED_SIGMA);
        Prediction {
            times,
            images_per_s,
            mfu,
            memory,
            node_hours,
            images_per_s_low,
            images_per_s_high,
            basis: Basis::Model,
        }
    }
}

/// The model's error (standard deviation of the log) with no calibration: public defaults
/// are off by tens of percent (25%: the uncalibrated Frontier profile's typical error).
pub const UNCALIBRATED_SIGMA: f64 = 0.25;
