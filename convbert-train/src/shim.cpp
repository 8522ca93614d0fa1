// C ABI over the multi-tensor kernels of torch.optim.AdamW(fused=True) and of
// torch.nn.utils.clip_grad_norm_'s foreach path (torch 2.11: torch/optim/adam.py `_fused_adam`,
// torch/nn/utils/clip_grad.py): a handful of launches per step whatever the parameter count.
// tch binds none of these ops.
//
// Tensor lists cross as arrays of tch's `C_tensor*` (each an `at::Tensor*`); the in-place ops
// write through the shared storages. Every entry point runs in convbert_shim::guarded, so a C++
// exception becomes a non-zero return and a malloc'd message freed with cbt_free_error.

#include <ATen/ATen.h>

#include "convbert_shim.hpp"

#include <cstddef>
#include <cstdlib>
#include <vector>

namespace {

using convbert_shim::guarded;

std::vector<at::Tensor> list(const at::Tensor* const* tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(*tensors[i]);
  }
  return out;
}

}  // namespace

extern "C" {

// One AdamW step of a parameter group, as torch's `_fused_adam` with decoupled weight decay:
// the f32 step counters += 1, `_fused_adamw_`, and when `found_inf` (an f32 scalar on the
// group's device, 1 for a skipped step) is given the kernel skips the update and the counters
// are taken back by it, all on the device.
int cbt_fused_adamw(const at::Tensor* const* params, const at::Tensor* const* grads,
                    const at::Tensor* const* exp_avgs, const at::Tensor* const* exp_avg_sqs,
                    const at::Tensor* const* steps, size_t n, double lr, double beta1,
                    double beta2, double weight_decay, double eps, const at::Tensor* found_inf,
                    char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> p = list(params, n), g = list(grads, n), m = list(exp_avgs, n),
                            v = list(exp_avg_sqs, n), s = list(steps, n);
    std::optional<at::Tensor> inf;
    if (found_inf != nullptr) {
      inf = *found_inf;
    }
    at::_foreach_add_(s, 1);
    at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, s, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, inf);
    if (inf.has_value()) {
      at::_foreach_add_(s, *inf, /*alpha=*/-1);
    }
  });
}

// The L2 norm of each tensor (`_foreach_norm`), stacked into *out (n,).
int cbt_foreach_norm(const at::Tensor* const* tensors, size_t n, at::Tensor** out, char** err) {
  return guarded(err, [&] {
    *out = new at::Tensor(at::stack(at::_foreach_norm(list(tensors, n), 2)));
  });
}

// Every tensor multiplied in place by the scalar tensor `factor` (`_foreach_mul_.Tensor`).
int cbt_foreach_mul_(const at::Tensor* const* tensors, size_t n, const at::Tensor* factor,
                     char** err) {
  return guarded(err, [&] { at::_foreach_mul_(list(tensors, n), *factor); });
}

// Drops the gradient of every tensor, as `zero_grad(set_to_none=True)`: no kernel, and the next
// backward hands each parameter its gradient buffer instead of adding it into zeros.
int cbt_clear_grads(const at::Tensor* const* tensors, size_t n, char** err) {
  return guarded(err, [&] {
    for (size_t i = 0; i < n; ++i) {
      tensors[i]->mutable_grad().reset();
    }
  });
}

void cbt_free_error(char* err) { std::free(err); }

}  // extern "C"
