//! Masked autoencoder with a ViT encoder, after facebookresearch/mae `models_mae.py`:
//! pre-norm blocks (LayerNorm eps 1e-6, GELU MLP, qkv with bias), random masking by argsort of
//! per-sample noise, fixed 2-D sin-cos position embeddings, MSE loss on masked patches only.
//!
//! Units, in forward order of first use: 0 = root (patch embedding, cls and mask tokens, norms,
//! decoder embedding and prediction head), 1..=depth = encoder blocks, then the decoder blocks.

use super::layout::{Init, UnitLayout, UnitViews};
use super::presets::ModelConfig;
use tch::{Device, Kind, Tensor};

const LN_EPS: f64 = 1e-6;

/// Supplies each unit's flat parameters when the forward pass reaches it. A sharding strategy
/// implements this to gather parameters on demand; a replicated model just hands them out.
pub trait ParamSource {
    /// Flat parameters of unit `index`, ready for compute (whole, in the compute dtype).
    fn unit(&mut self, index: usize) -> Tensor;
    /// The forward pass has finished with unit `index`.
    fn release(&mut self, _index: usize) {}
}

/// One step of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Patch embedding, masking, cls token (root unit).
    Embed,
    Encoder(usize),
    /// Encoder norm, decoder embedding, mask tokens, unshuffling (root unit).
    ToDecoder,
    Decoder(usize),
    /// Decoder norm, pixel prediction, loss (root unit).
    Head,
}

/// A batch's patches and its masking, decided by noise alone.
pub struct Masked {
    pub patches: Tensor,
    pub ids_keep: Tensor,
    pub ids_restore: Tensor,
    /// 1 where a patch is masked (and so counts in the loss), in original patch order.
    pub mask: Tensor,
}

pub struct Mae {
    pub config: ModelConfig,
    units: Vec<UnitLayout>,
    encoder_pos: Tensor,
    decoder_pos: Tensor,
}

impl Mae {
    pub fn new(config: ModelConfig, device: Device) -> Self {
        let grid = config.image_size / config.patch;
        let encoder_pos = sincos_position_embedding(config.width, grid).to_device(device);
        let decoder_pos = sincos_position_embedding(config.decoder_width, grid).to_device(device);
        let units = unit_layouts(&config);
        Self { config, units, encoder_pos, decoder_pos }
    }

    /// Layouts of every unit, root first.
    pub fn units(&self) -> &[UnitLayout] {
        &self.units
    }

    /// The stages of the forward pass in order; each uses the parameters of one unit.
    pub fn stages(&self) -> Vec<Stage> {
        let (depth, decoder_depth) =
            (self.config.depth as usize, self.config.decoder_depth as usize);
        std::iter::once(Stage::Embed)
            .chain((0..depth).map(Stage::Encoder))
            .chain(std::iter::once(Stage::ToDecoder))
            .chain((0..decoder_depth).map(Stage::Decoder))
            .chain(std::iter::once(Stage::Head))
            .collect()
    }

    /// The unit whose parameters `stage` uses.
    pub fn unit_of(&self, stage: Stage) -> usize {
        match stage {
            Stage::Embed | Stage::ToDecoder | Stage::Head => 0,
            Stage::Encoder(i) => 1 + i,
            Stage::Decoder(i) => 1 + self.config.depth as usize + i,
        }
    }

    /// Patches and the masking decided by `noise` ([B, patches]; the lowest 1 - mask_ratio
    /// are kept). Nothing here depends on parameters.
    pub fn mask(&self, images: &Tensor, noise: &Tensor) -> Masked {
        let patches = self.patchify(images);
        let (batch, count, _) = patches.size3().expect("patches are [B, N, D]");
        let keep = self.config.visible_patches();
        let ids_shuffle = noise.argsort(1, false);
        let ids_restore = ids_shuffle.argsort(1, false);
        let ids_keep = ids_shuffle.narrow(1, 0, keep);
        let mask = Tensor::ones([batch, count], (Kind::Float, images.device()));
        let _ = mask.narrow(1, 0, keep).fill_(0.0);
        let mask = mask.gather(1, &ids_restore, false);
        Masked { patches, ids_keep, ids_restore, mask }
    }

