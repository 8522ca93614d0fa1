//! Head layers created with HF's `_init_weights` (SPEC §2.10): Linear weights ~ N(0, initializer_range)
//! with zero bias, LayerNorm weight 1 and bias 0. Reference: transformers v4.57.6
//! `ConvBertPreTrainedModel._init_weights`. Checkpoint values overwrite these when present.

use tch::nn::{Init, Path};
use tch::Tensor;

use crate::error::Result;

/// `nn.Linear(in, out)`: vars `weight` (out, in) and `bias` (out,); y = x Wᵀ + b.
#[derive(Debug)]
pub(crate) struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
}

impl Linear {
    pub(crate) fn new(p: &Path, in_dim: i64, out_dim: i64, init_std: f64) -> Result<Self> {
        Ok(Linear {
            weight: p.f_var(
                "weight",
                &[out_dim, in_dim],
                Init::Randn {
                    mean: 0.0,
                    stdev: init_std,
                },
            )?,
            bias: p.f_var("bias", &[out_dim], Init::Const(0.0))?,
        })
    }

    /// (.., in) -> (.., out).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, Some(&self.bias))?)
    }
}

/// `nn.LayerNorm(dim, eps)` over the last axis: vars `weight`, `bias` (dim,).
#[derive(Debug)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn new(p: &Path, dim: i64, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: p.f_var("weight", &[dim], Init::Const(1.0))?,
            bias: p.f_var("bias", &[dim], Init::Const(0.0))?,
            dim,
            eps,
        })
    }

    /// (.., dim) -> (.., dim).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )?)
    }
}

/// `nn.Dropout(p)`: active only when `train` is true.
pub(crate) fn dropout(x: Tensor, p: f64, train: bool) -> Result<Tensor> {
    if train && p > 0.0 {
        Ok(x.f_dropout(p, true)?)
    } else {
        Ok(x)
    }
}
