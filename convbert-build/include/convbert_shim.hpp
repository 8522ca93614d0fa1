// What every ConvBERT C++ shim over libtorch needs at its C ABI boundary: unwinding through
// `extern "C"` into Rust is undefined behaviour, so each entry point runs its body in `guarded`,
// which turns any C++ exception into a non-zero return and a malloc'd message (the shim's own
// `*_free_error` frees it; the Rust side reads it into its error type).
#pragma once

#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace convbert_shim {

inline char* dup_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

// Runs `body` with autograd off (the shims' in-place collectives and inference GEMMs must not
// be recorded); 0 on success, else 1 with `*err` set.
template <typename F>
int guarded(char** err, F&& body) {
  try {
    c10::AutoGradMode no_grad(false);
    body();
    return 0;
  } catch (const c10::Error& e) {
    // what() appends a C++ backtrace; the message alone is what a user can act on.
    *err = dup_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    *err = dup_message(e.what());
  } catch (...) {
    *err = dup_message("unknown C++ exception");
  }
  return 1;
}

}  // namespace convbert_shim
