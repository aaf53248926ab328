use super::{Comm, CommError};
use tch::Tensor;

/// A world of one rank: every collective is the identity (a copy, like a real reduction).
#[derive(Debug, Default, Clone, Copy)]
pub struct SelfComm;

impl Comm for SelfComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, input: &Tensor) -> Result<Tensor, CommError> {
        Ok(input.copy())
    }
    fn all_gather(&self, shard: &Tensor) -> Result<Tensor, CommError> {
        Ok(shard.copy())
    }
    fn reduce_scatter_sum(&self, input: &Tensor) -> Result<Tensor, CommError> {
        Ok(input.copy())
    }
    fn split(&self, _color: u32, _key: u32) -> Box<dyn Comm> {
        Box::new(SelfComm)
    }
    fn barrier(&self) {}
    fn library_version(&self) -> String {
        "self (single rank, no communication)".into()
    }
}