    /// Runs one stage with its unit's flat parameters `params` (1-D, the layout's elements then
    /// any padding, which is ignored) on the previous stage's output
    /// `x` (none for [`Stage::Embed`]). [`Stage::Head`] returns the loss: mean squared error on
    /// the masked patches, in fp32 whatever the compute dtype.
    pub fn run(&self, stage: Stage, params: &Tensor, x: Option<&Tensor>, batch: &Masked) -> Tensor {
        let c = &self.config;
        let p = UnitViews::new(params, &self.units[self.unit_of(stage)]);
        let kind = params.kind();
        let input = || x.expect("only the embedding stage starts without input");
        match stage {
            Stage::Embed => {
                let x = batch
                    .patches
                    .to_kind(kind)
                    .linear(p.get("patch_embed.weight"), Some(p.get("patch_embed.bias")));
                let x = x + self.encoder_pos.narrow(1, 1, c.patches()).to_kind(kind);
                let kept =
                    x.gather(1, &batch.ids_keep.unsqueeze(-1).repeat([1, 1, c.width]), false);
                let cls = p.get("cls_token") + self.encoder_pos.narrow(1, 0, 1).to_kind(kind);
                Tensor::cat(&[cls.expand([kept.size()[0], 1, c.width], false), kept], 1)
            }
            Stage::Encoder(_) => self.block(&p, input(), c.heads),
            Stage::Decoder(_) => self.block(&p, input(), c.decoder_heads),
            Stage::ToDecoder => {
                // Project, fill masked positions with the mask token, unshuffle, add positions.
                let x = layer_norm(input(), &p, "norm")
                    .linear(p.get("decoder_embed.weight"), Some(p.get("decoder_embed.bias")));
                let (size, kept) = (x.size()[0], x.size()[1] - 1);
                let mask_tokens = p.get("mask_token").repeat([size, c.patches() - kept, 1]);
                let shuffled = Tensor::cat(&[x.narrow(1, 1, kept), mask_tokens], 1);
                let index = batch.ids_restore.unsqueeze(-1).repeat([1, 1, c.decoder_width]);
                let unshuffled = shuffled.gather(1, &index, false);
                Tensor::cat(&[x.narrow(1, 0, 1), unshuffled], 1) + self.decoder_pos.to_kind(kind)
            }
            Stage::Head => {
                let x = layer_norm(input(), &p, "decoder_norm");
                let prediction =
                    x.linear(p.get("decoder_pred.weight"), Some(p.get("decoder_pred.bias")));
                let prediction = prediction.narrow(1, 1, c.patches()).to_kind(Kind::Float);
                let per_patch =
                    (prediction - &batch.patches).square().mean_dim(-1, false, Kind::Float);
                (per_patch * &batch.mask).sum(Kind::Float) / batch.mask.sum(Kind::Float)
            }
        }
    }

    /// The loss of `images` under `noise`, all stages in order, units taken from `params`.
    pub fn loss(&self, params: &mut dyn ParamSource, images: &Tensor, noise: &Tensor) -> Tensor {
        let batch = self.mask(images, noise);
        let stages = self.stages();
        let mut x: Option<Tensor> = None;
        for (i, stage) in stages.iter().enumerate() {
            let unit = self.unit_of(*stage);
            let flat = params.unit(unit);
            x = Some(self.run(*stage, &flat, x.as_ref(), &batch));
            if !stages[i + 1..].iter().any(|s| self.unit_of(*s) == unit) {
                params.release(unit);
            }
        }
        x.expect("a model has stages")
    }

    /// Encoder features of unmasked `images` ([B, C, H, W]) from whole units `units` (root
    /// first, then the encoder blocks): every patch and the cls token through the encoder and its
    /// final norm, [B, 1 + patches, width] (token 0 is cls). What a linear probe reads.
    pub fn encode(&self, units: &[Tensor], images: &Tensor) -> Tensor {
        let patches = self.patchify(images);
        let (batch, count, _) = patches.size3().expect("patches are [B, N, D]");
        let all =
            Tensor::arange(count, (Kind::Int64, images.device())).unsqueeze(0).repeat([batch, 1]);
        let batch = Masked {
            patches,
            ids_keep: all.shallow_clone(),
            ids_restore: all,
            mask: Tensor::zeros([batch, count], (Kind::Float, images.device())),
        };
        let mut x = self.run(Stage::Embed, &units[0], None, &batch);
        for block in 0..self.config.depth as usize {
            x = self.run(Stage::Encoder(block), &units[1 + block], Some(&x), &batch);
        }
        layer_norm(&x, &UnitViews::new(&units[0], &self.units[0]), "norm")
    }

