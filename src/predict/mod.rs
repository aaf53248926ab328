//! The performance and memory model: predicts, for a point, its step time split as the records
//! split it, throughput, MFU, peak memory by category and node-hours, from the model's shapes,
//! a system's hardware figures and (optionally) a calibration fitted to measurements.
//!
//! - [`compute`]: the engine's units, their parameters and FLOPs;
//! - [`collectives`]: hierarchical latency-bandwidth costs of each collective;
//! - [`timeline`]: one step simulated unit by unit on compute and communication streams;
//! - [`memory`]: peak memory by FSDP category;
//! - [`calibration`]: the calibration file; [`fit`]: fitting it to measurements;
//! - [`measurements`]: reading measurement tables, bench tables and sweep records.

pub mod calibration;
pub mod collectives;
pub mod compute;
pub mod fit;
pub mod hardware;
pub mod measurements;
pub mod memory;
pub mod timeline;

use serde::Serialize;

pub use calibration::Calibration;
pub use hardware::Hardware;
pub use memory::MemoryBytes;
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
}

/// The model's parameters for one system: hardware figures (calibrated or public defaults)
/// and per-model compute corrections.
#[derive(Debug, Clone)]
pub struct PerfModel {
    pub hardware: Hardware,
    pub calibration: Option<Calibration>,
    /// Peak FLOP/s per rank by compute type, for MFU.
    pub peak_flop_per_s: std::collections::BTreeMap<String, f64>,
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

    pub fn predict(&self, point: &PointSpec) -> Prediction {
        let hw = self.hardware();
        let units = compute::units(&point.model);
        let times = timeline::simulate(point, &units, hw, self.compute_scale(&point.model.name));
        let images_per_s = f64::from(point.global_batch()) / times.step_s;
        let peak = self.peak_flop_per_s.get(point.parallel.param_dtype.name()).copied();
        let mfu = peak.map(|p| {
            images_per_s * point.model.train_flop_per_image() / (p * f64::from(point.world_size()))
        });
        let memory = memory::peak(point, hw.memory_overhead_fraction);
        let node_hours =
            f64::from(point.nodes) * times.step_s * f64::from(point.settings.steps) / 3600.0;
        Prediction { times, images_per_s, mfu, memory, node_hours }
    }
}
