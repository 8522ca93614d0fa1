//! `GroupedLinearLayer` (block-diagonal Linear used by the FFN when `num_groups > 1`) and the
//! FFN dense that is either it or a plain Linear. Reference: transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L475>).

use tch::nn::{Init, Path};
use tch::Tensor;

use crate::error::Result;
use crate::primitives::{Linear, LinearKernelFactory};

/// Vars `weight` (G, in/G, out/G) — in -> out order, unlike Linear — and `bias` (out,).
#[derive(Debug)]
pub(crate) struct GroupedLinear {
    weight: Tensor,
    bias: Tensor,
    groups: i64,
    out_dim: i64,
}

impl GroupedLinear {
    pub(crate) fn new(p: &Path, in_dim: i64, out_dim: i64, groups: i64, std: f64) -> Result<Self> {
        Ok(GroupedLinear {
            weight: p.f_var(
                "weight",
                &[groups, in_dim / groups, out_dim / groups],
                Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            )?,
            bias: p.f_var("bias", &[out_dim], Init::Const(0.0))?,
            groups,
            out_dim,
        })
    }

    /// (B, L, in) -> (B, L, out): per group x_g W_g, groups concatenated, then the bias.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let in_g = size[size.len() - 1] / self.groups;
        let xg = x.f_reshape([-1, self.groups, in_g])?.f_permute([1, 0, 2])?; // (G, N, in/G)
        let y = xg.f_matmul(&self.weight)?.f_permute([1, 0, 2])?; // (N, G, out/G)
        let mut out_shape = size[..size.len() - 1].to_vec();
        out_shape.push(self.out_dim);
        Ok(y.f_reshape(out_shape)?.f_add(&self.bias)?)
    }
}

/// The FFN's dense: a Linear when `num_groups == 1`, else a GroupedLinear (same var names).
#[derive(Debug)]
pub(crate) enum FfnDense {
    Plain(Linear),
    Grouped(GroupedLinear),
}

impl FfnDense {
    pub(crate) fn new(p: &Path, in_dim: i64, out_dim: i64, groups: i64, std: f64) -> Result<Self> {
        Ok(if groups == 1 {
            FfnDense::Plain(Linear::new(p, in_dim, out_dim, std)?)
        } else {
            FfnDense::Grouped(GroupedLinear::new(p, in_dim, out_dim, groups, std)?)
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            FfnDense::Plain(l) => l.forward(x),
            FfnDense::Grouped(g) => g.forward(x),
        }
    }

    /// A plain Linear takes `make`'s kernel; a GroupedLinear is a batched matmul, not a Linear,
    /// and stays as is (as `quantize_dynamic` leaves HF's). Returns how many kernels were made.
    pub(crate) fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> Result<usize> {
        match self {
            FfnDense::Plain(l) => {
                l.replace_kernel(make)?;
                Ok(1)
            }
            FfnDense::Grouped(_) => Ok(0),
        }
    }
}
