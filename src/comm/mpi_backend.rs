//! The MPI backend (rsmpi): collectives on host buffers (device tensors staged through the
//! host); the calls training starts are non-blocking, waited for when their results are needed.

use mpi::collective::SystemOperation;
use mpi::request::StaticScope;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{Communicator, CommunicatorCollectives};
use tch::{Device, Kind, Tensor};

use super::{Comm, CommError, Pending, StreamTime};

/// MPI through rsmpi. Buffers are host memory: device tensors are staged through the host, so
/// this backend measures host-staged MPI, not GPU-aware MPI. Reductions are fp32 (MPI has no
/// bf16 sum); gathers move fp32 or bf16 (as 16-bit words).
pub struct MpiComm {
    comm: SimpleCommunicator,
}

impl MpiComm {
    pub fn new(comm: SimpleCommunicator) -> Self {
        Self { comm }
    }
}

/// `t` as contiguous host memory of one of `kinds`: itself when it already is, else a copy.
fn host(op: &'static str, t: &Tensor, kinds: &[Kind]) -> Result<Tensor, CommError> {
    if !kinds.contains(&t.kind()) {
        return Err(CommError::UnsupportedKind { op, kind: t.kind() });
    }
    if t.device() == Device::Cpu && t.is_contiguous() {
        return Ok(t.shallow_clone());
    }
    Ok(t.to_device(Device::Cpu).contiguous())
}

/// Runs `fill` on host memory for `output`: `output` itself when it is contiguous host memory,
/// else a staging tensor copied into `output` afterwards.
fn into_output(output: &Tensor, fill: impl FnOnce(&mut Tensor)) {
    if output.device() == Device::Cpu && output.is_contiguous() {
        fill(&mut output.shallow_clone());
    } else {
        let mut staging = Tensor::empty(output.size(), (output.kind(), Device::Cpu));
        fill(&mut staging);
        tch::no_grad(|| output.shallow_clone().copy_(&staging));
    }
}

fn check_numel(op: &'static str, output: &Tensor, expected: usize) -> Result<(), CommError> {
    if output.numel() != expected {
        return Err(CommError::Backend {
            op,
            message: format!("output holds {} elements, {expected} expected", output.numel()),
        });
    }
    Ok(())
}

/// A reduction writes fp32 into the output's memory directly: anything else would be
/// overrun or misread.
fn check_float(op: &'static str, output: &Tensor) -> Result<(), CommError> {
    match output.kind() {
        Kind::Float => Ok(()),
        kind => Err(CommError::UnsupportedKind { op, kind }),
    }
}

/// # Safety
/// `t` must be a contiguous CPU tensor whose elements are `T`-sized, whose storage outlives the
/// slice and is not otherwise accessed meanwhile.
unsafe fn elements<'a, T>(t: &Tensor) -> &'a mut [T] {
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, t.numel())
}

/// A non-blocking MPI collective and the tensors whose memory it reads and writes.
struct InFlight {
    finish: Option<Box<dyn FnOnce()>>,
    _buffers: (Tensor, Tensor),
}

impl Pending for InFlight {
    fn wait(self: Box<Self>) -> Option<Box<dyn StreamTime>> {
        drop(self);
        None
    }
}

impl Drop for InFlight {
    /// Completes the request before its memory can go: waiting is dropping.
    fn drop(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish();
        }
    }
}

/// The sums MPI starts without blocking.
#[derive(Clone, Copy)]
enum Reduction {
    ReduceScatter,
    AllReduce,
}

