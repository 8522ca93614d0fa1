//! `ConvBertForQuestionAnswering`: `qa_outputs` Linear(D -> 2) split into start and end logits; the
//! loss averages the start and end cross-entropies, with positions clamped to [0, L] and those
//! clamped to L ignored, exactly as HF does. Reference: transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L1247>).

use convbert_model::{ConvBertConfig, ConvBertInputs, ForwardOptions};
use tch::nn::Path;
use tch::Tensor;

use crate::error::{ConvBertHeadError, Result};
use crate::labels::Labels;
use crate::loss::{class_indices, cross_entropy};
use crate::pretrained::{impl_head, HeadModule};
use convbert_model::primitives::{Linear, LinearKernelFactory};

/// `qa_outputs`: (B, L, D) -> (B, L, 2).
#[derive(Debug)]
pub(crate) struct QuestionAnsweringModules {
    qa_outputs: Linear,
}

impl HeadModule for QuestionAnsweringModules {
    const CLASS: &'static str = "ConvBertForQuestionAnswering";

    fn build(root: &Path, cfg: &ConvBertConfig, labels: &Labels) -> Result<Self> {
        // HF builds Linear(D -> num_labels) and splits it in two: only 2 works.
        if labels.num_labels != 2 {
            return Err(ConvBertHeadError::Config {
                field: "num_labels".into(),
                reason: format!(
                    "question answering needs 2 labels (start, end), got {}",
                    labels.num_labels
                ),
            });
        }
        Ok(Self {
            qa_outputs: Linear::new(
                &(root / "qa_outputs"),
                cfg.hidden_size,
                2,
                cfg.initializer_range,
            )?,
        })
    }

    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> convbert_model::Result<usize> {
        self.qa_outputs.replace_kernel(make)?;
        Ok(1)
    }
}

/// Gold answer spans: token positions of the first and last answer token, (B,) or (B, 1) int.
#[derive(Debug, Clone, Copy)]
pub struct SpanPositions<'a> {
    /// (B,) start positions; values beyond the sequence are ignored, negative ones count as 0.
    pub start_positions: &'a Tensor,
    /// (B,) end positions, same rules.
    pub end_positions: &'a Tensor,
}

/// Output of [`ConvBertForQuestionAnswering::forward_t`] (HF `QuestionAnsweringModelOutput`).
#[derive(Debug)]
pub struct QuestionAnsweringModelOutput {
    /// (start CE + end CE) / 2; present when positions were given.
    pub loss: Option<Tensor>,
    /// (B, L).
    pub start_logits: Tensor,
    /// (B, L).
    pub end_logits: Tensor,
    /// Layers + 1 encoder states (B, L, D) when requested.
    pub hidden_states: Option<Vec<Tensor>>,
    /// Per-layer attention probabilities (B, H, L, L) when requested.
    pub attentions: Option<Vec<Tensor>>,
}

/// Squeezes a trailing axis like HF, checks (B,), then clamps to [0, L].
fn clamp_positions(t: &Tensor, batch: i64, seq: i64, what: &'static str) -> Result<Tensor> {
    let t = class_indices(t, what)?;
    let t = if t.dim() > 1 { t.f_squeeze_dim(-1)? } else { t };
    if t.size() != [batch] {
        return Err(ConvBertHeadError::shape(
            what,
            format!("({batch},) or ({batch}, 1)"),
            &t,
        ));
    }
    Ok(t.f_clamp(0, seq)?)
}

impl_head!(
    /// ConvBERT with an extractive question-answering head (HF `ConvBertForQuestionAnswering`).
    ConvBertForQuestionAnswering,
    QuestionAnsweringModules
);

impl ConvBertForQuestionAnswering {
    /// Start and end logits (B, L) and, with `positions`, the span loss.
    pub fn forward_t(
        &self,
        inputs: &ConvBertInputs,
        positions: Option<SpanPositions>,
        options: &ForwardOptions,
        train: bool,
    ) -> Result<QuestionAnsweringModelOutput> {
        let out = self.encode(inputs, options, train)?;
        let logits = self.core.head.qa_outputs.forward(&out.last_hidden_state)?;
        let start_logits = logits.f_select(-1, 0)?.f_contiguous()?;
        let end_logits = logits.f_select(-1, 1)?.f_contiguous()?;
        let loss = match positions {
            None => None,
            Some(pos) => {
                let (batch, seq) = (start_logits.size()[0], start_logits.size()[1]);
                let start = clamp_positions(pos.start_positions, batch, seq, "start_positions")?;
                let end = clamp_positions(pos.end_positions, batch, seq, "end_positions")?;
                // Positions clamped to L (= beyond the input) are ignored.
                let start_loss = cross_entropy(&start_logits, &start, seq, "start_positions")?;
                let end_loss = cross_entropy(&end_logits, &end, seq, "end_positions")?;
                Some((start_loss + end_loss) / 2.0)
            }
        };
        Ok(QuestionAnsweringModelOutput {
            loss,
            start_logits,
            end_logits,
            hidden_states: out.hidden_states,
            attentions: out.attentions,
        })
    }
}
