//! One optimizer step as HF Trainer takes it (`_inner_training_loop`, transformers v4.57.6):
//! each micro-batch loss divided by the accumulation steps and back-propagated, the gradients
//! clipped to `max_grad_norm`, AdamW at the schedule's learning rate, gradients zeroed.

use tch::Tensor;

use crate::clip::clip_grad_norm;
use crate::error::{Result, TrainError};
use crate::optimizer::AdamW;

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// Sum of the scaled micro-batch losses (the mean loss over the accumulated batches).
    pub loss: f64,
    /// Total gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
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
    mut loss_of: impl FnMut(usize) -> Result<Tensor>,
) -> Result<StepOutcome> {
    if accumulation == 0 {
        return Err(TrainError::argument(
            "gradient_accumulation_steps",
            "must be at least 1",
        ));
    }
    let mut total = 0.0;
    for micro in 0..accumulation {
        let loss = loss_of(micro)? / accumulation as f64;
        let value = loss.f_double_value(&[])?;
        if !value.is_finite() {
            optimizer.zero_grad();
            return Err(TrainError::NonFiniteLoss { step, loss: value });
        }
        loss.f_backward()?;
        total += value;
    }
    let grad_norm = if max_grad_norm > 0.0 {
        clip_grad_norm(&optimizer.parameters(), max_grad_norm)?
    } else {
        f64::NAN
    };
    if max_grad_norm > 0.0 && !grad_norm.is_finite() {
        optimizer.zero_grad();
        return Err(TrainError::NonFiniteGradient {
            step,
            norm: grad_norm,
        });
    }
    optimizer.step(lr)?;
    optimizer.zero_grad();
    Ok(StepOutcome {
        loss: total,
        grad_norm,
        lr,
    })
}
