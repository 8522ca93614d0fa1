//! The C ABI of src/shim.cpp. Each call returns 0, or non-zero with a message in `err` that the
//! caller frees with `cbd_free_error`.

use std::ffi::{c_char, c_int, c_void};

use torch_sys::C_tensor;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    pub fn cbd_init(
        addr: *const c_char,
        port: u16,
        rank: c_int,
        world_size: c_int,
        timeout_ms: i64,
        is_server: c_int,
        prefix: *const c_char,
        backend: c_int,
        cuda_device: c_int,
        out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbd_all_reduce_mean(
        group: *mut c_void,
        tensor: *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbd_broadcast(
        group: *mut c_void,
        tensor: *mut C_tensor,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbd_all_gather(
        group: *mut c_void,
        input: *const C_tensor,
        output: *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbd_barrier(group: *mut c_void, err: *mut *mut c_char) -> c_int;
    pub fn cbd_destroy(group: *mut c_void);
    fn cbd_free_error(err: *mut c_char);
}

/// Runs one shim call; on failure returns the shim's message (and frees it).
pub fn check(call: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<(), String> {
    convbert_build::shim::check(call, cbd_free_error)
}
