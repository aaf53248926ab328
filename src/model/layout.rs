//! Parameter layouts. A model is a fixed sequence of units (the root, then one per transformer
//! block); each unit's parameters live in one flat 1-D tensor, in the order its layout lists
//! them. The order is fixed by construction, so every rank agrees on it without negotiation, and
//! a sharding strategy can treat a unit as one contiguous buffer.

use std::ops::Range;

use tch::{Kind, Tensor};

/// How a parameter is initialised (MAE's choices: xavier-uniform linear weights, zero biases,
/// unit norms, normal(0.02) tokens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    XavierUniform { fan_in: i64, fan_out: i64 },
    Zeros,
    Ones,
    Normal { std: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub init: Init,
}

impl ParamSpec {
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    /// Weight decay applies to tensors of two or more dimensions (MAE's `add_weight_decay`).
    pub fn decays(&self) -> bool {
        self.shape.len() >= 2
    }
}

/// The parameters of one unit, in flat order.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitLayout {
    pub name: String,
    pub params: Vec<ParamSpec>,
}

impl UnitLayout {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), params: Vec::new() }
    }

    pub fn push(&mut self, name: &str, shape: &[i64], init: Init) {
        self.params.push(ParamSpec { name: name.into(), shape: shape.to_vec(), init });
    }

    pub fn linear(&mut self, name: &str, inputs: i64, outputs: i64) {
        self.push(
            &format!("{name}.weight"),
            &[outputs, inputs],
            Init::XavierUniform { fan_in: inputs, fan_out: outputs },
        );
        self.push(&format!("{name}.bias"), &[outputs], Init::Zeros);
    }

    pub fn layer_norm(&mut self, name: &str, width: i64) {
        self.push(&format!("{name}.weight"), &[width], Init::Ones);
        self.push(&format!("{name}.bias"), &[width], Init::Zeros);
    }

    pub fn numel(&self) -> i64 {
        self.params.iter().map(ParamSpec::numel).sum()
    }

    /// The flat element ranges weight decay applies to that fall in `window` (a shard's
    /// elements, which may run into padding), counted from the window's start, in order,
    /// adjacent ones merged.
    pub fn decay_ranges(&self, window: Range<i64>) -> Vec<Range<i64>> {
        let mut ranges: Vec<Range<i64>> = Vec::new();
        let mut offset = 0;
        for p in &self.params {
            let (start, end) = (offset, offset + p.numel());
            offset = end;
            let range = start.max(window.start) - window.start..end.min(window.end) - window.start;
            match ranges.last_mut() {
                _ if !p.decays() || range.is_empty() => {}
                Some(last) if last.end == range.start => last.end = range.end,
                _ => ranges.push(range),
            }
        }
        ranges
    }
}

/// A fresh fp32 flat tensor for `layout`, initialised from the global torch generator (seed it
/// first; initialising units in a fixed order then gives identical weights on every rank).
pub fn init_unit(layout: &UnitLayout) -> Tensor {
    let flat = Tensor::zeros([layout.numel()], (Kind::Float, tch::Device::Cpu));
    tch::no_grad(|| {
        let mut offset = 0;
        for spec in &layout.params {
            let mut view = flat.narrow(0, offset, spec.numel());
            match spec.init {
                Init::XavierUniform { fan_in, fan_out } => {
                    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
                    let _ = view.uniform_(-bound, bound);
                }
                Init::Zeros => {
                    let _ = view.zero_();
                }
                Init::Ones => {
                    let _ = view.fill_(1.0);
                }
                Init::Normal { std } => {
                    let _ = view.normal_(0.0, std);
                }
            }
            offset += spec.numel();
        }
    });
    flat
}

/// Named, shaped views into a unit's flat tensor. Views share storage (and autograd history)
/// with the flat tensor, so gradients of the views land in the flat tensor's gradient.
pub struct UnitViews {
    views: Vec<(String, Tensor)>,
}

impl UnitViews {
    pub fn new(flat: &Tensor, layout: &UnitLayout) -> Self {
        // One split rather than a `narrow` per parameter: autograd then sums the pieces'
        // gradients into the flat gradient with one cat, where narrow's backward builds a
        // zero tensor of the whole unit for every parameter (backward 10x slower on vit-base).
        let mut sizes: Vec<i64> = layout.params.iter().map(|spec| spec.numel()).collect();
        let used: i64 = sizes.iter().sum();
        let padding = flat.size()[0] - used;
        if padding > 0 {
            sizes.push(padding);
        }
        let pieces = flat.split_with_sizes(sizes.as_slice(), 0);
        let views = layout
            .params
            .iter()
            .zip(pieces)
            .map(|(spec, piece)| (spec.name.clone(), piece.view(spec.shape.as_slice())))
            .collect();
        Self { views }
    }

    /// The view named `name`. Names come from the model's own layouts, so a miss is a bug.
    pub fn get(&self, name: &str) -> &Tensor {
        self.views
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("no parameter named {name} in this unit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_ranges_cover_two_dimensional_tensors_merged_when_adjacent_within_a_shard() {
        let mut layout = UnitLayout::new("unit");
        layout.linear("a", 2, 3); // weight 0..6 decays, bias 6..9 does not
        layout.push("t", &[1, 4], Init::Zeros); // 9..13
        layout.push("u", &[2, 2], Init::Zeros); // 13..17, adjacent: merged
        layout.layer_norm("n", 5); // 17..27, no decay
        assert_eq!(layout.decay_ranges(0..27), vec![0..6, 9..17]);
        // Shards of 10 (the last one runs into 3 elements of padding).
        assert_eq!(layout.decay_ranges(0..10), vec![0..6, 9..10]);
        assert_eq!(layout.decay_ranges(10..20), vec![0..7]);
        assert_eq!(layout.decay_ranges(20..30), Vec::<Range<i64>>::new());
        assert_eq!(UnitLayout::new("empty").decay_ranges(0..4), Vec::<Range<i64>>::new());
    }
}