    /// [B, C, H, W] -> [B, patches, patch * patch * C], patches row-major, pixels (p, q, c).
    pub fn patchify(&self, images: &Tensor) -> Tensor {
        let c = &self.config;
        let (n, g, p) = (images.size()[0], c.image_size / c.patch, c.patch);
        images.reshape([n, c.channels, g, p, g, p]).permute([0, 2, 4, 3, 5, 1]).reshape([
            n,
            g * g,
            c.patch_dim(),
        ])
    }

    fn block(&self, p: &UnitViews, x: &Tensor, heads: i64) -> Tensor {
        let (b, n, d) = x.size3().expect("tokens are [B, N, D]");
        let h = layer_norm(x, p, "norm1");
        let qkv = h
            .linear(p.get("attn.qkv.weight"), Some(p.get("attn.qkv.bias")))
            .reshape([b, n, 3, heads, d / heads])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let attention = Tensor::scaled_dot_product_attention::<Tensor>(
            &q, &k, &v, None, 0.0, false, None, false,
        );
        let attention = attention.transpose(1, 2).reshape([b, n, d]);
        let x = x + attention.linear(p.get("attn.proj.weight"), Some(p.get("attn.proj.bias")));
        let h = layer_norm(&x, p, "norm2")
            .linear(p.get("mlp.fc1.weight"), Some(p.get("mlp.fc1.bias")))
            .gelu("none")
            .linear(p.get("mlp.fc2.weight"), Some(p.get("mlp.fc2.bias")));
        x + h
    }
}

fn layer_norm(x: &Tensor, p: &UnitViews, name: &str) -> Tensor {
    let weight = p.get(&format!("{name}.weight"));
    let bias = p.get(&format!("{name}.bias"));
    x.layer_norm([weight.size()[0]], Some(weight), Some(bias), LN_EPS, false)
}

fn block_layout(name: String, width: i64, mlp: i64) -> UnitLayout {
    let mut u = UnitLayout::new(name);
    u.layer_norm("norm1", width);
    u.linear("attn.qkv", width, 3 * width);
    u.linear("attn.proj", width, width);
    u.layer_norm("norm2", width);
    u.linear("mlp.fc1", width, mlp);
    u.linear("mlp.fc2", mlp, width);
    u
}

fn unit_layouts(c: &ModelConfig) -> Vec<UnitLayout> {
    let mut root = UnitLayout::new("root");
    root.linear("patch_embed", c.patch_dim(), c.width);
    root.push("cls_token", &[1, 1, c.width], Init::Normal { std: 0.02 });
    root.layer_norm("norm", c.width);
    root.linear("decoder_embed", c.width, c.decoder_width);
    root.push("mask_token", &[1, 1, c.decoder_width], Init::Normal { std: 0.02 });
    root.layer_norm("decoder_norm", c.decoder_width);
    root.linear("decoder_pred", c.decoder_width, c.patch_dim());
    let encoder = (0..c.depth).map(|i| block_layout(format!("blocks.{i}"), c.width, c.mlp));
    let decoder = (0..c.decoder_depth)
        .map(|i| block_layout(format!("decoder_blocks.{i}"), c.decoder_width, c.decoder_mlp));
    std::iter::once(root).chain(encoder).chain(decoder).collect()
}

