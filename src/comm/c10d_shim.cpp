// A C interface to libtorch's c10d process groups (Gloo, and NCCL/RCCL when built with
// SHARDSWEEP_NCCL) and stores (TCPStore), for src/comm/c10d.rs. Tensors arrive as tch's
// `at::Tensor*`. Every function catches C++ exceptions: a null or non-zero result means the
// message is in ss_last_error() (per thread, defined in src/metrics/device.cpp, read by
// src/ffi.rs).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef SHARDSWEEP_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "../ffi_guard.hpp"

using shardsweep::guard;
using shardsweep::last_error;

namespace {

// Which process group: the values of `C10dBackend` in c10d.rs.
enum Backend : int32_t { kGloo = 0, kNccl = 1 };

}  // namespace

struct ss_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;
  int32_t backend;
  int rank;
  int size;
  std::chrono::milliseconds timeout;
  int splits = 0;  // how many sub-groups were split off (names their store keys)
};

struct ss_work {
  c10::intrusive_ptr<c10d::Work> work;
#ifdef SHARDSWEEP_NCCL
  // Once waited for, a timed NCCL collective's copy: WorkNCCL's copy constructor keeps its
  // start and end events and leaves out its outputs (it shares the tensor stash, which wait()
  // has already emptied), so the memory is freed while the events wait to be read
  // (ss_work_duration_ms) after the step.
  std::unique_ptr<c10d::ProcessGroupNCCL::WorkNCCL> timing;
#endif
};

namespace {

c10::intrusive_ptr<c10d::Backend> make_backend(int32_t backend,
                                               const c10::intrusive_ptr<c10d::Store>& store,
                                               int rank, int size,
                                               std::chrono::milliseconds timeout) {
  switch (backend) {
#ifdef USE_C10D_GLOO
    case kGloo: {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      // As torch.distributed does: GLOO_SOCKET_IFNAME names the interfaces, else the
      // address this host's name resolves to (loopback if it resolves to none).
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname != nullptr && *ifname != '\0') {
        std::string names(ifname);
        size_t start = 0;
        while (start <= names.size()) {
          size_t end = names.find(',', start);
          if (end == std::string::npos) end = names.size();
          options->devices.push_back(
              c10d::ProcessGroupGloo::createDeviceForInterface(names.substr(start, end - start)));
          start = end + 1;
        }
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
    }
#endif
#ifdef SHARDSWEEP_NCCL
    case kNccl: {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
      // A start event on NCCL's stream before each collective, beside the end event it always
      // records (TORCH_NCCL_ENABLE_TIMING=1), so Work::getDuration gives the kernel's time.
      // On for every group, instrumented or not: an event record and a small copy per call.
      pg->enableCollectivesTiming();
      return pg;
    }
#endif
    default:
      throw std::runtime_error("process group backend " + std::to_string(backend) +
                               " is not compiled into this build");
  }
}

// Value-initialised first: the members the build leaves in (NCCL's timing) start empty.
ss_work* wrap(c10::intrusive_ptr<c10d::Work> work) {
  auto* wrapped = new ss_work();
  wrapped->work = std::move(work);
  return wrapped;
}

}  // namespace

