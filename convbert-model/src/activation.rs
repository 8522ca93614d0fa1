//! Activation functions selected by `hidden_act`, exactly as HF's `ACT2FN` computes them.
//! Reference: transformers v4.57.6 `activations.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/activations.py>).

use tch::Tensor;

use crate::error::{ConvBertError, Result};

/// The `hidden_act` values supported (HF names in the docs of each variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `"gelu"`: exact erf GELU.
    Gelu,
    /// `"gelu_new"`: tanh approximation written out as HF's `NewGELUActivation`.
    GeluNew,
    /// `"gelu_pytorch_tanh"`: torch's fused tanh GELU.
    GeluPytorchTanh,
    /// `"gelu_fast"`: `0.5 x (1 + tanh(0.7978845608 x (1 + 0.044715 x^2)))`.
    GeluFast,
    /// `"quick_gelu"`: `x * sigmoid(1.702 x)`.
    QuickGelu,
    /// `"relu"`.
    Relu,
    /// `"silu"` and `"swish"`.
    Silu,
    /// `"tanh"`.
    Tanh,
}

impl Activation {
    /// Parses an HF `hidden_act` name; unsupported names give a `Config` error.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" => Activation::GeluNew,
            "gelu_pytorch_tanh" => Activation::GeluPytorchTanh,
            "gelu_fast" => Activation::GeluFast,
            "quick_gelu" => Activation::QuickGelu,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            other => {
                return Err(ConvBertError::config(
                    "hidden_act",
                    format!(
                        "unsupported activation {other:?} (supported: gelu, gelu_new, gelu_pytorch_tanh, \
                         gelu_fast, quick_gelu, relu, silu, swish, tanh)"
                    ),
                ))
            }
        })
    }

    /// Like [`Activation::apply`], but may overwrite `x`: erf GELU (the default) runs in place
    /// when nothing needs `x` for a gradient, saving an allocation of the FFN's widest tensor.
    pub fn apply_owned(self, x: Tensor) -> Result<Tensor> {
        match self {
            Activation::Gelu if !x.requires_grad() => {
                let mut x = x;
                Ok(x.f_gelu_("none")?)
            }
            _ => self.apply(&x),
        }
    }

    /// Applies the activation element-wise; any shape, any float kind.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Gelu => x.f_gelu("none")?,
            Activation::GeluPytorchTanh => x.f_gelu("tanh")?,
            Activation::GeluNew => {
                // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), in HF's op order.
                let inner = (x + x.f_pow_tensor_scalar(3.0)? * 0.044715)
                    * (2.0 / std::f64::consts::PI).sqrt();
                x * 0.5 * (inner.f_tanh()? + 1.0)
            }
            Activation::GeluFast => {
                let inner = x * 0.7978845608 * (x * 0.044715 * x + 1.0);
                x * 0.5 * (inner.f_tanh()? + 1.0)
            }
            Activation::QuickGelu => x * (x * 1.702).f_sigmoid()?,
            Activation::Relu => x.f_relu()?,
            Activation::Silu => x.f_silu()?,
            Activation::Tanh => x.f_tanh()?,
        })
    }
}
