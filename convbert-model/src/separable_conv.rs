//! `SeparableConv1D`: depthwise Conv1d (groups = D, padding K/2, no bias), pointwise 1x1 Conv1d
//! (no bias), then a bias (A, 1). Reference: transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L261>).

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use crate::error::Result;
use crate::primitives::{linear, LinearKernel, LinearKernelFactory};

/// Vars `depthwise.weight` (D, 1, K), `pointwise.weight` (A, D, 1), `bias` (A, 1).
#[derive(Debug)]
pub(crate) struct SeparableConv1d {
    depthwise: Tensor,
    pointwise: Tensor,
    bias: Tensor,
    kernel: i64,
    /// Replaces the pointwise GEMM when set (see [`LinearKernel`]).
    pointwise_kernel: Option<Box<dyn LinearKernel>>,
}

impl SeparableConv1d {
    pub(crate) fn new(
        p: &Path,
        input_filters: i64,
        output_filters: i64,
        kernel: i64,
        std: f64,
    ) -> Result<Self> {
        let init = Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        Ok(SeparableConv1d {
            depthwise: (p / "depthwise").f_var("weight", &[input_filters, 1, kernel], init)?,
            pointwise: (p / "pointwise").f_var(
                "weight",
                &[output_filters, input_filters, 1],
                init,
            )?,
            bias: p.f_var("bias", &[output_filters, 1], Init::Const(0.0))?,
            kernel,
            pointwise_kernel: None,
        })
    }

    /// The pointwise 1x1 conv (a Linear with the (A, D) weight and the (A, 1) bias) through
    /// `make`'s kernel from now on.
    pub(crate) fn replace_pointwise(&mut self, make: &mut LinearKernelFactory) -> Result<()> {
        let a = self.pointwise.size()[0];
        let w = self.pointwise.f_view([a, -1])?;
        let b = self.bias.f_view([a])?;
        self.pointwise_kernel = Some(make(&w, &b)?);
        Ok(())
    }

    /// x (B, L, D) -> (B, L, A).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if !x.requires_grad() && !self.depthwise.requires_grad() {
            self.depthwise_channels_last(x)?
        } else if matches!(x.kind(), Kind::Float | Kind::Double) {
            self.depthwise_shifted(x)?
        } else {
            // Reduced precision: oneDNN's depthwise conv is faster than K element-wise passes.
            let channels = self.depthwise.size()[0];
            let pad = self.kernel / 2;
            x.f_transpose(1, 2)?
                .f_conv1d(&self.depthwise, None::<&Tensor>, [1], [pad], [1], channels)?
                .f_transpose(1, 2)?
        };
        if let Some(k) = &self.pointwise_kernel {
            return k.forward(&y);
        }
        // Pointwise 1x1 conv == Linear with the (A, D) weight, then the (A, 1) bias.
        let a = self.pointwise.size()[0];
        linear(
            &y,
            &self.pointwise.f_view([a, -1])?,
            &self.bias.f_view([a])?,
        )
    }

    /// Inference: the depthwise conv as a (K, 1) conv2d on a channels-last (B, D, L, 1) view of
    /// x, which oneDNN runs without the transposes and copies of the (B, D, L) conv1d layout
    /// (several times faster in fp32 and bf16; same results as conv1d). (B, L, D) -> (B, L, D).
    fn depthwise_channels_last(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let (b, len, channels) = (size[0], size[1], size[2]);
        let x4 = x
            .f_reshape([b, len, 1, channels])?
            .f_permute([0, 3, 1, 2])?;
        let w = self.depthwise.f_view([channels, 1, self.kernel, 1])?;
        let pad = self.kernel / 2;
        let y = x4.f_conv2d(&w, None::<&Tensor>, [1, 1], [pad, 0], [1, 1], channels)?;
        Ok(y.f_permute([0, 2, 3, 1])?.f_reshape([b, len, channels])?)
    }

    /// Depthwise cross-correlation with zero padding, as K fused multiply-adds on the
    /// sequence-major layout: y[l] = sum_t w[:, t] * x[l + t - K/2]. (B, L, D) -> (B, L, D).
    fn depthwise_shifted(&self, x: &Tensor) -> Result<Tensor> {
        let len = x.size()[1];
        let pad = self.kernel / 2;
        let xp = x.f_constant_pad_nd([0, 0, pad, pad])?;
        let w = self.depthwise.f_squeeze_dim(1)?; // (D, K)
        let mut y = xp.f_narrow(1, 0, len)?.f_mul(&w.f_select(1, 0)?)?;
        for t in 1..self.kernel {
            y = y.f_addcmul_(&xp.f_narrow(1, t, len)?, &w.f_select(1, t)?)?;
        }
        Ok(y)
    }
}
