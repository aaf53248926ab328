//! Linear probing, MAE's downstream check (facebookresearch/mae `main_linprobe.py`): the
//! encoder is frozen, each image is one feature vector (the cls token after the encoder's final
//! norm, or the mean of the patch tokens), a BatchNorm without affine parameters standardises
//! the features, and a linear classifier is trained on the train split without augmentation;
//! top-1 and top-5 accuracy are measured on the held-out split.
//!
//! With frozen features the whole train split is one batch, so BatchNorm's batch statistics are
//! the train split's mean and variance (eps 1e-6 as in MAE), used for val too. The classifier
//! starts at zero and is trained full-batch by SGD with momentum 0.9 (MAE uses LARS at batch
//! 16384, which is plain momentum SGD with a per-layer rate: one layer here).

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::data::{DataError, ImageSet, Split};
use crate::model::{init_unit, Mae};
use crate::plan::{DataSource, PointSpec};
use crate::records::{read_parameters, RecordError, PARAMETERS_FILE};
pub use crate::records::{Encoder, Pool, ProbeResult};

const BN_EPS: f64 = 1e-6;
/// Images per encoder forward pass (bounds memory, not results).
const ENCODE_BATCH: i64 = 256;

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub pool: Pool,
    pub encoder: Encoder,
    pub epochs: u32,
    pub lr: f64,
    /// An image set other than the point's own `data`.
    pub data: Option<PathBuf>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self { pool: Pool::Cls, encoder: Encoder::Pretrained, epochs: 300, lr: 0.1, data: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("point {0} trained on synthetic data: give an image set to probe on")]
    NoImageSet(String),
    #[error("{path}: the {split} split is empty")]
    EmptySplit { path: String, split: &'static str },
}

/// Probes `point`'s encoder (its folder `point_dir`) on its image set.
pub fn probe(
    point: &PointSpec,
    point_dir: &Path,
    options: &ProbeOptions,
) -> Result<ProbeResult, ProbeError> {
    let data = match (&options.data, &point.data) {
        (Some(path), _) | (None, DataSource::File(path)) => path.clone(),
        (None, DataSource::Synthetic) => return Err(ProbeError::NoImageSet(point.id.clone())),
    };
    let set = ImageSet::open(&data)?;
    let mae = Mae::new(point.model.clone(), Device::Cpu);
    let encoder_units = 1 + point.model.depth as usize;
    let units: Vec<tch::Tensor> = match options.encoder {
        Encoder::Pretrained => {
            let names: Vec<String> =
                mae.units().iter().take(encoder_units).map(|u| u.name.clone()).collect();
            let values = read_parameters(&point_dir.join(PARAMETERS_FILE), &names)?;
            values.iter().map(|v| tch::Tensor::from_slice(v)).collect()
        }
        Encoder::RandomInit => {
            // As training initialises: the seed, then every unit in order.
            tch::manual_seed(point.settings.seed as i64);
            mae.units().iter().map(init_unit).take(encoder_units).collect()
        }
    };
    let size = point.model.image_size as usize;
    let features = |split: Split| -> Result<(Tensor, Tensor), ProbeError> {
        let (images, labels) = set.tensors(split, size)?;
        if images.size()[0] == 0 {
            let split = if split == Split::Train { "train" } else { "val" };
            return Err(ProbeError::EmptySplit { path: data.display().to_string(), split });
        }
        let _guard = tch::no_grad_guard();
        let chunks: Vec<Tensor> = images
            .split(ENCODE_BATCH, 0)
            .iter()
            .map(|chunk| {
                let tokens = mae.encode(&units, chunk);
                match options.pool {
                    Pool::Cls => tokens.select(1, 0),
                    Pool::Mean => {
                        tokens.narrow(1, 1, tokens.size()[1] - 1).mean_dim(1, false, Kind::Float)
                    }
                }
            })
            .collect();
        Ok((Tensor::cat(&chunks, 0), labels))
    };
    let (train_x, train_y) = features(Split::Train)?;
    let (val_x, val_y) = features(Split::Val)?;
    let mean = train_x.mean_dim(0, true, Kind::Float);
    let std = (train_x.var_dim(0, false, true) + BN_EPS).sqrt();
    let (train_x, val_x) = ((&train_x - &mean) / &std, (&val_x - &mean) / &std);

    let classes = set.class_names.len() as i64;
    let dim = train_x.size()[1];
    let weight = Tensor::zeros([dim, classes], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let bias = Tensor::zeros([classes], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mut velocity = [weight.zeros_like(), bias.zeros_like()];
    for _ in 0..options.epochs {
        let loss = (train_x.matmul(&weight) + &bias).cross_entropy_for_logits(&train_y);
        let mut parameters = [weight.shallow_clone(), bias.shallow_clone()];
        parameters.iter_mut().for_each(Tensor::zero_grad);
        loss.backward();
        let _guard = tch::no_grad_guard();
        for (p, v) in parameters.iter_mut().zip(velocity.iter_mut()) {
            *v = &*v * 0.9 + p.grad();
            let _ = p.g_sub_(&(&*v * options.lr));
        }
    }
    let _guard = tch::no_grad_guard();
    let accuracy = |x: &Tensor, y: &Tensor, k: i64| {
        let scores = x.matmul(&weight) + &bias;
        let (_, top) = scores.topk(k.min(classes), 1, true, true);
        let hit = top.eq_tensor(&y.unsqueeze(1)).any_dim(1, false);
        hit.to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
    };
    Ok(ProbeResult {
        point: point.id.clone(),
        model: point.model.name.clone(),
        encoder: options.encoder,
        pool: options.pool,
        data: data.display().to_string(),
        classes: classes as usize,
        train_images: train_y.size()[0] as usize,
        val_images: val_y.size()[0] as usize,
        feature_dim: dim,
        epochs: options.epochs,
        lr: options.lr,
        top1: accuracy(&val_x, &val_y, 1),
        top5: accuracy(&val_x, &val_y, 5),
        train_top1: accuracy(&train_x, &train_y, 1),
    })
}
