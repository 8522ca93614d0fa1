//! Gradient clipping by total L2 norm, as `torch.nn.utils.clip_grad_norm_` (torch 2.11,
//! `torch/nn/utils/clip_grad.py`): the norm of the per-tensor norms, and every gradient
//! multiplied by `min(1, max_norm / (norm + 1e-6))`. On CUDA (or with the fused optimizer
//! forced) the norms and the multiplication are torch's foreach kernels, a few launches for all
//! gradients; elsewhere one op per tensor, as torch on the CPU.

use tch::Tensor;

use crate::error::Result;
use crate::foreach;

/// Clips the gradients of `params` in place; returns the total norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<f64> {
    let foreach = params.iter().any(|p| p.device().is_cuda());
    match clip_grad_norm_tensor(params, max_norm, foreach)? {
        Some(total) => Ok(total.f_double_value(&[])?),
        None => Ok(0.0),
    }
}

/// [`clip_grad_norm`] through the foreach kernels or not; the total norm stays a tensor on the
/// gradients' device (nothing is read back). `None` when no parameter has a gradient.
pub(crate) fn clip_grad_norm_tensor(
    params: &[Tensor],
    max_norm: f64,
    foreach: bool,
) -> Result<Option<Tensor>> {
    let grads = grads(params);
    if grads.is_empty() {
        return Ok(None);
    }
    let total = total_norm(&grads, foreach)?;
    // Same float32 tensor arithmetic as torch: coef = max_norm / (total + 1e-6), clamped at 1.
    let coef = ((&total + 1e-6).f_reciprocal()? * max_norm).f_clamp_max(1.0)?;
    tch::no_grad(|| -> Result<()> {
        if foreach {
            return foreach::mul_(&grads, &coef);
        }
        for g in &grads {
            let _ = g.shallow_clone().f_mul_(&coef)?;
        }
        Ok(())
    })?;
    Ok(Some(total))
}

/// The defined gradients of `params`.
pub(crate) fn grads(params: &[Tensor]) -> Vec<Tensor> {
    params
        .iter()
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .collect()
}

fn total_norm(grads: &[Tensor], foreach: bool) -> Result<Tensor> {
    let norms = if foreach {
        foreach::norms(grads)?
    } else {
        let each = grads
            .iter()
            .map(|g| g.f_norm())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Tensor::f_stack(&each, 0)?
    };
    Ok(norms.f_norm()?)
}

/// The total L2 norm of the gradients of `params`, without clipping.
pub(crate) fn grad_norm(params: &[Tensor], foreach: bool) -> Result<f64> {
    let grads = grads(params);
    if grads.is_empty() {
        return Ok(0.0);
    }
    Ok(total_norm(&grads, foreach)?.f_double_value(&[])?)
}
