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
    /// The snake_case name used on the command line and in results (`cls`).
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
    /// The probed point's name.
    pub point: String,
    /// The model's name (the point's `model` axis).
    pub model: String,
    /// Which parameters the encoder had.
    pub encoder: Encoder,
    /// How features were pooled.
    pub pool: Pool,
    /// The labelled data set probed on, as given to `probe` (a path, or `synthetic`).
    pub data: String,
    /// Number of classes (the probe's outputs).
    pub classes: usize,
    /// Images the linear classifier was trained on.
    pub train_images: usize,
    /// Images it was evaluated on (`top1`, `top5`).
    pub val_images: usize,
    /// Length of one feature vector (the encoder's embedding width).
    pub feature_dim: i64,
    /// Passes of the classifier's training over the train images.
    pub epochs: u32,
    /// The classifier's learning rate.
    pub lr: f64,
    /// Share of val images whose label gets the top score (0 to 1).
    pub top1: f64,
    /// Share of val images whose label is among the five top scores (0 to 1).
    pub top5: f64,
    /// Top-1 share on the train images (0 to 1): against `top1`, how much the probe overfits.
    pub train_top1: f64,
}
