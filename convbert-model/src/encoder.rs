//! `ConvBertEncoder`: the stack of `ConvBertLayer`s, collecting hidden states (layers + 1,
//! input first) and attention maps on request. Reference: transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L597>).

use tch::nn::Path;
use tch::Tensor;

use crate::attention::AttentionContext;
use crate::config::ConvBertConfig;
use crate::error::Result;
use crate::layer::ConvBertLayer;
use crate::primitives::LinearKernelFactory;

#[derive(Debug)]
pub(crate) struct ConvBertEncoder {
    layers: Vec<ConvBertLayer>,
}

/// What the encoder returns: last state (B, L, D) and the optional per-layer collections.
pub(crate) struct EncoderOutput {
    pub last: Tensor,
    pub hidden_states: Option<Vec<Tensor>>,
    pub attentions: Option<Vec<Tensor>>,
}

impl ConvBertEncoder {
    pub(crate) fn new(p: &Path, cfg: &ConvBertConfig) -> Result<Self> {
        let p = p / "layer";
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| ConvBertLayer::new(&(&p / i), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(ConvBertEncoder { layers })
    }

    /// h0 (B, L, D); `head_masks` holds one (1, H, 1, 1) multiplier per layer when given.
    pub(crate) fn forward(
        &self,
        h0: Tensor,
        head_masks: Option<&[Tensor]>,
        output_hidden_states: bool,
        ctx: &AttentionContext,
    ) -> Result<EncoderOutput> {
        let mut hidden_states = output_hidden_states.then(Vec::new);
        let mut attentions = ctx.output_attentions.then(Vec::new);
        let mut h = h0;
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(all) = hidden_states.as_mut() {
                all.push(h.shallow_clone());
            }
            let (next, probs) = layer.forward(&h, head_masks.map(|m| &m[i]), ctx)?;
            if let (Some(all), Some(p)) = (attentions.as_mut(), probs) {
                all.push(p);
            }
            h = next;
        }
        if let Some(all) = hidden_states.as_mut() {
            all.push(h.shallow_clone());
        }
        Ok(EncoderOutput {
            last: h,
            hidden_states,
            attentions,
        })
    }

    /// See [`ConvBertModel::replace_linears`](crate::ConvBertModel::replace_linears).
    pub(crate) fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> Result<usize> {
        let mut n = 0;
        for layer in &mut self.layers {
            n += layer.replace_linears(make)?;
        }
        Ok(n)
    }
}