extern "C" {


// A TCPStore at host:port (rank 0 hosts it and waits for `size` clients), then the process
// group of all `size` ranks on it.
ss_group* ss_group_new_tcp(int32_t backend, const char* host, uint16_t port, int rank, int size,
                           int64_t timeout_ms) {
  return guard(
      [&]() -> ss_group* {
        std::chrono::milliseconds timeout(timeout_ms);
        c10d::TCPStoreOptions opts;
        opts.port = port;
        opts.isServer = rank == 0;
        opts.numWorkers = size;
        opts.waitWorkers = true;
        opts.timeout = timeout;
        auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
        // torch.distributed's default group keys its store the same way.
        c10::intrusive_ptr<c10d::Store> store =
            c10::make_intrusive<c10d::PrefixStore>("default_pg", tcp);
        auto pg = make_backend(backend, store, rank, size, timeout);
        return new ss_group{store, pg, backend, rank, size, timeout};
      },
      nullptr);
}

// The sub-group of the ranks that pass the same color, ordered by (key, rank), like
// MPI_Comm_split and ncclCommSplit. Every rank of `g` must call it, in the same order.
ss_group* ss_group_split(ss_group* g, uint32_t color, uint32_t key) {
  return guard(
      [&]() -> ss_group* {
        std::string prefix = "split" + std::to_string(g->splits++) + "/";
        std::string mine = std::to_string(color) + " " + std::to_string(key);
        g->store->set(prefix + std::to_string(g->rank),
                      std::vector<uint8_t>(mine.begin(), mine.end()));
        std::vector<std::tuple<uint32_t, int>> members;  // (key, rank) of my color
        for (int r = 0; r < g->size; ++r) {
          auto value = g->store->get(prefix + std::to_string(r));
          std::string text(value.begin(), value.end());
          auto space = text.find(' ');
          uint32_t c = static_cast<uint32_t>(std::stoul(text.substr(0, space)));
          uint32_t k = static_cast<uint32_t>(std::stoul(text.substr(space + 1)));
          if (c == color) members.emplace_back(k, r);
        }
        std::sort(members.begin(), members.end());
        int rank = 0;
        for (size_t i = 0; i < members.size(); ++i) {
          if (std::get<1>(members[i]) == g->rank) rank = static_cast<int>(i);
        }
        int size = static_cast<int>(members.size());
        c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::PrefixStore>(
            prefix + "color" + std::to_string(color) + "/", g->store);
        auto pg = make_backend(g->backend, store, rank, size, g->timeout);
        return new ss_group{store, pg, g->backend, rank, size, g->timeout};
      },
      nullptr);
}

// Shuts the group down, as torch.distributed.destroy_process_group does (NCCL: finalises and
// destroys its communicators and joins its watchdog), then frees it; 0 if the shutdown went
// well. An NCCL group is shut down but not freed: on an H200 with torch 2.11, the destructor
// of a ProcessGroupNCCL made outside torch.distributed's ProcessGroup crashed the process
// (SIGSEGV) whether or not it had been shut down, while a shut-down group left to the
// process's exit did not. A rank makes its groups once, so what is left is a few objects.
int ss_group_free(ss_group* g) {
  int rc = guard(
      [&]() {
        g->pg->shutdown();
        return 0;
      },
      1);
  if (g->backend != kNccl) {
    delete g;
  }
  return rc;
}
int ss_group_rank(const ss_group* g) { return g->rank; }
int ss_group_size(const ss_group* g) { return g->size; }

// Starts all_gather_into_tensor: every rank's `input` concatenated into `output`.
ss_work* ss_all_gather(ss_group* g, at::Tensor* output, at::Tensor* input) {
  return guard([&]() { return wrap(g->pg->_allgather_base(*output, *input)); }, nullptr);
}

// Starts reduce_scatter_tensor (sum): this rank's chunk of the sum of `input` into `output`.
ss_work* ss_reduce_scatter(ss_group* g, at::Tensor* output, at::Tensor* input) {
  return guard([&]() { return wrap(g->pg->_reduce_scatter_base(*output, *input)); }, nullptr);
}

// Starts an all-reduce (sum) of `input` into `output` (c10d reduces in place: `output` takes
// `input`'s values first unless they are the same memory).
ss_work* ss_all_reduce(ss_group* g, at::Tensor* output, at::Tensor* input) {
  return guard(
      [&]() {
        if (!output->is_same(*input) && output->data_ptr() != input->data_ptr()) {
          output->copy_(*input);
        }
        std::vector<at::Tensor> tensors{*output};
        return wrap(g->pg->allreduce(tensors));
      },
      nullptr);
}

ss_work* ss_barrier(ss_group* g) {
  return guard([&]() { return wrap(g->pg->barrier()); }, nullptr);
}

// Waits for `w` (on a GPU: makes the current stream wait for it) and lets go of its tensors.
// 0 on success. `w` stays to be read by ss_work_timed and freed by ss_work_free.
int ss_work_wait(ss_work* w) {
  return guard(
      [&]() {
        w->work->wait();
#ifdef SHARDSWEEP_NCCL
        if (auto* nccl = dynamic_cast<c10d::ProcessGroupNCCL::WorkNCCL*>(w->work.get())) {
          w->timing = std::make_unique<c10d::ProcessGroupNCCL::WorkNCCL>(*nccl);
        }
#endif
        w->work.reset();
        return 0;
      },
      1);
}

// Whether a waited `w` has its time on the backend's stream to give (NCCL's start and end events).
int ss_work_timed(const ss_work* w) {
#ifdef SHARDSWEEP_NCCL
  return w->timing != nullptr;
#else
  (void)w;
  return 0;
#endif
}

// Milliseconds from the collective's start event on its stream to its end event into *ms
// (Work::getDuration); both must have completed on the device. 0 on success.
int ss_work_duration_ms(const ss_work* w, double* ms) {
  return guard(
      [&]() -> int {
#ifdef SHARDSWEEP_NCCL
        if (w->timing != nullptr) {
          *ms = w->timing->getDuration();
          return 0;
        }
#endif
        (void)w;
        (void)ms;
        throw std::runtime_error("this collective's backend keeps no time on its stream");
      },
      1);
}

void ss_work_free(ss_work* w) { delete w; }

}  // extern "C"
