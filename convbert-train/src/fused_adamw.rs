//! AdamW's update as `torch.optim.AdamW(fused=True)` takes it (torch 2.11, `torch/optim/adam.py`,
//! `_fused_adam`; HF Trainer's `adamw_torch_fused`): the parameters grouped by weight decay,
//! device and dtype, and one `_fused_adamw_` per group, so a step is a handful of kernel
//! launches on CUDA whatever the parameter count. The step counters are f32 scalar tensors on the
//! parameters' device, as torch keeps them for this kernel, so nothing is read back to the host.

use tch::{Device, Kind, Tensor};

use crate::error::Result;
use crate::ffi::{self, check, handles};

/// The hyper-parameters of one step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hyper {
    pub(crate) lr: f64,
    pub(crate) beta1: f64,
    pub(crate) beta2: f64,
    pub(crate) eps: f64,
    /// Applied to the parameters whose slot has `decay`.
    pub(crate) weight_decay: f64,
}

/// One parameter with a gradient and its state.
pub(crate) struct Slot<'a> {
    pub(crate) decay: bool,
    pub(crate) param: &'a Tensor,
    pub(crate) grad: Tensor,
    pub(crate) exp_avg: &'a Tensor,
    pub(crate) exp_avg_sq: &'a Tensor,
    /// f32 scalar on the parameter's device.
    pub(crate) step: &'a Tensor,
}

/// Tensors of one `_fused_adamw_` call: one weight decay, device and dtype.
#[derive(Default)]
struct Group {
    params: Vec<Tensor>,
    grads: Vec<Tensor>,
    exp_avgs: Vec<Tensor>,
    exp_avg_sqs: Vec<Tensor>,
    steps: Vec<Tensor>,
}

/// A fresh step counter for `param`: 0 as an f32 scalar on its device.
pub(crate) fn new_step(param: &Tensor) -> Result<Tensor> {
    Ok(Tensor::f_zeros([], (Kind::Float, param.device()))?)
}

/// Updates every slot in place. With `found_inf` (an f32 scalar, 1 when the step must be
/// skipped) the kernel leaves weights, moments and counters as they were, decided on the device.
pub(crate) fn step(slots: Vec<Slot<'_>>, hyper: Hyper, found_inf: Option<&Tensor>) -> Result<()> {
    let mut groups: Vec<((bool, Device, Kind), Group)> = Vec::new();
    for s in slots {
        let key = (s.decay, s.param.device(), s.param.kind());
        let at = match groups.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                groups.push((key, Group::default()));
                groups.len() - 1
            }
        };
        let g = &mut groups[at].1;
        g.params.push(s.param.shallow_clone());
        g.grads.push(s.grad);
        g.exp_avgs.push(s.exp_avg.shallow_clone());
        g.exp_avg_sqs.push(s.exp_avg_sq.shallow_clone());
        g.steps.push(s.step.shallow_clone());
    }
    for ((decay, device, _), g) in &groups {
        let weight_decay = if *decay { hyper.weight_decay } else { 0.0 };
        let inf = match found_inf {
            Some(t) => Some(t.f_to_device(*device)?),
            None => None,
        };
        let [p, gr, m, v, s] =
            [&g.params, &g.grads, &g.exp_avgs, &g.exp_avg_sqs, &g.steps].map(|list| handles(list));
        let inf_ptr = inf.as_ref().map_or(std::ptr::null(), Tensor::as_ptr);
        // SAFETY: five lists of `p.len()` live tensor handles (the optimizer's own tensors and
        // this step's gradients) and an optional live scalar; the kernel writes through them.
        check("_fused_adamw_", |err| unsafe {
            ffi::cbt_fused_adamw(
                p.as_ptr(),
                gr.as_ptr(),
                m.as_ptr(),
                v.as_ptr(),
                s.as_ptr(),
                p.len(),
                hyper.lr,
                hyper.beta1,
                hyper.beta2,
                weight_decay,
                hyper.eps,
                inf_ptr,
                err,
            )
        })?;
    }
    Ok(())
}