impl MpiComm {
    /// Starts an fp32 sum of `input` into `output` (`output_numel` elements), or completes it
    /// here where the output is not contiguous host memory MPI can write into.
    fn start_reduction(
        &self,
        reduction: Reduction,
        input: &Tensor,
        output: &Tensor,
        output_numel: usize,
    ) -> Result<Box<dyn Pending>, CommError> {
        let op = match reduction {
            Reduction::ReduceScatter => "reduce_scatter",
            Reduction::AllReduce => "all_reduce",
        };
        if output.device() != Device::Cpu || !output.is_contiguous() {
            match reduction {
                Reduction::ReduceScatter => self.reduce_scatter_sum(input, output)?,
                Reduction::AllReduce => self.all_reduce_sum(input, output)?,
            }
            return Ok(Box::new(super::Completed));
        }
        let send = host(op, input, &[Kind::Float])?;
        check_numel(op, output, output_numel)?;
        check_float(op, output)?;
        let recv = output.shallow_clone();
        // SAFETY: as in `start_all_gather`: the pending value owns both tensors (and so their
        // storage) until the request has completed.
        let (send_slice, recv_slice) =
            unsafe { (&*elements::<f32>(&send), elements::<f32>(&recv)) };
        let request = match reduction {
            Reduction::ReduceScatter => self.comm.immediate_reduce_scatter_block_into(
                StaticScope,
                send_slice,
                recv_slice,
                SystemOperation::sum(),
            ),
            Reduction::AllReduce => self.comm.immediate_all_reduce_into(
                StaticScope,
                send_slice,
                recv_slice,
                SystemOperation::sum(),
            ),
        };
        let finish: Box<dyn FnOnce()> = Box::new(move || {
            request.wait();
        });
        Ok(Box::new(InFlight { finish: Some(finish), _buffers: (send, recv) }))
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    fn all_reduce_sum(&self, input: &Tensor, output: &Tensor) -> Result<(), CommError> {
        let send = host("all_reduce", input, &[Kind::Float])?;
        check_numel("all_reduce", output, input.numel())?;
        // SAFETY: contiguous fp32 host tensors; input and output are distinct buffers.
        into_output(output, |recv| unsafe {
            self.comm.all_reduce_into(
                &*elements::<f32>(&send),
                elements::<f32>(recv),
                SystemOperation::sum(),
            )
        });
        Ok(())
    }

    fn all_gather(&self, shard: &Tensor, output: &Tensor) -> Result<(), CommError> {
        let send = host("all_gather", shard, &[Kind::Float, Kind::BFloat16])?;
        check_numel("all_gather", output, shard.numel() * self.size())?;
        // SAFETY: contiguous host tensors whose element size matches the kind.
        into_output(output, |recv| unsafe {
            match shard.kind() {
                Kind::Float => {
                    self.comm.all_gather_into(&*elements::<f32>(&send), elements::<f32>(recv))
                }
                _ => self.comm.all_gather_into(&*elements::<u16>(&send), elements::<u16>(recv)),
            }
        });
        Ok(())
    }

    fn start_all_gather(
        &self,
        shard: &Tensor,
        output: &Tensor,
    ) -> Result<Box<dyn Pending>, CommError> {
        if output.device() != Device::Cpu || !output.is_contiguous() {
            self.all_gather(shard, output)?;
            return Ok(Box::new(super::Completed));
        }
        let send = host("all_gather", shard, &[Kind::Float, Kind::BFloat16])?;
        check_numel("all_gather", output, shard.numel() * self.size())?;
        let recv = output.shallow_clone();
        // SAFETY: the slices outlive the request because the pending value owns both tensors
        // (and so their storage) until it has waited for the request; the caller does not touch
        // them meanwhile (the trait's contract).
        let finish: Box<dyn FnOnce()> = unsafe {
            match shard.kind() {
                Kind::Float => {
                    let request = self.comm.immediate_all_gather_into(
                        StaticScope,
                        &*elements::<f32>(&send),
                        elements::<f32>(&recv),
                    );
                    Box::new(move || {
                        request.wait();
                    })
                }
                _ => {
                    let request = self.comm.immediate_all_gather_into(
                        StaticScope,
                        &*elements::<u16>(&send),
                        elements::<u16>(&recv),
                    );
                    Box::new(move || {
                        request.wait();
                    })
                }
            }
        };
        Ok(Box::new(InFlight { finish: Some(finish), _buffers: (send, recv) }))
    }

    fn reduce_scatter_sum(&self, input: &Tensor, output: &Tensor) -> Result<(), CommError> {
        let size = self.size();
        if !input.numel().is_multiple_of(size) {
            return Err(CommError::Uneven { op: "reduce_scatter", numel: input.numel(), size });
        }
        let send = host("reduce_scatter", input, &[Kind::Float])?;
        check_numel("reduce_scatter", output, input.numel() / size)?;
        // SAFETY: contiguous fp32 host tensors; input and output are distinct buffers.
        into_output(output, |recv| unsafe {
            self.comm.reduce_scatter_block_into(
                &*elements::<f32>(&send),
                elements::<f32>(recv),
                SystemOperation::sum(),
            )
        });
        Ok(())
    }

    fn start_reduce_scatter_sum(
        &self,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<Box<dyn Pending>, CommError> {
        let size = self.size();
        if !input.numel().is_multiple_of(size) {
            return Err(CommError::Uneven { op: "reduce_scatter", numel: input.numel(), size });
        }
        self.start_reduction(Reduction::ReduceScatter, input, output, input.numel() / size)
    }

    fn start_all_reduce_sum(
        &self,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<Box<dyn Pending>, CommError> {
        self.start_reduction(Reduction::AllReduce, input, output, input.numel())
    }

    fn split(&self, color: u32, key: u32) -> Box<dyn Comm> {
        let comm = self
            .comm
            .split_by_color_with_key(Color::with_value(color as i32), key as i32)
            .expect("every rank passes a color");
        Box::new(MpiComm { comm })
    }

    fn barrier(&self) {
        self.comm.barrier();
    }

    fn library_version(&self) -> String {
        mpi::environment::library_version()
            .unwrap_or_else(|_| "unknown MPI".into())
            .trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_string()
    }
}
