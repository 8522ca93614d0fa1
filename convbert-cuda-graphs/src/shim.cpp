// C ABI over libtorch's CUDA graphs (at::cuda::CUDAGraph) for convbert-cuda-graphs: capture a
// forward (a Rust callback) on a side stream into one memory pool per runner, replay it, and
// copy inputs into the graphs' static buffers without a host sync.
//
// Every entry point catches all C++ exceptions (convbert_shim.hpp): a failure returns non-zero
// and a malloc'd message the caller frees with cbg_free_error. Tensors cross as tch's
// `C_tensor*`, which is an `at::Tensor*`.
//
// The shim calls no CUDA runtime function itself, and uses c10's device-generic guards and
// events rather than the inline CUDA ones: those would make the binaries link libcudart, which
// a PyPI torch keeps outside its lib folder and a libtorch zip ships under a hashed name.

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include "convbert_shim.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace {

using convbert_shim::guarded;

// CUDAGraph keeps its state protected; a capture that fails needs it to hand the graph's pool
// back exactly once, as capture_end and reset would have.
struct Graph : at::cuda::CUDAGraph {
  // capture_end, handing back what capture_begin took when it throws (an op invalidated the
  // capture). capture_end ends the stream's capture in any case, but throws from
  // cudaStreamEndCapture before it stops allocating to the pool.
  void end() {
    try {
      capture_end();
    } catch (...) {
      if (graph_ == nullptr) {
        c10::cuda::CUDACachingAllocator::endAllocateToPool(capture_dev_, mempool_id_);
      }
      if (!capture_ended_) {
        c10::cuda::CUDACachingAllocator::releasePool(capture_dev_, mempool_id_);
      }
      throw;
    }
  }

  // Ends the capture of a forward that failed. A capture that is still valid becomes a
  // (partial) graph, released with this object like any other.
  void abort() {
    try {
      end();
    } catch (...) {
    }
  }
};

// What every capture of one cache shares: the device, a side stream (graphs may not be captured
// on the default stream, and warm-up must run on the capturing stream so that per-stream state
// such as cuBLAS workspaces exists before the capture), and one memory pool. Sharing the pool is
// safe here because every replay and every read of a graph's outputs is ordered on one stream,
// and each graph's static outputs stay allocated while it lives.
struct Runner {
  c10::Device device;
  c10::Stream stream;
  c10::MempoolId_t pool;
};

}  // namespace

extern "C" {

// The forward to capture: 0 on success, else non-zero (its error stays on the Rust side).
// `keep` is 0 for warm-up runs, whose outputs the callback drops before returning.
typedef int (*cbg_forward)(void* ctx, int keep);

// Number of CUDA devices libtorch sees (0 without a driver).
int cbg_device_count() { return static_cast<int>(c10::cuda::device_count()); }

// A runner for `device`: a side stream from libtorch's pool and a fresh graph memory pool.
int cbg_runner_new(int device, void** out, char** err) {
  return guarded(err, [&] {
    auto index = static_cast<c10::DeviceIndex>(device);
    c10::DeviceGuard guard(c10::Device(c10::DeviceType::CUDA, index));
    c10::Stream stream = c10::cuda::getStreamFromPool(false, index).unwrap();
    *out = new Runner{c10::Device(c10::DeviceType::CUDA, index), stream,
                      at::cuda::graph_pool_handle()};
  });
}

void cbg_runner_free(void* runner) { delete static_cast<Runner*>(runner); }

// Runs `forward` `warmups` times, then captures one run into a new graph (*graph_out), all on
// the runner's side stream, after the work already queued on the current stream; the current
// stream then waits for the side stream. Returns 0, 1 when the shim failed (*err set) or 2 when
// the forward failed (the capture, if begun, is ended and its pool reference returned).
int cbg_capture(void* runner_ptr, int warmups, cbg_forward forward, void* ctx, void** graph_out,
                char** err) {
  auto* runner = static_cast<Runner*>(runner_ptr);
  bool forward_failed = false;
  int rc = guarded(err, [&] {
    c10::DeviceGuard device_guard(runner->device);
    c10::Stream origin = c10::cuda::getCurrentCUDAStream(runner->device.index()).unwrap();
    c10::Event inputs_ready(c10::DeviceType::CUDA);
    inputs_ready.record(origin);
    inputs_ready.block(runner->stream);
    // The current stream waits for the side stream on every path out, so that nothing the
    // warm-up or the capture read (the static inputs) is freed or reused under it.
    auto join = [&] {
      c10::Event done(c10::DeviceType::CUDA);
      done.record(runner->stream);
      done.block(origin);
    };
    auto graph = std::make_unique<Graph>();
    try {
      c10::StreamGuard stream_guard(runner->stream);
      for (int i = 0; i < warmups && !forward_failed; ++i) {
        forward_failed = forward(ctx, 0) != 0;
      }
      if (!forward_failed) {
        // Thread-local mode: other threads may use CUDA (eagerly) while this one captures.
        graph->capture_begin(runner->pool, cudaStreamCaptureModeThreadLocal);
        if (forward(ctx, 1) != 0) {
          forward_failed = true;
          graph->abort();
        } else {
          // Throws when an op invalidated the capture without failing itself.
          graph->end();
        }
      }
    } catch (...) {
      try {
        join();
      } catch (...) {
      }
      throw;
    }
    join();
    if (!forward_failed) {
      *graph_out = graph.release();
    }
  });
  if (rc != 0) {
    return 1;
  }
  return forward_failed ? 2 : 0;
}

// Replays a graph on the current stream of its device.
int cbg_replay(void* graph, char** err) {
  return guarded(err, [&] { static_cast<Graph*>(graph)->replay(); });
}

// Destroys a graph (CUDAGraph::reset: the executable graph and its pool reference).
void cbg_graph_free(void* graph) { delete static_cast<Graph*>(graph); }

// Copies `n` int64 values from host memory into the contiguous CUDA tensor `dst` on the current
// stream without waiting: through a pinned buffer of libtorch's caching host allocator, which
// keeps the buffer until the copy has run.
int cbg_upload(at::Tensor* dst, const int64_t* data, int64_t n, char** err) {
  return guarded(err, [&] {
    TORCH_CHECK(dst->is_cuda() && dst->scalar_type() == at::kLong && dst->is_contiguous() &&
                    dst->numel() == n,
                "cbg_upload: the destination is not a contiguous CUDA int64 tensor of ", n,
                " values");
    auto pinned = at::empty({n}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
    std::memcpy(pinned.data_ptr<int64_t>(), data, static_cast<size_t>(n) * sizeof(int64_t));
    dst->view({n}).copy_(pinned, /*non_blocking=*/true);
  });
}

void cbg_free_error(char* err) { std::free(err); }

}  // extern "C"
