//! The model under study: a ViT encoder with an MAE decoder (He et al. 2021), as used by
//! Tsaris et al. 2024. This module knows nothing of sharding, timing or communication: it
//! describes parameter layouts per unit and computes forward passes from flat parameters.

mod layout;
mod mae;
mod presets;

pub use layout::{init_unit, ParamSpec, UnitLayout, UnitViews};
pub use mae::{Mae, Masked, ParamSource, Stage};
pub use presets::{block_params, preset, preset_names, ModelConfig, PRESETS};
