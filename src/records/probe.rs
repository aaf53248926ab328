//! What `shardsweep probe` writes in a point's folder (`probe.json` for the trained encoder,
//! `probe-random-init.json` for its initialisation), and the report reads.

use serde::{Deserialize, Serialize};

/// How an image becomes one feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// The cls token (MAE's linear-probe default).
    Cls,
    /// The mean of the patch tokens.
    Mean,
}

impl Pool {
    pub fn name(self) -> &'static str {
        match self {
            Pool::Cls => "cls",
            Pool::Mean => "mean",
        }
    }
}

/// Which parameters the probed encoder has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoder {
    /// The point's final parameters (`parameters.h5`).
    Pretrained,
    /// The initialisation training starts from, with the point's seed: the baseline.
    RandomInit,
}

impl Encoder {
    /// The file its probe writes in the point's folder.
    pub fn result_file(self) -> &'static str {
        match self {
            Encoder::Pretrained => "probe.json",
            Encoder::RandomInit => "probe-random-init.json",
        }
    }
}

/// A linear probe's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeResult {
    pub point: String,
    pub model: String,
    pub encoder: Encoder,
    pub pool: Pool,
    pub data: String,
    pub classes: usize,
    pub train_images: usize,
    pub val_images: usize,
    pub feature_dim: i64,
    pub epochs: u32,
    pub lr: f64,
    /// Share of val images whose label is the top score, and among the top five.
    pub top1: f64,
    pub top5: f64,
    pub train_top1: f64,
}
