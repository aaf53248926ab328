//! Compute per FSDP unit: the engine's units (the root, one per encoder block, one per decoder
//! block; `model::mae`), their parameters, forward FLOPs per image and the time they take.

use crate::model::{block_params, ModelConfig};

/// One FSDP unit as the performance model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Trainable parameters (elements) of the unit's flat parameter.
    pub params: f64,
    /// Forward FLOPs per image (matmuls, 2 per multiply-add).
    pub forward_flop: f64,
    /// Width of the GEMMs the unit runs (what its efficiency depends on).
    pub width: f64,
    /// The root is gathered once per step and never resharded after forward.
    pub is_root: bool,
}

/// The units of `model` in forward order: root, encoder blocks, decoder blocks. Parameter and
/// FLOP counts follow `ModelConfig` (the root holds patch embedding, tokens, norms, decoder
/// embedding and prediction head; MAE's position embeddings are fixed and not counted).
pub fn units(model: &ModelConfig) -> Vec<Unit> {
    let (d, e) = (model.width, model.decoder_width);
    let np = model.patches() as f64;
    let nv = model.visible_patches() as f64 + 1.0;
    let block_flop = |tokens: f64, w: f64, m: f64| {
        2.0 * tokens * (4.0 * w * w + 2.0 * w * m) + 4.0 * tokens * tokens * w
    };
    let root_params = model.root_params() as f64;
    let pd = model.patch_dim() as f64;
    let root_flop =
        2.0 * np * pd * d as f64 + 2.0 * nv * (d * e) as f64 + 2.0 * (np + 1.0) * e as f64 * pd;
    let mut out = vec![Unit {
        params: root_params,
        forward_flop: root_flop,
        width: d.min(e) as f64,
        is_root: true,
    }];
    for _ in 0..model.depth {
        out.push(Unit {
            params: block_params(d, model.mlp) as f64,
            forward_flop: block_flop(nv, d as f64, model.mlp as f64),
            width: d as f64,
            is_root: false,
        });
    }
    for _ in 0..model.decoder_depth {
        out.push(Unit {
            params: block_params(e, model.decoder_mlp) as f64,
            forward_flop: block_flop(np + 1.0, e as f64, model.decoder_mlp as f64),
            width: e as f64,
            is_root: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::preset;

    #[test]
    fn units_add_up_to_the_model() {
        for name in ["vit-tiny", "vit-base", "vit-15b"] {
            let m = preset(name).unwrap();
            let u = units(&m);
            assert_eq!(u.len() as i64, 1 + m.depth + m.decoder_depth);
            let params: f64 = u.iter().map(|u| u.params).sum();
            assert_eq!(params, m.trainable_params() as f64, "{name}");
            let flop: f64 = u.iter().map(|u| u.forward_flop).sum();
            let want = m.forward_flop_per_image();
            assert!((flop - want).abs() / want < 1e-9, "{name}: {flop} vs {want}");
        }
    }
}
