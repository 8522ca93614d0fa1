//! `ConvBertForMultipleChoice`: (B, C, L) inputs flattened to (B·C, L), pooled by
//! `ConvBertSequenceSummary` (by default the LAST position, no projection — SPEC §3.4), scored by
//! `classifier` Linear(D -> 1) and viewed as (B, C); cross-entropy over the choices. Reference:
//! transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L1072>).

use convbert_model::{ConvBertConfig, ConvBertInputs, ForwardOptions};
use tch::nn::Path;
use tch::Tensor;

use crate::error::{ConvBertHeadError, Result};
use crate::labels::Labels;
use crate::loss::{cross_entropy, IGNORE_INDEX};
use crate::pretrained::{impl_head, HeadModule};
use crate::sequence_summary::ConvBertSequenceSummary;
use convbert_model::primitives::{Linear, LinearKernelFactory};

/// `sequence_summary` + `classifier`: (B·C, L, D) -> (B·C, 1).
#[derive(Debug)]
pub(crate) struct MultipleChoiceModules {
    sequence_summary: ConvBertSequenceSummary,
    classifier: Linear,
}

impl HeadModule for MultipleChoiceModules {
    const CLASS: &'static str = "ConvBertForMultipleChoice";

    fn build(root: &Path, cfg: &ConvBertConfig, labels: &Labels) -> Result<Self> {
        let sequence_summary =
            ConvBertSequenceSummary::new(&(root / "sequence_summary"), cfg, labels.num_labels)?;
        // With summary_proj_to_labels the pooled width is num_labels, which HF's Linear(D -> 1)
        // cannot take unless num_labels == D: refuse it up front rather than fail in forward.
        if sequence_summary.output_size(cfg.hidden_size) != cfg.hidden_size {
            return Err(ConvBertHeadError::Config {
                field: "summary_proj_to_labels".into(),
                reason: "projects to num_labels, but the multiple-choice classifier takes hidden_size features".into(),
            });
        }
        let classifier = Linear::new(
            &(root / "classifier"),
            cfg.hidden_size,
            1,
            cfg.initializer_range,
        )?;
        Ok(Self {
            sequence_summary,
            classifier,
        })
    }

    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> convbert_model::Result<usize> {
        self.classifier.replace_kernel(make)?;
        Ok(1 + self.sequence_summary.replace_linears(make)?)
    }
}

/// Output of [`ConvBertForMultipleChoice::forward_t`] (HF `MultipleChoiceModelOutput`).
#[derive(Debug)]
pub struct MultipleChoiceModelOutput {
    /// Cross-entropy over the choices; present when labels were given.
    pub loss: Option<Tensor>,
    /// (B, C) one score per choice.
    pub logits: Tensor,
    /// Layers + 1 encoder states (B·C, L, D) when requested.
    pub hidden_states: Option<Vec<Tensor>>,
    /// Per-layer attention probabilities (B·C, H, L, L) when requested.
    pub attentions: Option<Vec<Tensor>>,
}

/// (B, C, L[, E]) -> (B·C, L[, E]) after checking that the leading axes are (B, C).
fn flatten(
    t: Option<&Tensor>,
    what: &'static str,
    bc: (i64, i64),
    rank: usize,
) -> Result<Option<Tensor>> {
    let Some(t) = t else { return Ok(None) };
    let s = t.size();
    if s.len() != rank || s[0] != bc.0 || s[1] != bc.1 {
        let tail = if rank == 4 {
            ", seq, embedding_size"
        } else {
            ", seq"
        };
        return Err(ConvBertHeadError::shape(
            what,
            format!("({}, {}{tail}) (batch, num_choices{tail})", bc.0, bc.1),
            t,
        ));
    }
    let mut flat = vec![bc.0 * bc.1];
    flat.extend_from_slice(&s[2..]);
    Ok(Some(t.f_reshape(flat)?))
}

impl_head!(
    /// ConvBERT with a multiple-choice head (HF `ConvBertForMultipleChoice`).
    ConvBertForMultipleChoice,
    MultipleChoiceModules
);

impl ConvBertForMultipleChoice {
    /// `inputs` hold (B, C, L) ids, mask, token types and positions, or (B, C, L, E) embeddings;
    /// `head_mask` is passed through. Logits (B, C) and, with `labels` (B,) int in `0..C`, the loss.
    pub fn forward_t(
        &self,
        inputs: &ConvBertInputs,
        labels: Option<&Tensor>,
        options: &ForwardOptions,
        train: bool,
    ) -> Result<MultipleChoiceModelOutput> {
        let batched = match (inputs.input_ids, inputs.inputs_embeds) {
            (Some(t), _) if t.dim() == 3 => t,
            (None, Some(t)) if t.dim() == 4 => t,
            (Some(t), _) => {
                return Err(ConvBertHeadError::shape(
                    "input_ids",
                    "(batch, num_choices, seq)",
                    t,
                ))
            }
            (None, Some(t)) => {
                return Err(ConvBertHeadError::shape(
                    "inputs_embeds",
                    "(batch, num_choices, seq, embedding_size)",
                    t,
                ))
            }
            (None, None) => {
                return Err(convbert_model::ConvBertError::Input(
                    "give input_ids or inputs_embeds".into(),
                )
                .into())
            }
        };
        let bc = (batched.size()[0], batched.size()[1]);
        let input_ids = flatten(inputs.input_ids, "input_ids", bc, 3)?;
        let attention_mask = flatten(inputs.attention_mask, "attention_mask", bc, 3)?;
        let token_type_ids = flatten(inputs.token_type_ids, "token_type_ids", bc, 3)?;
        let position_ids = flatten(inputs.position_ids, "position_ids", bc, 3)?;
        let inputs_embeds = flatten(inputs.inputs_embeds, "inputs_embeds", bc, 4)?;
        let flat = ConvBertInputs {
            input_ids: input_ids.as_ref(),
            attention_mask: attention_mask.as_ref(),
            token_type_ids: token_type_ids.as_ref(),
            position_ids: position_ids.as_ref(),
            inputs_embeds: inputs_embeds.as_ref(),
            head_mask: inputs.head_mask,
        };
        let out = self.encode(&flat, options, train)?;
        let head = &self.core.head;
        let pooled = head
            .sequence_summary
            .forward_t(&out.last_hidden_state, train)?;
        let logits = head.classifier.forward(&pooled)?.f_view([bc.0, bc.1])?;
        let loss = match labels {
            None => None,
            Some(labels) => {
                if labels.size() != [bc.0] {
                    return Err(ConvBertHeadError::shape(
                        "labels",
                        format!("({},) (batch,)", bc.0),
                        labels,
                    ));
                }
                // -100 is PyTorch's default ignore index, so HF ignores it here as well.
                Some(cross_entropy(&logits, labels, IGNORE_INDEX, "labels")?)
            }
        };
        Ok(MultipleChoiceModelOutput {
            loss,
            logits,
            hidden_states: out.hidden_states,
            attentions: out.attentions,
        })
    }
}
