//! The C ABI of src/shim.cpp (the `cuda` feature). Each fallible call returns 0, or non-zero
//! with a message in `err` that [`check`] frees with `cbg_free_error`.

use std::ffi::{c_char, c_int, c_void, CStr};

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
pub fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return "the C++ shim failed without a message (out of memory?)".to_string();
    }
    // SAFETY: a non-null `err` is a NUL-terminated string the shim malloc'd for us.
    let message = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed once, by the allocator that made it.
    unsafe { cbg_free_error(err) };
    message
}

/// Runs one shim call; on failure returns the shim's message.
pub fn check(call: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<(), String> {
    let mut err: *mut c_char = std::ptr::null_mut();
    if call(&mut err) == 0 {
        Ok(())
    } else {
        Err(take_error(err))
    }
}
