//! Training data. Every image and every MAE mask is a pure function of (seed, global sample
//! index), so the same global batch is reproduced whatever the number of ranks and however the
//! batch is split among them.

mod synthetic;

pub use synthetic::SyntheticImages;
