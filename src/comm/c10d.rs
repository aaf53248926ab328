//! libtorch's c10d process groups (ProcessGroupGloo; ProcessGroupNCCL, RCCL in ROCm builds,
//! with the `cuda` feature) behind [`Comm`], through the C++ shim in `c10d_shim.cpp`. Every
//! collective is non-blocking in c10d: it returns a work handle, and [`Pending::wait`] is the
//! handle's `wait()`. Ranks meet through a `TCPStore` that rank 0 hosts.

use std::ffi::{c_int, CString};

use tch::Tensor;

use super::{C10dBackend, Comm, CommError, Pending, StreamTime};
use crate::ffi::c10d::*;

/// The shim's last error on this thread.
fn last_error(op: &'static str) -> CommError {
    CommError::Backend { op, message: crate::ffi::last_error() }
}

/// A c10d process group (one rank's end of it).
pub struct C10dComm {
    raw: *mut RawGroup,
    backend: C10dBackend,
}

impl C10dComm {
    /// Rank `rank` of `size` joins the group whose `TCPStore` rank 0 hosts at `host:port`
    /// (rank 0 waits for every rank to connect). Collectives fail after `timeout_ms`.
    ///
    /// # Errors
    /// [`CommError::Backend`] with c10d's message (store unreachable, timeout, backend not built).
    pub fn connect(
        backend: C10dBackend,
        host: &str,
        port: u16,
        rank: usize,
        size: usize,
        timeout_ms: i64,
    ) -> Result<Self, CommError> {
        let host = CString::new(host).map_err(|_| CommError::Backend {
            op: "connect",
            message: format!("host {host:?} holds a NUL byte"),
        })?;
        // SAFETY: `host` is a valid C string for the call's duration.
        let raw = unsafe {
            ss_group_new_tcp(
                backend as i32,
                host.as_ptr(),
                port,
                rank as c_int,
                size as c_int,
                timeout_ms,
            )
        };
        if raw.is_null() {
            return Err(last_error("connect"));
        }
        Ok(Self { raw, backend })
    }

    /// Starts `op` on `output` and `input`; the returned handle keeps both tensors (and so
    /// their storage) alive until the collective has completed.
    fn start(
        &self,
        name: &'static str,
        op: unsafe extern "C" fn(*mut RawGroup, *const RawTensor, *const RawTensor) -> *mut RawWork,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<Box<dyn Pending>, CommError> {
        // SAFETY: the group is live; both pointers are tch's live `at::Tensor*`.
        let work = unsafe { op(self.raw, output.as_ptr(), input.as_ptr()) };
        if work.is_null() {
            return Err(last_error(name));
        }
        Ok(Box::new(Work {
            raw: work,
            op: name,
            _buffers: (input.shallow_clone(), output.shallow_clone()),
        }))
    }
}

impl Drop for C10dComm {
    fn drop(&mut self) {
        // SAFETY: created by the shim, shut down and freed once.
        if unsafe { ss_group_free(self.raw) } != 0 {
            tracing::warn!("{}", last_error("shutdown"));
        }
    }
}

/// A c10d work handle and the tensors it reads and writes.
struct Work {
    raw: *mut RawWork,
    op: &'static str,
    _buffers: (Tensor, Tensor),
}

impl Pending for Work {
    /// Waits for the collective and lets go of its tensors. A failed collective (a peer gone,
    /// c10d's timeout) panics with c10d's message, as libtorch errors do in tch: the rank
    /// records it and stops. An NCCL collective's start and end events stay to be read.
    fn wait(self: Box<Self>) -> Option<Box<dyn StreamTime>> {
        let mut this = self;
        let (raw, op) = (std::mem::replace(&mut this.raw, std::ptr::null_mut()), this.op);
        // SAFETY: the handle came from the shim and is waited once, then freed once (here, by
        // `wait_raw` on failure, or by `Timed`'s drop).
        let waited = unsafe { wait_raw(raw, op) };
        // Only now may the tensors go: on the CPU the collective is done with them; on a GPU
        // the current stream is ordered after it, and the caching allocator hands their memory
        // only to work queued on that stream from now on.
        drop(this);
        if let Err(error) = waited {
            panic!("{error}");
        }
        // SAFETY: a live, waited handle.
        if unsafe { ss_work_timed(raw) } != 0 {
            return Some(Box::new(Timed { raw, op }));
        }
        // SAFETY: waited above, freed once.
        unsafe { ss_work_free(raw) };
        None
    }
}

/// Waits for `raw`; on failure frees it and returns c10d's message.
///
/// # Safety
/// `raw` is a live handle from the shim, not waited before.
unsafe fn wait_raw(raw: *mut RawWork, op: &'static str) -> Result<(), CommError> {
    if ss_work_wait(raw) != 0 {
        let error = last_error(op);
        ss_work_free(raw);
        return Err(error);
    }
    Ok(())
}

impl Drop for Work {
    /// The memory must outlive the collective: dropping without waiting waits.
    fn drop(&mut self) {
        if !self.raw.is_null() {
            // SAFETY: as in `wait`; errors here have no one to report to but the log.
            match unsafe { wait_raw(self.raw, self.op) } {
                // SAFETY: waited, freed once.
                Ok(()) => unsafe { ss_work_free(self.raw) },
                Err(error) => tracing::error!("{error}"),
            }
        }
    }
}

/// A waited NCCL collective's start and end events on NCCL's stream.
struct Timed {
    raw: *mut RawWork,
    op: &'static str,
}

impl StreamTime for Timed {
    fn stream_s(&self) -> Result<f64, CommError> {
        let mut ms = 0.0;
        // SAFETY: a live, waited handle; `ms` is a valid out-pointer.
        if unsafe { ss_work_duration_ms(self.raw, &mut ms) } != 0 {
            return Err(last_error(self.op));
        }
        Ok(ms / 1e3)
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        // SAFETY: waited by `Work::wait`, freed once here.
        unsafe { ss_work_free(self.raw) }
    }
}

impl Comm for C10dComm {
    fn rank(&self) -> usize {
        // SAFETY: live group.
        unsafe { ss_group_rank(self.raw) as usize }
    }

