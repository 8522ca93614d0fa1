//! libtorch's multi-tensor (`_foreach_*`) ops through the C++ shim: one kernel launch per list on
//! CUDA (lists of one device and dtype), a loop of per-tensor ops on the CPU; and dropping
//! gradients, which tch cannot do.

use tch::Tensor;

use crate::error::Result;
use crate::ffi::{self, check, handles};

/// The L2 norm of each tensor, stacked: `(tensors.len(),)` (`torch._foreach_norm`).
pub(crate) fn norms(tensors: &[Tensor]) -> Result<Tensor> {
    let raw = handles(tensors);
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    // SAFETY: `raw` holds live tensor handles; on success `out` is a new tensor we own.
    check("_foreach_norm", |err| unsafe {
        ffi::cbt_foreach_norm(raw.as_ptr(), raw.len(), &mut out, err)
    })?;
    // SAFETY: a tensor the shim allocated for us, freed by the returned Tensor.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Multiplies every tensor in place by the scalar tensor `factor` (`torch._foreach_mul_`).
pub(crate) fn mul_(tensors: &[Tensor], factor: &Tensor) -> Result<()> {
    let raw = handles(tensors);
    // SAFETY: live tensor handles; the op writes through their storages.
    check("_foreach_mul_", |err| unsafe {
        ffi::cbt_foreach_mul_(raw.as_ptr(), raw.len(), factor.as_ptr(), err)
    })
}

/// Drops the gradients of `params` (torch's `zero_grad(set_to_none=True)`): no kernel runs, and
/// the next backward gives each parameter its gradient buffer instead of adding into zeros.
pub(crate) fn clear_grads(params: &[Tensor]) -> Result<()> {
    let raw = handles(params);
    // SAFETY: live tensor handles; only their autograd metadata changes.
    check("zero_grad(set_to_none=True)", |err| unsafe {
        ffi::cbt_clear_grads(raw.as_ptr(), raw.len(), err)
    })
}