/// Fixed 2-D sin-cos position embedding [1, 1 + grid^2, width] with a zero row for cls
/// (MAE's `get_2d_sincos_pos_embed`: half the channels encode the column, half the row).
fn sincos_position_embedding(width: i64, grid: i64) -> Tensor {
    let options = (Kind::Double, Device::Cpu);
    let axis = |positions: &Tensor| {
        let half = width / 4;
        let omega =
            (Tensor::arange(half, options) / half as f64).multiply_scalar(-(10000f64.ln())).exp();
        let angles = positions.unsqueeze(1) * omega.unsqueeze(0);
        Tensor::cat(&[angles.sin(), angles.cos()], 1)
    };
    let coords = Tensor::arange(grid * grid, options);
    let (columns, rows) =
        (coords.remainder(grid as f64), coords.divide_scalar_mode(grid as f64, "floor"));
    let embedding = Tensor::cat(&[axis(&columns), axis(&rows)], 1);
    let cls = Tensor::zeros([1, width], options);
    Tensor::cat(&[cls, embedding], 0).unsqueeze(0).to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init_unit, preset};

    struct Replicated(Vec<Tensor>);
    impl ParamSource for Replicated {
        fn unit(&mut self, index: usize) -> Tensor {
            self.0[index].shallow_clone()
        }
    }

    #[test]
    fn trainable_count_matches_instantiated_layouts() {
        for name in ["vit-tiny", "vit-mini", "vit-small-cpu", "vit-base"] {
            let config = preset(name).unwrap();
            let layouts = unit_layouts(&config);
            let total: i64 = layouts.iter().map(UnitLayout::numel).sum();
            assert_eq!(total, config.trainable_params(), "{name}");
            assert_eq!(layouts.len() as i64, 1 + config.depth + config.decoder_depth);
        }
    }

    #[test]
    fn position_embedding_matches_reference_values() {
        // MAE's numpy reference for width 8, grid 2: row 1 (patch (0,0)) is sin 0 / cos 0.
        let pos = sincos_position_embedding(8, 2);
        assert_eq!(pos.size(), [1, 5, 8]);
        let patch = |i: i64| Vec::<f32>::try_from(pos.get(0).get(i)).unwrap();
        assert_eq!(patch(0), vec![0.0; 8]);
        assert_eq!(patch(1), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        // Patch (row 0, column 1): column channels see position 1 at omega = 1 and 0.01.
        let p = patch(2);
        assert!((p[0] - 1f32.sin()).abs() < 1e-6 && (p[1] - 0.01f32.sin()).abs() < 1e-6);
        assert!((p[4]).abs() < 1e-6 && (p[6] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn masking_keeps_the_lowest_noise_and_marks_the_rest() {
        let mae = Mae::new(preset("vit-tiny").unwrap(), Device::Cpu);
        let patches = mae.config.patches();
        let x = Tensor::arange(patches, (Kind::Float, Device::Cpu)).view([1, patches, 1]);
        let noise =
            Tensor::arange(patches, (Kind::Float, Device::Cpu)).flip([0]).view([1, patches]);
        let masked = mae.mask(&Tensor::zeros([1, 3, 32, 32], (Kind::Float, Device::Cpu)), &noise);
        let (kept, mask) = (x.gather(1, &masked.ids_keep.unsqueeze(-1), false), masked.mask);
        let keep = mae.config.visible_patches();
        let kept: Vec<f32> = Vec::try_from(kept.flatten(0, -1)).unwrap();
        let expected: Vec<f32> = (0..keep).map(|i| (patches - 1 - i) as f32).collect();
        assert_eq!(kept, expected);
        assert_eq!(mask.sum(Kind::Float).double_value(&[]) as i64, patches - keep);
        assert_eq!(mask.get(0).get(patches - 1).double_value(&[]), 0.0);
    }

    #[test]
    fn patchify_orders_pixels_row_major() {
        let mae = Mae::new(preset("vit-tiny").unwrap(), Device::Cpu);
        let c = &mae.config;
        let images =
            Tensor::arange(c.channels * c.image_size * c.image_size, (Kind::Float, Device::Cpu))
                .view([1, c.channels, c.image_size, c.image_size]);
        let patches = mae.patchify(&images);
        assert_eq!(patches.size(), [1, c.patches(), c.patch_dim()]);
        // Second patch, first pixel, first channel = image[0, 0, 0, patch].
        assert_eq!(patches.get(0).get(1).get(0).double_value(&[]), c.patch as f64);
    }

    #[test]
    fn loss_is_finite_and_backpropagates_to_every_unit() {
        tch::manual_seed(0);
        let mae = Mae::new(preset("vit-tiny").unwrap(), Device::Cpu);
        let flats: Vec<Tensor> =
            mae.units().iter().map(|u| init_unit(u).set_requires_grad(true)).collect();
        let images = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let noise = Tensor::rand([2, mae.config.patches()], (Kind::Float, Device::Cpu));
        let loss = mae.loss(
            &mut Replicated(flats.iter().map(|t| t.shallow_clone()).collect()),
            &images,
            &noise,
        );
        assert!(loss.double_value(&[]).is_finite());
        loss.backward();
        for flat in &flats {
            assert!(flat.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
        }
    }
}
