//! `ConvBertLayer` = mixed attention, then the FFN (`ConvBertIntermediate` + `ConvBertOutput`).
//! Reference: transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L497>).

use tch::nn::Path;
use tch::Tensor;

use crate::activation::Activation;
use crate::attention::{AttentionContext, ConvBertAttention};
use crate::config::ConvBertConfig;
use crate::error::Result;
use crate::grouped_linear::FfnDense;
use crate::primitives::{add_owned, dropout, LayerNorm, LinearKernelFactory};

#[derive(Debug)]
pub(crate) struct ConvBertLayer {
    attention: ConvBertAttention,
    intermediate: FfnDense,
    activation: Activation,
    output: FfnDense,
    output_layer_norm: LayerNorm,
    dropout: f64,
}

impl ConvBertLayer {
    pub(crate) fn new(p: &Path, cfg: &ConvBertConfig) -> Result<Self> {
        let (d, i, g, std) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_groups,
            cfg.initializer_range,
        );
        Ok(ConvBertLayer {
            attention: ConvBertAttention::new(&(p / "attention"), cfg)?,
            intermediate: FfnDense::new(&(p / "intermediate" / "dense"), d, i, g, std)?,
            activation: Activation::from_name(&cfg.hidden_act)?,
            output: FfnDense::new(&(p / "output" / "dense"), i, d, g, std)?,
            output_layer_norm: LayerNorm::new(
                &(p / "output" / "LayerNorm"),
                d,
                cfg.layer_norm_eps,
            )?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    /// x (B, L, D) -> (B, L, D) and optional attention probabilities (B, H, L, L).
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        head_mask: Option<&Tensor>,
        ctx: &AttentionContext,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (a, probs) = self.attention.forward(x, head_mask, ctx)?;
        let u = self
            .activation
            .apply_owned(self.intermediate.forward(&a)?)?;
        let y = dropout(self.output.forward(&u)?, self.dropout, ctx.train)?;
        Ok((self.output_layer_norm.forward(&add_owned(y, &a)?)?, probs))
    }

    /// See [`ConvBertModel::replace_linears`](crate::ConvBertModel::replace_linears).
    pub(crate) fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> Result<usize> {
        Ok(self.attention.replace_linears(make)?
            + self.intermediate.replace_linears(make)?
            + self.output.replace_linears(make)?)
    }
}
