//! One point of a sweep, fully resolved: everything a rank needs to train it, and nothing that
//! depends on where it runs. It travels to the ranks as `point.json`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::experiment::{
    Backend, DataSource, Fault, OptimizerSettings, Settings, Strategy, Timing,
};
use crate::model::ModelConfig;
use crate::records::{self, RecordError};
pub use crate::records::{ParallelSpec, SystemSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    pub sweep: String,
    pub id: String,
    pub model: ModelConfig,
    pub strategy: Strategy,
    pub parallel: ParallelSpec,
    pub nodes: u32,
    pub ranks_per_node: u32,
    pub micro_batch: u32,
    /// Written only when not synthetic, so points from before the axis keep their digests.
    #[serde(default, skip_serializing_if = "DataSource::is_synthetic")]
    pub data: DataSource,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub loader_workers: u32,
    pub settings: Settings,
    pub optimizer: OptimizerSettings,
    /// A failure planted by a `[[fault]]` rule (tests of the harness itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// The system the point is submitted to, with the peak its MFU is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemSpec>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl PointSpec {
    /// The collective library the ranks use: the setting, else the device's default.
    pub fn backend(&self) -> Backend {
        self.settings.backend.unwrap_or(Backend::default_for(self.settings.device))
    }

    /// How steps are timed: the setting, else the device's default.
    pub fn timing(&self) -> Timing {
        self.settings.timing.unwrap_or(Timing::default_for(self.settings.device))
    }

    pub fn world_size(&self) -> u32 {
        self.nodes * self.ranks_per_node
    }

    /// Ranks sharding each unit: [`Strategy::shard_group`] of the point's layout and its
    /// `shard_group` (at least 1).
    pub fn shard_ranks(&self) -> u32 {
        let chosen = self.parallel.shard_group;
        self.strategy.shard_group(self.world_size(), self.ranks_per_node, chosen).max(1)
    }

    /// Ranks holding copies of the same shard (the all-reduce group of the hybrid strategies).
    pub fn replicas(&self) -> u32 {
        self.world_size() / self.parallel.shard_group.max(1)
    }

    /// Images per optimizer step over all ranks.
    pub fn global_batch(&self) -> u32 {
        self.world_size() * self.micro_batch * self.parallel.accumulation
    }

    /// Peak learning rate, scaled with the global batch as in MAE.
    pub fn peak_lr(&self) -> f64 {
        self.optimizer.base_lr * f64::from(self.global_batch()) / 256.0
    }

    /// Model FLOPs of one training step over all ranks.
    pub fn train_flop_per_step(&self) -> f64 {
        self.model.train_flop_per_image() * f64::from(self.global_batch())
    }

    /// A digest of everything that defines the point; a finished point whose digest differs
    /// was run with other settings.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).expect("a point serialises");
        sha256_hex(&json)[..16].to_string()
    }
}

/// The SHA-256 of `bytes` in lower-case hex (point digests, batch-script hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the point a folder is for (`point.json`), which the worker and the supervisor read.
pub fn write_point(dir: &std::path::Path, point: &PointSpec) -> Result<(), RecordError> {
    records::write_json(&dir.join(records::POINT_FILE), point)
}

/// The point a folder is for, as [`write_point`] left it.
pub fn read_point(dir: &std::path::Path) -> Result<PointSpec, RecordError> {
    records::read_json(&dir.join(records::POINT_FILE))
}
