//! One optimizer step as HF Trainer takes it (`_inner_training_loop`, transformers v4.57.6):
//! each micro-batch loss divided by the accumulation steps and back-propagated, the gradients
//! clipped to `max_grad_norm`, AdamW at the schedule's learning rate, gradients zeroed.

use tch::{Kind, Tensor};

use crate::clip::{clip_grad_norm_tensor, grad_norm};
use crate::data_parallel::DataParallel;
use crate::error::{Result, TrainError};
use crate::foreach;
use crate::optimizer::AdamW;
use crate::precision::GradScaler;

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// Sum of the scaled micro-batch losses (the mean loss over the accumulated batches).
    pub loss: f64,
    /// Total gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// The update was skipped because fp16 gradients overflowed (loss scaling only).
    pub skipped: bool,
}

/// Runs `accumulation` micro-batches through `loss_of` (a scalar training loss per micro-batch
/// index), then clips (when `max_grad_norm` is positive) and updates with AdamW at `lr`.
/// A NaN or infinite loss, or (when clipping) gradient norm, stops before any weight changes
/// (`step` names it in the error).
pub fn optimizer_step(
    optimizer: &mut AdamW,
    lr: f64,
    accumulation: usize,
    max_grad_norm: f64,
    step: usize,
    loss_of: impl FnMut(usize) -> Result<Tensor>,
) -> Result<StepOutcome> {
    step_with(
        optimizer,
        lr,
        accumulation,
        max_grad_norm,
        step,
        None,
        None,
        loss_of,
    )
}

/// [`optimizer_step`] with fp16 loss scaling, as HF Trainer with `GradScaler`: each loss is
/// multiplied by the scale before backward, the gradients are divided by it before clipping, and
/// a step whose gradients overflow is skipped (`skipped` in the outcome, no error) and lowers
/// the scale.
pub fn optimizer_step_scaled(
    optimizer: &mut AdamW,
    lr: f64,
    accumulation: usize,
    max_grad_norm: f64,
    step: usize,
    scaler: &mut GradScaler,
    loss_of: impl FnMut(usize) -> Result<Tensor>,
) -> Result<StepOutcome> {
    step_with(
        optimizer,
        lr,
        accumulation,
        max_grad_norm,
        step,
        Some(scaler),
        None,
        loss_of,
    )
}

/// [`optimizer_step`], with loss scaling when `scaler` is given, and gradients (and the loss)
/// averaged over the ranks of `data_parallel` after the last micro-batch.
#[allow(clippy::too_many_arguments)] // the public steps' arguments plus their two optional hooks
pub(crate) fn step_with(
    optimizer: &mut AdamW,
    lr: f64,
    accumulation: usize,
    max_grad_norm: f64,
    step: usize,
    scaler: Option<&mut GradScaler>,
    data_parallel: Option<&DataParallel>,
    mut loss_of: impl FnMut(usize) -> Result<Tensor>,
) -> Result<StepOutcome> {
    if accumulation == 0 {
        return Err(TrainError::argument(
            "gradient_accumulation_steps",
            "must be at least 1",
        ));
    }
    let scale = scaler.as_ref().map_or(1.0, |s| s.scale);
    let mut total = 0.0;
    for micro in 0..accumulation {
        let loss = loss_of(micro)? / accumulation as f64;
        let value = loss.f_double_value(&[])?;
        if !value.is_finite() {
            optimizer.zero_grad()?;
            return Err(TrainError::NonFiniteLoss { step, loss: value });
        }
        if scale == 1.0 {
            loss.f_backward()?;
        } else {
            (loss * scale).f_backward()?;
        }
        total += value;
    }
    let params = optimizer.parameters();
    if let Some(dp) = data_parallel {
        // Scaled gradients average like unscaled ones: every rank has the same scale.
        total = dp.average_gradients(&params, total)?;
    }
    if let Some(scaler) = &scaler {
        unscale(&params, scaler.scale, optimizer.is_fused())?;
    } else if optimizer.is_fused() {
        return fused_step(optimizer, lr, max_grad_norm, step, &params, total);
    }
    // The total norm, measured while clipping (or alone, to spot an fp16 overflow); through the
    // foreach kernels on CUDA, as torch, and with the fused optimizer.
    let foreach = optimizer.is_fused() || params.iter().any(|p| p.device().is_cuda());
    let norm = if max_grad_norm > 0.0 {
        match clip_grad_norm_tensor(&params, max_grad_norm, foreach)? {
            Some(total) => total.f_double_value(&[])?,
            None => 0.0,
        }
    } else if scaler.is_some() {
        grad_norm(&params, foreach)?
    } else {
        f64::NAN
    };
    if let Some(scaler) = scaler {
        // An overflow anywhere makes the total norm non-finite: skip the step, lower the scale.
        let found_inf = !norm.is_finite();
        scaler.update(found_inf);
        if found_inf {
            optimizer.zero_grad()?;
            return Ok(StepOutcome {
                loss: total,
                grad_norm: norm,
                lr,
                skipped: true,
            });
        }
    } else if max_grad_norm > 0.0 && !norm.is_finite() {
        optimizer.zero_grad()?;
        return Err(TrainError::NonFiniteGradient { step, norm });
    }
    let grad_norm = if max_grad_norm > 0.0 { norm } else { f64::NAN };
    optimizer.step(lr)?;
    optimizer.zero_grad()?;
    Ok(StepOutcome {
        loss: total,
        grad_norm,
        lr,
        skipped: false,
    })
}

/// Clipping and the update on the fused path, queued without reading anything back: the kernel
/// itself skips the update when the total norm is not finite. The norm is read once, after the
/// whole step is queued, for the outcome and to stop on a non-finite norm as the other path does.
fn fused_step(
    optimizer: &mut AdamW,
    lr: f64,
    max_grad_norm: f64,
    step: usize,
    params: &[Tensor],
    loss: f64,
) -> Result<StepOutcome> {
    let total = if max_grad_norm > 0.0 {
        clip_grad_norm_tensor(params, max_grad_norm, true)?
    } else {
        None
    };
    optimizer.fused_step(lr, total.as_ref())?;
    optimizer.zero_grad()?;
    let grad_norm = match (&total, max_grad_norm > 0.0) {
        (Some(t), true) => t.f_double_value(&[])?,
        (None, true) => 0.0,
        (_, false) => f64::NAN,
    };
    if max_grad_norm > 0.0 && !grad_norm.is_finite() {
        return Err(TrainError::NonFiniteGradient {
            step,
            norm: grad_norm,
        });
    }
    Ok(StepOutcome {
        loss,
        grad_norm,
        lr,
        skipped: false,
    })
}

/// Divides every gradient by `scale` in place (one foreach op on the fused path).
fn unscale(params: &[Tensor], scale: f64, foreach: bool) -> Result<()> {
    let grads = crate::clip::grads(params);
    tch::no_grad(|| -> Result<()> {
        if let (true, Some(first)) = (foreach, grads.first()) {
            let factor = Tensor::f_full([], 1.0 / scale, (Kind::Float, first.device()))?;
            return foreach::mul_(&grads, &factor);
        }
        for g in &grads {
            let _ = g.shallow_clone().f_mul_scalar_(1.0 / scale)?;
        }
        Ok(())
    })
}
