//! `SeparableConv1D`: depthwise Conv1d (groups = D, padding K/2, no bias), pointwise 1x1 Conv1d
//! (no bias), then a bias (A, 1). Reference: transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L261>).

use tch::nn::{Init, Path};
use tch::Tensor;

use crate::error::Result;

/// Vars `depthwise.weight` (D, 1, K), `pointwise.weight` (A, D, 1), `bias` (A, 1).
#[derive(Debug)]
pub(crate) struct SeparableConv1d {
    depthwise: Tensor,
    pointwise: Tensor,
    bias: Tensor,
    kernel: i64,
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
        })
    }

    /// x (B, L, D) -> (B, L, A).
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let channels = self.depthwise.size()[0];
        // Depthwise cross-correlation over the sequence, zero padding K/2: HF's Conv1d on (B, D, L).
        let y = x.f_transpose(1, 2)?.f_conv1d(
            &self.depthwise,
            None::<&Tensor>,
            [1],
            [self.kernel / 2],
            [1],
            channels,
        )?;
        let y = y.f_transpose(1, 2)?; // (B, L, D)
                                      // Pointwise 1x1 conv == Linear with the (A, D) weight, then the (A, 1) bias.
        let a = self.pointwise.size()[0];
        Ok(y.f_linear(
            &self.pointwise.f_view([a, -1])?,
            Some(&self.bias.f_view([a])?),
        )?)
    }
}
