// C ABI over libtorch's c10d (TCPStore + ProcessGroupGloo, and ProcessGroupNCCL when built with
// CONVBERT_NCCL, the `nccl` feature) for the Rust crate.
//
// Every entry point catches all C++ exceptions: unwinding through `extern "C"` into Rust is
// undefined behaviour. A failure returns non-zero and a malloc'd message the caller frees with
// cbd_free_error. Tensors arrive as tch's `C_tensor*`, which is an `at::Tensor*`.

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include "convbert_shim.hpp"
#ifdef CONVBERT_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using convbert_shim::guarded;

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;
  int world_size;
  // The CUDA device of an NCCL group (its barrier needs it); -1 for Gloo.
  int64_t cuda_device;
};

// Backend ids shared with src/ffi.rs.
constexpr int kGloo = 0;
constexpr int kNccl = 1;

void wait(const c10::intrusive_ptr<c10d::Work>& work) {
  // The Gloo context carries the group timeout, so a dead peer fails the wait instead of
  // blocking it; wait() rethrows the collective's exception.
  work->wait();
}

}  // namespace

extern "C" {

// Joins the group: a TCPStore at addr:port (served by the process with is_server != 0), under
// `prefix` when non-empty, then a Gloo (backend 0) or NCCL (1, on cuda:cuda_device) process
// group over it.
int cbd_init(const char* addr, uint16_t port, int rank, int world_size, int64_t timeout_ms,
             int is_server, const char* prefix, int backend, int cuda_device, void** out,
             char** err) {
  return guarded(err, [&] {
    const std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<std::size_t>(world_size);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    // As torch.distributed: the rank-0 server may share host:port with other stores.
    opts.multiTenant = true;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(addr, opts);
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
    }
    if (backend == kGloo) {
      // create_default honours GLOO_SOCKET_IFNAME / GLOO_DEVICE_TRANSPORT like Python does.
      auto options = c10d::ProcessGroupGloo::Options::create_default(timeout);
      auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
      *out = new Group{store, pg, world_size, -1};
      return;
    }
#ifdef CONVBERT_NCCL
    if (backend == kNccl) {
      // As torch.cuda.set_device(local_rank) before init_process_group("nccl").
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(cuda_device));
      auto options = c10d::ProcessGroupNCCL::Options::create();
      // The NCCL watchdog aborts collectives that exceed it (TORCH_NCCL_ASYNC_ERROR_HANDLING).
      options->timeout = timeout;
      auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
      pg->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda_device)));
      *out = new Group{store, pg, world_size, cuda_device};
      return;
    }
#endif
    (void)cuda_device;
    throw std::invalid_argument("backend " + std::to_string(backend) + " is not built in");
  });
}

// Sums `tensor` over all ranks in place, then divides by the world size.
int cbd_all_reduce_mean(void* group, at::Tensor* tensor, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;  // Gloo has no AVG.
    wait(g->pg->allreduce(tensors, opts));
    tensor->div_(g->world_size);
  });
}

// Overwrites `tensor` on every rank with its value on `root`.
int cbd_broadcast(void* group, at::Tensor* tensor, int root, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    wait(g->pg->broadcast(tensors, opts));
  });
}

// Gathers `input` (same shape on every rank) into `output`, shaped [world_size, ...input].
int cbd_all_gather(void* group, const at::Tensor* input, at::Tensor* output, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<Group*>(group);
    std::vector<at::Tensor> inputs{*input};
    // Views of `output`: Gloo copies each rank's part into them.
    std::vector<std::vector<at::Tensor>> outputs{output->unbind(0)};
    wait(g->pg->allgather(outputs, inputs));
  });
}

int cbd_barrier(void* group, char** err) {
  return guarded(err, [&] {
    auto* g = static_cast<Group*>(group);
    c10d::BarrierOptions opts;
    if (g->cuda_device >= 0) {
      opts.device_ids = {g->cuda_device};
    }
    wait(g->pg->barrier(opts));
  });
}

void cbd_destroy(void* group) {
  try {
    delete static_cast<Group*>(group);
  } catch (...) {
    // A destructor that throws cannot be reported from Drop; the group is gone either way.
  }
}

void cbd_free_error(char* err) {
  std::free(err);
}

}  // extern "C"
