use mpi::collective::SystemOperation;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{Communicator, CommunicatorCollectives};
use tch::{Device, Kind, Tensor};

use super::{Comm, CommError};

/// MPI through rsmpi. Buffers are host memory: a device tensor is copied to the host, moved and
/// copied back, so this backend measures host-staged MPI, not GPU-aware MPI. Reductions are fp32
/// (MPI has no bf16 sum); gathers move fp32 or bf16 (as 16-bit words).
pub struct MpiComm {
    comm: SimpleCommunicator,
}

impl MpiComm {
    pub fn new(comm: SimpleCommunicator) -> Self {
        Self { comm }
    }
}

/// A contiguous host copy of `t`, checked to be one of `kinds`.
fn host(op: &'static str, t: &Tensor, kinds: &[Kind]) -> Result<Tensor, CommError> {
    if !kinds.contains(&t.kind()) {
        return Err(CommError::UnsupportedKind { op, kind: t.kind() });
    }
    Ok(t.to_device(Device::Cpu).contiguous())
}

/// # Safety
/// `t` must be a contiguous CPU tensor whose elements are `T`-sized and -aligned, that outlives
/// the slice and is not otherwise accessed meanwhile.
unsafe fn elements<T>(t: &mut Tensor) -> &mut [T] {
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, t.numel())
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    fn all_reduce_sum(&self, input: &Tensor) -> Result<Tensor, CommError> {
        let mut send = host("all_reduce", input, &[Kind::Float])?;
        let mut recv = send.empty_like();
        // SAFETY: fresh contiguous fp32 CPU tensors owned here.
        let (s, r) = unsafe { (elements::<f32>(&mut send), elements::<f32>(&mut recv)) };
        self.comm.all_reduce_into(&*s, r, SystemOperation::sum());
        Ok(recv.to_device(input.device()))
    }

    fn all_gather(&self, shard: &Tensor) -> Result<Tensor, CommError> {
        let mut send = host("all_gather", shard, &[Kind::Float, Kind::BFloat16])?;
        let mut recv = Tensor::empty([shard.numel() as i64 * self.size() as i64], (shard.kind(), Device::Cpu));
        // SAFETY: fresh contiguous CPU tensors owned here, element size matching the kind.
        unsafe {
            match shard.kind() {
                Kind::Float => self.comm.all_gather_into(&*elements::<f32>(&mut send), elements::<f32>(&mut recv)),
                _ => self.comm.all_gather_into(&*elements::<u16>(&mut send), elements::<u16>(&mut recv)),
            }
        }
        Ok(recv.to_device(shard.device()))
    }

    fn reduce_scatter_sum(&self, input: &Tensor) -> Result<Tensor, CommError> {
        let size = self.size();
        if input.numel() % size != 0 {
            return Err(CommError::Uneven { op: "reduce_scatter", numel: input.numel(), size });
        }
        let mut send = host("reduce_scatter", input, &[Kind::Float])?;
        let mut recv = Tensor::empty([(input.numel() / size) as i64], (Kind::Float, Device::Cpu));
        // SAFETY: fresh contiguous fp32 CPU tensors owned here.
        let (s, r) = unsafe { (elements::<f32>(&mut send), elements::<f32>(&mut recv)) };
        self.comm.reduce_scatter_block_into(&*s, r, SystemOperation::sum());
        Ok(recv.to_device(input.device()))
    }

    fn split(&self, color: u32, key: u32) -> Box<dyn Comm> {
        let comm = self.comm.split_by_color_with_key(Color::with_value(color as i32), key as i32).expect("every rank passes a color");
        Box::new(MpiComm { comm })
    }

    fn barrier(&self) {
        self.comm.barrier();
    }

    fn library_version(&self) -> String {
        mpi::environment::library_version().unwrap_or_else(|_| "unknown MPI".into()).trim_matches(|c: char| c.is_whitespace() || c == '\0').to_string()
    }
}
