//! AdamW exactly as `torch.optim.AdamW` (torch 2.11, `torch/optim/adam.py`, single-tensor path with
//! decoupled weight decay) with HF Trainer's parameter groups: weight decay on every parameter
//! except biases and LayerNorm weights (`Trainer.get_decay_parameter_names`, transformers v4.57.6,
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/trainer.py#L1180>).
//!
//! tch's own `nn::AdamW` is not used: it steps every variable of a VarStore with one decay and keeps
//! no per-parameter state we can save for an exact resume.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::adamw_update::Update;
use crate::error::{Result, TrainError};

/// AdamW hyper-parameters; the defaults are HF `TrainingArguments`'.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// `adam_beta1` (0.9).
    pub beta1: f64,
    /// `adam_beta2` (0.999).
    pub beta2: f64,
    /// `adam_epsilon` (1e-8).
    pub eps: f64,
    /// `weight_decay` (0.0), applied to the decay group only.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// True for a parameter HF Trainer decays: no bias, no LayerNorm/RMSNorm/norm weight
/// (the name patterns of `get_decay_parameter_names`, matched on the lower-cased name).
pub fn decays(name: &str) -> bool {
    let lower = name.to_lowercase();
    let norm_part = lower
        .split('.')
        .any(|part| part == "norm" || part.ends_with("_norm"));
    !(lower.contains("bias")
        || lower.contains("layernorm")
        || lower.contains("rmsnorm")
        || norm_part)
}

#[derive(Debug)]
struct ParamState {
    name: String,
    param: Tensor,
    decay: bool,
    /// Steps taken by this parameter (torch keeps one per parameter).
    step: i64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW over the trainable variables of a VarStore, in name order.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<ParamState>,
    /// Two flat buffers as large as the largest parameter, reused by every update: fresh
    /// temporaries the size of the embeddings would be mapped and unmapped at every step.
    scratch: Option<[Tensor; 2]>,
}

impl AdamW {
    /// Optimizer state (zeros) for every trainable variable of `vs`.
    pub fn new(vs: &VarStore, config: AdamWConfig) -> Result<Self> {
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let mut params = Vec::new();
        for (name, param) in vars {
            if !param.requires_grad() {
                continue;
            }
            params.push(ParamState {
                decay: decays(&name),
                exp_avg: param.f_zeros_like()?,
                exp_avg_sq: param.f_zeros_like()?,
                step: 0,
                name,
                param,
            });
        }
        Ok(Self {
            config,
            params,
            scratch: None,
        })
    }

    /// The optimised parameters (for clipping and zeroing their gradients).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|p| p.param.shallow_clone())
            .collect()
    }

    /// Names of the parameters that receive weight decay.
    pub fn decay_names(&self) -> Vec<&str> {
        let decayed = self.params.iter().filter(|p| p.decay);
        decayed.map(|p| p.name.as_str()).collect()
    }

    /// One update at learning rate `lr` of every parameter that has a gradient.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let scratch = match self.scratch.take() {
            Some(s) => s,
            None => self.new_scratch()?,
        };
        let result = tch::no_grad(|| -> Result<()> {
            for p in &mut self.params {
                let grad = p.param.grad();
                if !grad.defined() {
                    continue;
                }
                p.step += 1;
                let bias_correction1 = 1.0 - beta1.powi(p.step as i32);
                let bias_correction2 = 1.0 - beta2.powi(p.step as i32);
                let step_size = lr / bias_correction1;
                let update = Update {
                    decay: (p.decay && weight_decay != 0.0)
                        .then_some((1.0 - lr * weight_decay) as f32),
                    lerp_weight: (1.0 - beta1) as f32,
                    beta2: beta2 as f32,
                    one_minus_beta2: (1.0 - beta2) as f32,
                    bias_correction2_sqrt: bias_correction2.sqrt() as f32,
                    eps: eps as f32,
                    neg_step_size: -step_size as f32,
                };
                update.step(&p.param, &grad, &p.exp_avg, &p.exp_avg_sq, || {
                    scratch_views(&scratch, &p.param)
                })?;
            }
            Ok(())
        });
        self.scratch = Some(scratch);
        result
    }

    fn new_scratch(&self) -> Result<[Tensor; 2]> {
        let largest = self.params.iter().max_by_key(|p| p.param.numel());
        let (n, options) = match largest {
            Some(p) => (p.param.numel() as i64, (p.param.kind(), p.param.device())),
            None => (0, (Kind::Float, tch::Device::Cpu)),
        };
        Ok([
            Tensor::f_empty([n], options)?,
            Tensor::f_empty([n], options)?,
        ])
    }

    /// Zeroes every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.param.zero_grad();
        }
    }

    /// The state to save: `exp_avg.<name>`, `exp_avg_sq.<name>` and `step.<name>` (int64 scalar).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 3);
        for p in &self.params {
            out.push((format!("exp_avg.{}", p.name), p.exp_avg.shallow_clone()));
            out.push((
                format!("exp_avg_sq.{}", p.name),
                p.exp_avg_sq.shallow_clone(),
            ));
            out.push((format!("step.{}", p.name), Tensor::from(p.step)));
        }
        out
    }

    /// Restores [`state_tensors`](Self::state_tensors); every parameter's state must be present.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        for p in &mut self.params {
            let get = |prefix: &str| {
                state.get(&format!("{prefix}.{}", p.name)).ok_or_else(|| {
                    TrainError::argument("optimizer state", format!("no {prefix} for {}", p.name))
                })
            };
            let (m, v, step) = (get("exp_avg")?, get("exp_avg_sq")?, get("step")?);
            if m.size() != p.param.size() || v.size() != p.param.size() {
                return Err(TrainError::argument(
                    "optimizer state",
                    format!(
                        "{}: shape {:?}, parameter {:?}",
                        p.name,
                        m.size(),
                        p.param.size()
                    ),
                ));
            }
            tch::no_grad(|| -> Result<()> {
                p.exp_avg.f_copy_(m)?;
                p.exp_avg_sq.f_copy_(v)?;
                Ok(())
            })?;
            p.step = step.f_to_kind(Kind::Int64)?.f_int64_value(&[])?;
        }
        Ok(())
    }
}

/// Views of the scratch buffers shaped like `param`; fresh tensors when its dtype or device
/// differs from theirs.
fn scratch_views(scratch: &[Tensor; 2], param: &Tensor) -> Result<[Tensor; 2]> {
    let n = param.numel() as i64;
    let fits = |s: &Tensor| {
        s.kind() == param.kind() && s.device() == param.device() && s.numel() as i64 >= n
    };
    let view = |s: &Tensor| -> Result<Tensor> {
        if fits(s) {
            Ok(s.f_narrow(0, 0, n)?.f_view(param.size().as_slice())?)
        } else {
            Ok(param.f_empty_like()?)
        }
    };
    Ok([view(&scratch[0])?, view(&scratch[1])?])
}

#[cfg(test)]
mod tests {
    use super::decays;

    #[test]
    fn hf_decay_groups() {
        assert!(decays(
            "convbert.encoder.layer.0.attention.self.query.weight"
        ));
        assert!(!decays(
            "convbert.encoder.layer.0.attention.self.query.bias"
        ));
        assert!(!decays("convbert.embeddings.LayerNorm.weight"));
        assert!(!decays("model.norm.weight"));
        assert!(!decays("block.final_norm.weight"));
        assert!(decays("classifier.normal.weight"));
    }
}