    fn size(&self) -> usize {
        // SAFETY: live group.
        unsafe { ss_group_size(self.raw) as usize }
    }

    fn all_reduce_sum(&self, input: &Tensor, output: &Tensor) -> Result<(), CommError> {
        self.start_all_reduce_sum(input, output)?.wait();
        Ok(())
    }

    fn all_gather(&self, shard: &Tensor, output: &Tensor) -> Result<(), CommError> {
        self.start_all_gather(shard, output)?.wait();
        Ok(())
    }

    fn reduce_scatter_sum(&self, input: &Tensor, output: &Tensor) -> Result<(), CommError> {
        self.start_reduce_scatter_sum(input, output)?.wait();
        Ok(())
    }

    fn start_all_gather(
        &self,
        shard: &Tensor,
        output: &Tensor,
    ) -> Result<Box<dyn Pending>, CommError> {
        self.start("all_gather", ss_all_gather, shard, output)
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
        self.start("reduce_scatter", ss_reduce_scatter, input, output)
    }

    fn start_all_reduce_sum(
        &self,
        input: &Tensor,
        output: &Tensor,
    ) -> Result<Box<dyn Pending>, CommError> {
        self.start("all_reduce", ss_all_reduce, input, output)
    }

    fn all_reduce_output(&self, input: &Tensor) -> Tensor {
        input.shallow_clone()
    }

    fn split(&self, color: u32, key: u32) -> Box<dyn Comm> {
        // SAFETY: live group; every rank calls split in the same order (the trait's contract).
        let raw = unsafe { ss_group_split(self.raw, color, key) };
        if raw.is_null() {
            panic!("{}", last_error("split"));
        }
        Box::new(C10dComm { raw, backend: self.backend })
    }

    fn barrier(&self) {
        // SAFETY: live group.
        let work = unsafe { ss_barrier(self.raw) };
        if work.is_null() {
            panic!("{}", last_error("barrier"));
        }
        // SAFETY: a handle from the shim, waited and freed once.
        if let Err(error) = unsafe { wait_raw(work, "barrier") } {
            panic!("{error}");
        }
        // SAFETY: waited, freed once.
        unsafe { ss_work_free(work) }
    }

    fn library_version(&self) -> String {
        format!("c10d {} (libtorch {})", self.backend.name(), env!("SHARDSWEEP_LIBTORCH_VERSION"))
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;

    /// A one-rank group of `backend` on a free port of this host.
    fn alone(backend: C10dBackend) -> C10dComm {
        let port = crate::launch::free_port().unwrap();
        C10dComm::connect(backend, "127.0.0.1", port, 0, 1, 60_000).unwrap()
    }

    /// Gloo runs collectives on host threads: its wait hands back no stream time rather than
    /// a made-up one.
    #[cfg(feature = "gloo")]
    #[test]
    fn gloo_claims_no_stream_time() {
        let gloo = alone(C10dBackend::Gloo);
        let t = Tensor::ones([1024], (Kind::Float, Device::Cpu));
        let out = t.zeros_like();
        assert!(gloo.start_all_gather(&t, &out).unwrap().wait().is_none());
        assert_eq!(f64::try_from(out.sum(Kind::Double)).unwrap(), 1024.0);
    }

    /// With a GPU: an NCCL all-gather's wait hands back its time on NCCL's stream, readable
    /// once the device is done, and the group goes at the end without bringing the process
    /// down (without a GPU there is nothing to run NCCL on).
    #[cfg(shardsweep_nccl)]
    #[test]
    fn nccl_keeps_its_stream_time() {
        if !tch::Cuda::is_available() {
            crate::metrics::assert_no_gpu_required();
            return;
        }
        let nccl = alone(C10dBackend::Nccl);
        let t = Tensor::ones([1 << 24], (Kind::Float, Device::Cuda(0)));
        let out = t.zeros_like();
        let stream =
            nccl.start_all_gather(&t, &out).unwrap().wait().expect("NCCL times its stream");
        tch::Cuda::synchronize(0);
        let seconds = stream.stream_s().unwrap();
        assert!(seconds > 0.0 && seconds < 10.0, "{seconds}");
        assert_eq!(f64::try_from(out.sum(Kind::Double)).unwrap(), f64::from(1 << 24));
    }
}
