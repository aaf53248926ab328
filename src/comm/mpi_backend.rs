use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};
use tch::{Device, Kind, Tensor};

use super::{Comm, CommError};

/// MPI through rsmpi. Buffers are host memory: a device tensor is copied to the host, reduced
/// and copied back, so this backend measures host-staged MPI, not GPU-aware MPI.
pub struct MpiComm {
    world: SimpleCommunicator,
}

impl MpiComm {
    pub fn new(world: SimpleCommunicator) -> Self {
        Self { world }
    }
}

/// A contiguous fp32 host copy of `t` and a view of its elements.
fn host_f32(op: &'static str, t: &Tensor) -> Result<Tensor, CommError> {
    if t.kind() != Kind::Float {
        return Err(CommError::UnsupportedKind { op, kind: t.kind() });
    }
    Ok(t.to_device(Device::Cpu).contiguous())
}

/// # Safety
/// `t` must be a contiguous fp32 CPU tensor that outlives the slice and is not aliased.
unsafe fn as_mut_slice(t: &mut Tensor) -> &mut [f32] {
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel())
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, input: &Tensor) -> Result<Tensor, CommError> {
        let mut send = host_f32("all_reduce", input)?;
        let mut recv = send.empty_like();
        // SAFETY: both are fresh contiguous fp32 CPU tensors owned here.
        let (send_slice, recv_slice) = unsafe { (as_mut_slice(&mut send), as_mut_slice(&mut recv)) };
        self.world.all_reduce_into(&*send_slice, recv_slice, SystemOperation::sum());
        Ok(recv.to_device(input.device()))
    }

    fn barrier(&self) {
        self.world.barrier();
    }

    fn library_version(&self) -> String {
        mpi::environment::library_version().unwrap_or_else(|_| "unknown MPI".into()).trim_matches(|c: char| c.is_whitespace() || c == '\0').to_string()
    }
}
