//! Gradient clipping by total L2 norm, as `torch.nn.utils.clip_grad_norm_` (torch 2.11,
//! `torch/nn/utils/clip_grad.py`, the per-tensor path used on CPU): the norm of the per-tensor
//! norms, and every gradient multiplied by `min(1, max_norm / (norm + 1e-6))`.

use tch::Tensor;

use crate::error::Result;

/// Clips the gradients of `params` in place; returns the total norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<f64> {
    let grads = grads(params);
    if grads.is_empty() {
        return Ok(0.0);
    }
    let total = total_norm(&grads)?;
    // Same float32 tensor arithmetic as torch: coef = max_norm / (total + 1e-6), clamped at 1.
    let coef = ((&total + 1e-6).f_reciprocal()? * max_norm).f_clamp_max(1.0)?;
    tch::no_grad(|| -> Result<()> {
        for g in &grads {
            let _ = g.shallow_clone().f_mul_(&coef)?;
        }
        Ok(())
    })?;
    Ok(total.f_double_value(&[])?)
}

fn grads(params: &[Tensor]) -> Vec<Tensor> {
    params
        .iter()
        .map(|p| p.grad())
        .filter(|g| g.defined())
        .collect()
}

fn total_norm(grads: &[Tensor]) -> Result<Tensor> {
    let norms = grads
        .iter()
        .map(|g| g.f_norm())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Tensor::f_stack(&norms, 0)?.f_norm()?)
}

/// The total L2 norm of the gradients of `params`, without clipping.
pub(crate) fn grad_norm(params: &[Tensor]) -> Result<f64> {
    let grads = grads(params);
    if grads.is_empty() {
        return Ok(0.0);
    }
    Ok(total_norm(&grads)?.f_double_value(&[])?)
}
