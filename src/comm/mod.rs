//! Collective communication between ranks. Training code talks to the [`Comm`] trait. Backends:
//! MPI (`mpi` feature; host buffers, device tensors staged through the host) and libtorch's
//! c10d process groups (`gloo` feature: Gloo; `cuda` feature: NCCL, RCCL in ROCm builds), which
//! run every collective asynchronously. [`SelfComm`] is the one-rank world for in-process use.

#[cfg(any(feature = "gloo", feature = "cuda"))]
mod c10d;
#[cfg(feature = "mpi")]
mod mpi_backend;
mod rendezvous;
mod self_comm;

#[cfg(any(feature = "gloo", feature = "cuda"))]
pub use c10d::C10dComm;
#[cfg(feature = "mpi")]
pub use mpi_backend::MpiComm;
pub use rendezvous::{Launcher, Rendezvous, RendezvousError, DEFAULT_MASTER_PORT};
pub use self_comm::SelfComm;

use tch::Tensor;

use crate::plan::Backend;

/// Which c10d process group; the values match the shim's `Backend` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum C10dBackend {
    Gloo = 0,
    Nccl = 1,
}

impl C10dBackend {
    pub fn name(self) -> &'static str {
        match self {
            C10dBackend::Gloo => "gloo",
            C10dBackend::Nccl => "nccl",
        }
    }

    /// The process group that carries `backend`'s collectives: one of c10d's, or `None` for
    /// MPI, whose ranks talk through MPI's own world. The one place a backend meets its
    /// library: a new backend is a compile error here.
    pub fn of(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Mpi => None,
            Backend::Gloo => Some(C10dBackend::Gloo),
            Backend::Nccl => Some(C10dBackend::Nccl),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommError {
    #[error("{op}: unsupported tensor kind {kind:?} (this backend reduces fp32 and gathers fp32 or bf16)")]
    UnsupportedKind { op: &'static str, kind: tch::Kind },
    #[error("{op}: {numel} elements do not split evenly over {size} ranks")]
    Uneven { op: &'static str, numel: usize, size: usize },
    #[error("{op}: {message}")]
    Backend { op: &'static str, message: String },
}

/// A group of ranks that communicate. Tensors are 1-D and contiguous; results are written into
/// `output`, which the caller allocates once and reuses (as NCCL users keep communication
/// buffers), so a collective costs no allocation.
pub trait Comm {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Element-wise sum of `input` over the group (`output` has `input`'s size).
    fn all_reduce_sum(&self, input: &Tensor, output: &Tensor) -> Result<(), CommError>;
    /// Every rank's `shard`, concatenated in rank order (`output` has size x the shard's size).
    fn all_gather(&self, shard: &Tensor, output: &Tensor) -> Result<(), CommError>;
    /// This rank's chunk of the element-wise sum of `input` over the group (`input` splits
    /// into `size` equal chunks; `output` has one chunk's size).
    fn reduce_scatter_sum(&self, input: &Tensor, output: &Tensor) -> Result<(), CommError>;
    /// Starts gathering `shard` into `output` and returns at once; the gather completes in
    /// [`Pending::wait`], and compute can run meanwhile. `shard` and `output` stay untouched by
    /// the caller until then. Backends without non-blocking collectives complete it here.
    fn start_all_gather(
        &self,
        shard: &Tensor,
        output: &Tensor,
    ) -> Result<Box<dyn Pending>, CommError> {
        self.all_gather(shard, output)?;
        Ok(Box::new(Completed))
    }
    /// Starts the reduce-scatter of [`Comm::reduce_scatter_sum`] and returns at once, as
    /// [`Comm::start_all_gather`] does.
    fn start_reduce_scatter_sum(
        &self,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<Box<dyn Pending>, CommError> {
        self.reduce_scatter_sum(input, output)?;
        Ok(Box::new(Completed))
    }
    /// Starts the all-reduce of [`Comm::all_reduce_sum`] and returns at once, as
    /// [`Comm::start_all_gather`] does.
    fn start_all_reduce_sum(
        &self,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<Box<dyn Pending>, CommError> {
        self.all_reduce_sum(input, output)?;
        Ok(Box::new(Completed))
    }
    /// Where an all-reduce of `input` should write: `input` itself where the library reduces
    /// in place (c10d's all-reduce does, and copies the input into a distinct output first),
    /// else a new tensor like it (MPI's reductions need distinct buffers).
    fn all_reduce_output(&self, input: &Tensor) -> Tensor {
        input.empty_like()
    }
    /// Sub-groups: ranks passing the same `color` form one group, ordered by `key`.
    fn split(&self, color: u32, key: u32) -> Box<dyn Comm>;
    fn barrier(&self);
    /// The communication library and its version, for provenance.
    fn library_version(&self) -> String;
}

/// A collective in flight.
pub trait Pending {
    /// Blocks until the collective has completed (on a GPU: until compute's stream waits for
    /// it). Returns its time on the backend's own stream where the backend keeps one.
    fn wait(self: Box<Self>) -> Option<Box<dyn StreamTime>>;
    /// Whether it was complete when its start returned (a backend that blocked in the start).
    fn completed(&self) -> bool {
        false
    }
}

/// A collective that completed when it was started.
pub struct Completed;

impl Pending for Completed {
    fn wait(self: Box<Self>) -> Option<Box<dyn StreamTime>> {
        None
    }
    fn completed(&self) -> bool {
        true
    }
}

/// A waited collective's time on the stream that ran it: ProcessGroupNCCL's start and end
/// events around its kernel (`Work::getDuration`), which include the kernel's wait for its
/// peers. Read it once the device has run the step's work; until then the events may not have
/// completed. Backends that run collectives on host threads (MPI, Gloo) keep none.
pub trait StreamTime {
    /// Seconds from the collective's start on its stream to its end.
    ///
    /// # Errors
    /// The backend's message (an event not yet completed, a failed collective).
    fn stream_s(&self) -> Result<f64, CommError>;
}
