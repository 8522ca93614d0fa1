//! `ConvBertForTokenClassification`: dropout + `classifier` Linear(D -> num_labels) on every token;
//! cross-entropy ignoring -100 (no attention-mask-aware loss, as in HF). Reference: transformers
//! v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L1177>).

use convbert_model::{ConvBertConfig, ConvBertInputs, ForwardOptions};
use tch::nn::Path;
use tch::Tensor;

use crate::error::{ConvBertHeadError, Result};
use crate::labels::Labels;
use crate::loss::{cross_entropy, IGNORE_INDEX};
use crate::pretrained::{impl_head, HeadModule};
use crate::sequence_classification::classifier_dropout;
use convbert_model::primitives::{dropout, Linear, LinearKernelFactory};

/// `dropout` + `classifier`: (B, L, D) -> (B, L, num_labels).
#[derive(Debug)]
pub(crate) struct TokenClassificationModules {
    classifier: Linear,
    dropout: f64,
    num_labels: i64,
}

impl HeadModule for TokenClassificationModules {
    const CLASS: &'static str = "ConvBertForTokenClassification";

    fn build(root: &Path, cfg: &ConvBertConfig, labels: &Labels) -> Result<Self> {
        Ok(Self {
            classifier: Linear::new(
                &(root / "classifier"),
                cfg.hidden_size,
                labels.num_labels,
                cfg.initializer_range,
            )?,
            dropout: classifier_dropout(cfg),
            num_labels: labels.num_labels,
        })
    }

    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> convbert_model::Result<usize> {
        self.classifier.replace_kernel(make)?;
        Ok(1)
    }
}

/// Output of [`ConvBertForTokenClassification::forward_t`] (HF `TokenClassifierOutput`).
#[derive(Debug)]
pub struct TokenClassifierOutput {
    /// Mean cross-entropy over tokens whose label is not -100; present when labels were given.
    pub loss: Option<Tensor>,
    /// (B, L, num_labels).
    pub logits: Tensor,
    /// Layers + 1 encoder states (B, L, D) when requested.
    pub hidden_states: Option<Vec<Tensor>>,
    /// Per-layer attention probabilities (B, H, L, L) when requested.
    pub attentions: Option<Vec<Tensor>>,
}

impl_head!(
    /// ConvBERT with a per-token classifier, e.g. for NER (HF `ConvBertForTokenClassification`).
    ConvBertForTokenClassification,
    TokenClassificationModules
);

impl ConvBertForTokenClassification {
    /// Logits (B, L, num_labels) and, with `labels` (B, L) int (class indices or -100), the loss.
    pub fn forward_t(
        &self,
        inputs: &ConvBertInputs,
        labels: Option<&Tensor>,
        options: &ForwardOptions,
        train: bool,
    ) -> Result<TokenClassifierOutput> {
        let out = self.encode(inputs, options, train)?;
        let head = &self.core.head;
        let logits =
            head.classifier
                .forward(&dropout(out.last_hidden_state, head.dropout, train)?)?;
        let loss = match labels {
            None => None,
            Some(labels) => {
                let want = logits.size()[..2].to_vec();
                if labels.size() != want {
                    return Err(ConvBertHeadError::shape(
                        "labels",
                        format!("{want:?} (batch, seq)"),
                        labels,
                    ));
                }
                let flat = logits.f_view([-1, head.num_labels])?;
                Some(cross_entropy(
                    &flat,
                    &labels.f_reshape([-1])?,
                    IGNORE_INDEX,
                    "labels",
                )?)
            }
        };
        Ok(TokenClassifierOutput {
            loss,
            logits,
            hidden_states: out.hidden_states,
            attentions: out.attentions,
        })
    }
}
