//! `[models.NAME]`: model shapes an experiment defines for itself, beside the presets.
//!
//! ```toml
//! [models.vit-22b]            # a name of its own (a preset's name is rejected)
//! width = 6144
//! depth = 48
//! heads = 48
//! patch = 14
//! image_size = 224
//! # in_channels = 3           # bands per image (13 for Sentinel-2); patch embedding
//! #                           # [width, in_channels, patch, patch], prediction of
//! #                           # in_channels x patch x patch values per patch
//! # mlp = 24576               # default 4 x width
//! # decoder_width = 512       # MAE's default decoder: 8 blocks of width 512, MLP 2048,
//! # decoder_depth = 8         # 16 heads (facebookresearch/mae models_mae.py)
//! # decoder_mlp = 2048
//! # decoder_heads = 16
//! # mask_ratio = 0.75
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{self, ModelConfig};

/// One user-defined MAE shape: a ViT encoder and its decoder. Sizes are counts (elements,
/// blocks, heads, pixels); validated by [`problems`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShape {
    pub width: i64,
    pub depth: i64,
    pub heads: i64,
    pub patch: i64,
    pub image_size: i64,
    /// Channels (bands) of each input image; default 3 (RGB).
    #[serde(default = "in_channels")]
    pub in_channels: i64,
    /// Hidden size of each block's MLP; default 4 x width (ViT's ratio).
    #[serde(default)]
    pub mlp: Option<i64>,
    #[serde(default = "decoder_width")]
    pub decoder_width: i64,
    #[serde(default = "decoder_depth")]
    pub decoder_depth: i64,
    /// Default 4 x decoder_width.
    #[serde(default)]
    pub decoder_mlp: Option<i64>,
    #[serde(default = "decoder_heads")]
    pub decoder_heads: i64,
    /// Fraction of patches hidden from the encoder (MAE's 0.75 by default).
    #[serde(default = "mask_ratio")]
    pub mask_ratio: f64,
}

fn in_channels() -> i64 {
    3
}
fn decoder_width() -> i64 {
    512
}
fn decoder_depth() -> i64 {
    8
}
fn decoder_heads() -> i64 {
    16
}
fn mask_ratio() -> f64 {
    0.75
}

/// The models of an experiment file, by name.
pub type Models = BTreeMap<String, ModelShape>;

impl ModelShape {
    /// The configuration a point carries, named `name`.
    pub fn config(&self, name: &str) -> ModelConfig {
        ModelConfig {
            name: name.to_string(),
            image_size: self.image_size,
            channels: self.in_channels,
            patch: self.patch,
            width: self.width,
            depth: self.depth,
            mlp: self.mlp.unwrap_or(4 * self.width),
            heads: self.heads,
            decoder_width: self.decoder_width,
            decoder_depth: self.decoder_depth,
            decoder_mlp: self.decoder_mlp.unwrap_or(4 * self.decoder_width),
            decoder_heads: self.decoder_heads,
            mask_ratio: self.mask_ratio,
        }
    }
}

/// The shape called `name`: the experiment's own, else a preset.
pub fn resolve(models: &Models, name: &str) -> Option<ModelConfig> {
    models.get(name).map(|shape| shape.config(name)).or_else(|| model::preset(name))
}

/// What is wrong with the shape `name`, as (field, value, reason); empty if it can be built.
pub fn problems(name: &str, shape: &ModelShape) -> Vec<(&'static str, toml::Value, String)> {
    let mut found = Vec::new();
    if model::preset(name).is_some() {
        found.push((
            "",
            toml::Value::String(name.into()),
            "a preset has this name; choose another so the two cannot be confused".into(),
        ));
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        found.push((
            "",
            toml::Value::String(name.into()),
            "use letters, digits, '.', '_' and '-' only (it names points and folders)".into(),
        ));
    }
    let c = shape.config(name);
    // Only what the file states: a derived MLP size is never blamed.
    let sizes = [
        ("width", Some(c.width)),
        ("depth", Some(c.depth)),
        ("heads", Some(c.heads)),
        ("patch", Some(c.patch)),
        ("image_size", Some(c.image_size)),
        ("in_channels", Some(c.channels)),
        ("mlp", shape.mlp),
        ("decoder_width", Some(c.decoder_width)),
        ("decoder_depth", Some(c.decoder_depth)),
        ("decoder_mlp", shape.decoder_mlp),
        ("decoder_heads", Some(c.decoder_heads)),
    ];
    let too_small =
        sizes.into_iter().filter_map(|(field, v)| v.filter(|v| *v < 1).map(|v| (field, v)));
    for (field, value) in too_small {
        found.push((field, value.into(), "must be at least 1".into()));
    }
    if found.iter().any(|(field, ..)| !field.is_empty()) {
        return found;
    }
    // Attention splits the width into equal heads; the fixed 2-D sin-cos position embedding
    // gives a quarter of the width to each of sin/cos of rows/columns (MAE's pos_embed.py).
    for (field, width, heads) in
        [("width", c.width, c.heads), ("decoder_width", c.decoder_width, c.decoder_heads)]
    {
        if width % heads != 0 {
            found.push((field, width.into(), format!("must be divisible by its {heads} heads")));
        }
        if width % 4 != 0 {
            found.push((
                field,
                width.into(),
                "must be a multiple of 4 (2-D sin-cos position embedding)".into(),
            ));
        }
    }
    if c.image_size % c.patch != 0 {
        found.push((
            "image_size",
            c.image_size.into(),
            format!("must be a multiple of the patch size {}", c.patch),
        ));
    }
    if !(0.0..1.0).contains(&c.mask_ratio) {
        found.push(("mask_ratio", c.mask_ratio.into(), "must be in [0, 1)".into()));
    } else if c.image_size >= c.patch && c.visible_patches() < 1 {
        found.push((
            "mask_ratio",
            c.mask_ratio.into(),
            format!("leaves no visible patch of the {} per image", c.patches()),
        ));
    }
    found
}
