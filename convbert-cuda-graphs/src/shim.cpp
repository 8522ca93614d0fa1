// C ABI over libtorch's CUDA graphs (at::cuda::CUDAGraph) for convbert-cuda-graphs: capture a
// forward (a Rust callback) on a side stream into one memory pool per runner, replay it, and
// copy inputs into the graphs' static buffers without a host sync.
//
// Every entry point catches all C++ exceptions (convbert_shim.hpp): a failure returns non-zero
// and a malloc'd message the caller frees with cbg_free_error. Tensors cross as tch's
// `C_tensor*`, which is an `at::Tensor*`.

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "convbert_shim.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace {

using convbert_shim::guarded;

// CUDAGraph keeps its pool id and capture device protected; a capture that fails before
// capture_end needs both to hand the pool back, as capture_end and reset would have.
struct Graph : at::cuda::CUDAGraph {
  c10::MempoolId_t pool_id() const { return mempool_id_; }
  c10::DeviceIndex device() const { return capture_dev_; }
};

// What every capture of one cache shares: the device, a side stream (graphs may not be captured
// on the default stream, and warm-up must run on the capturing stream so that per-stream state
// such as cuBLAS workspaces exists before the capture), and one memory pool. Sharing the pool is
// safe here because every replay and every read of a graph's outputs is ordered on one stream,
// and each graph's static outputs stay allocated while it lives.
struct Runner {
  c10::DeviceIndex device;
  c10::cuda::CUDAStream stream;
  c10::MempoolId_t pool;
};

// Ends a capture that the forward failed or invalidated and returns its pool reference. The
// graph never reached capture_end, so its own reset releases nothing.
void abort_capture(Graph& graph, const c10::cuda::CUDAStream& stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream.stream(), &status) == cudaSuccess &&
      status != cudaStreamCaptureStatusNone) {
    cudaGraph_t partial = nullptr;
    // An invalidated capture ends with an error and no graph.
    (void)cudaStreamEndCapture(stream.stream(), &partial);
    if (partial != nullptr) {
      (void)cudaGraphDestroy(partial);
    }
  }
  // The failed capture's error is not sticky: clear it so later calls do not report it.
  (void)cudaGetLastError();
  c10::cuda::CUDACachingAllocator::endAllocateToPool(graph.device(), graph.pool_id());
  c10::cuda::CUDACachingAllocator::releasePool(graph.device(), graph.pool_id());
}

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
    c10::cuda::CUDAGuard guard(index);
    auto stream = c10::cuda::getStreamFromPool(false, index);
    *out = new Runner{index, stream, at::cuda::graph_pool_handle()};
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
    c10::cuda::CUDAGuard device_guard(runner->device);
    auto origin = c10::cuda::getCurrentCUDAStream(runner->device);
    c10::cuda::CUDAEvent inputs_ready;
    inputs_ready.record(origin);
    inputs_ready.block(runner->stream);
    // The current stream waits for the side stream on every path out, so that nothing the
    // warm-up or the capture read (the static inputs) is freed or reused under it.
    auto join = [&] {
      c10::cuda::CUDAEvent done;
      done.record(runner->stream);
      done.block(origin);
    };
    auto graph = std::make_unique<Graph>();
    try {
      c10::cuda::CUDAStreamGuard stream_guard(runner->stream);
      for (int i = 0; i < warmups && !forward_failed; ++i) {
        forward_failed = forward(ctx, 0) != 0;
      }
      if (!forward_failed) {
        // Thread-local mode: other threads may use CUDA (eagerly) while this one captures.
        graph->capture_begin(runner->pool, cudaStreamCaptureModeThreadLocal);
        if (forward(ctx, 1) != 0) {
          forward_failed = true;
          abort_capture(*graph, runner->stream);
        } else {
          cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
          C10_CUDA_CHECK(cudaStreamIsCapturing(runner->stream.stream(), &status));
          if (status != cudaStreamCaptureStatusActive) {
            abort_capture(*graph, runner->stream);
            throw std::runtime_error(
                "the capture was invalidated (an operation of the forward is not capturable)");
          }
          graph->capture_end();
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
