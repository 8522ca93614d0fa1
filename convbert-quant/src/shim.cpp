// C ABI over libtorch's dynamic int8 linear (quantized::linear_prepack and
// quantized::linear_dynamic, fbgemm on x86), the ops torch.ao.quantization.quantize_dynamic runs.
// tch does not bind them: they are TORCH_LIBRARY ops, reached here through the dispatcher, boxed,
// so the shim needs none of the packed-params class headers.
//
// Every entry point catches all C++ exceptions (unwinding through `extern "C"` into Rust is
// undefined behaviour): a failure returns non-zero and a malloc'd message the caller frees with
// cbq_free_error. Tensors cross as tch's `C_tensor*`, which is an `at::Tensor*`.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include "convbert_shim.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

using convbert_shim::guarded;

// By value: findSchemaOrThrow returns a handle, not a reference.
c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

}  // namespace

extern "C" {

// 1 when libtorch registers the operator `name` (overload ""), else 0.
int cbq_has_op(const char* name) {
  try {
    return c10::Dispatcher::singleton().findSchema({name, ""}).has_value() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

// quantized::linear_prepack(qweight, bias): *out is an opaque handle (the packed params, an
// IValue) freed with cbq_free_packed.
int cbq_linear_prepack(const at::Tensor* qweight, const at::Tensor* bias, void** out,
                       char** err) {
  return guarded(err, [&] {
    torch::jit::Stack stack;
    stack.emplace_back(*qweight);
    stack.emplace_back(bias != nullptr ? c10::IValue(*bias) : c10::IValue());
    op("quantized::linear_prepack").callBoxed(stack);
    if (stack.size() != 1) {
      throw std::runtime_error("quantized::linear_prepack returned " +
                               std::to_string(stack.size()) + " values, expected 1");
    }
    *out = new c10::IValue(std::move(stack[0]));
  });
}

// quantized::linear_dynamic(x, packed, reduce_range): fp32 x (..., in) -> *out fp32 (..., out).
int cbq_linear_dynamic(const at::Tensor* x, void* packed, int reduce_range, at::Tensor** out,
                       char** err) {
  return guarded(err, [&] {
    torch::jit::Stack stack;
    stack.emplace_back(*x);
    stack.emplace_back(*static_cast<c10::IValue*>(packed));
    stack.emplace_back(reduce_range != 0);
    op("quantized::linear_dynamic").callBoxed(stack);
    if (stack.size() != 1 || !stack[0].isTensor()) {
      throw std::runtime_error("quantized::linear_dynamic returned no tensor");
    }
    *out = new at::Tensor(stack[0].toTensor());
  });
}

void cbq_free_packed(void* packed) { delete static_cast<c10::IValue*>(packed); }

void cbq_free_error(char* err) { std::free(err); }

}  // extern "C"
