//! The C ABI of src/shim.cpp. Each fallible call returns 0, or non-zero with a message in `err`
//! that [`check`] frees with `cbq_free_error`.

use std::ffi::{c_char, c_int, c_void};

use torch_sys::C_tensor;

extern "C" {
    pub fn cbq_has_op(name: *const c_char) -> c_int;
    pub fn cbq_linear_prepack(
        qweight: *const C_tensor,
        bias: *const C_tensor,
        out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbq_linear_dynamic(
        x: *const C_tensor,
        packed: *mut c_void,
        reduce_range: c_int,
        out: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbq_free_packed(packed: *mut c_void);
    fn cbq_free_error(err: *mut c_char);
}

/// Runs one shim call; on failure returns the shim's message (and frees it).
pub fn check(call: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<(), String> {
    convbert_build::shim::check(call, cbq_free_error)
}
