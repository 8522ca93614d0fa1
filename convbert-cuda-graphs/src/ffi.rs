//! The C ABI of src/shim.cpp (the `cuda` feature). Each fallible call returns 0, or non-zero
//! with a message in `err` that [`check`] frees with `cbg_free_error`.

use std::ffi::{c_char, c_int, c_void};

use torch_sys::C_tensor;

/// The forward the shim captures: 0 on success; `keep` is 0 for warm-up runs.
pub type Forward = extern "C" fn(ctx: *mut c_void, keep: c_int) -> c_int;

extern "C" {
    pub fn cbg_device_count() -> c_int;
    pub fn cbg_runner_new(device: c_int, out: *mut *mut c_void, err: *mut *mut c_char) -> c_int;
    pub fn cbg_runner_free(runner: *mut c_void);
    pub fn cbg_capture(
        runner: *mut c_void,
        warmups: c_int,
        forward: Forward,
        ctx: *mut c_void,
        graph_out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbg_replay(graph: *mut c_void, err: *mut *mut c_char) -> c_int;
    pub fn cbg_graph_free(graph: *mut c_void);
    pub fn cbg_upload(dst: *mut C_tensor, data: *const i64, n: i64, err: *mut *mut c_char)
        -> c_int;
    fn cbg_free_error(err: *mut c_char);
}

/// The shim's message in `err` (null: none), freed.
///
/// # Safety
/// `err` is null or a message this shim wrote, not freed yet.
pub unsafe fn take_error(err: *mut c_char) -> String {
    // SAFETY: the caller's contract, and the message came from this shim.
    unsafe { convbert_build::shim::take_error(err, cbg_free_error) }
}

/// Runs one shim call; on failure returns the shim's message.
pub fn check(call: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<(), String> {
    convbert_build::shim::check(call, cbg_free_error)
}
