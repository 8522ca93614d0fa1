//! The C ABI of src/shim.cpp. Each fallible call returns 0, or non-zero with a message in `err`
//! that [`check`] frees with `cbt_free_error`.

use std::ffi::{c_char, c_int};

use tch::Tensor;
use torch_sys::C_tensor;

use crate::error::{Result, TrainError};

extern "C" {
    #[allow(clippy::too_many_arguments)] // the kernel's own arguments
    pub fn cbt_fused_adamw(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        steps: *const *const C_tensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        found_inf: *const C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbt_foreach_norm(
        tensors: *const *const C_tensor,
        n: usize,
        out: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbt_foreach_mul_(
        tensors: *const *const C_tensor,
        n: usize,
        factor: *const C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    pub fn cbt_clear_grads(
        tensors: *const *const C_tensor,
        n: usize,
        err: *mut *mut c_char,
    ) -> c_int;
    fn cbt_free_error(err: *mut c_char);
}

/// The raw handles of `tensors`, valid while they live.
pub fn handles(tensors: &[Tensor]) -> Vec<*const C_tensor> {
    tensors.iter().map(Tensor::as_ptr).collect()
}

/// Runs one shim call of libtorch op `op`; a C++ exception becomes [`TrainError::Kernel`].
pub fn check(op: &'static str, call: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<()> {
    convbert_build::shim::check(call, cbt_free_error)
        .map_err(|message| TrainError::Kernel { op, message })
}
