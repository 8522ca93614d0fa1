//! `ConvBertForSequenceClassification` and its `ConvBertClassificationHead`: first token, dropout,
//! dense (D -> D), `hidden_act`, dropout, `out_proj` (D -> num_labels); the loss follows
//! `problem_type`, inferred as HF does when config.json leaves it unset. Reference: transformers
//! v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L958>).

use convbert_model::{Activation, ConvBertConfig, ConvBertInputs, ForwardOptions};
use tch::nn::Path;
use tch::{Kind, Tensor};

use crate::error::{ConvBertHeadError, Result};
use crate::labels::{Labels, ProblemType};
use crate::loss::{bce_with_logits, cross_entropy, mse, IGNORE_INDEX};
use crate::pretrained::{impl_head, HeadModule};
use convbert_model::primitives::{dropout, Linear, LinearKernelFactory};

/// `classifier`: (B, L, D) hidden states -> (B, num_labels) logits from the first token.
#[derive(Debug)]
pub(crate) struct ConvBertClassificationHead {
    dense: Linear,
    out_proj: Linear,
    activation: Activation,
    dropout: f64,
    num_labels: i64,
    problem_type: Option<ProblemType>,
}

/// `classifier_dropout`, falling back to `hidden_dropout_prob` (HF's rule for both classifier heads).
pub(crate) fn classifier_dropout(cfg: &ConvBertConfig) -> f64 {
    cfg.classifier_dropout.unwrap_or(cfg.hidden_dropout_prob)
}

impl HeadModule for ConvBertClassificationHead {
    const CLASS: &'static str = "ConvBertForSequenceClassification";

    fn build(root: &Path, cfg: &ConvBertConfig, labels: &Labels) -> Result<Self> {
        let p = root / "classifier";
        let d = cfg.hidden_size;
        Ok(Self {
            dense: Linear::new(&(&p / "dense"), d, d, cfg.initializer_range)?,
            out_proj: Linear::new(
                &(&p / "out_proj"),
                d,
                labels.num_labels,
                cfg.initializer_range,
            )?,
            activation: Activation::from_name(&cfg.hidden_act)?,
            dropout: classifier_dropout(cfg),
            num_labels: labels.num_labels,
            problem_type: labels.problem_type,
        })
    }

    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> convbert_model::Result<usize> {
        self.dense.replace_kernel(make)?;
        self.out_proj.replace_kernel(make)?;
        Ok(2)
    }
}

impl ConvBertClassificationHead {
    fn forward_t(&self, h: &Tensor, train: bool) -> Result<Tensor> {
        let x = dropout(h.f_select(1, 0)?, self.dropout, train)?;
        // ACT2FN[hidden_act] (GELU for the public checkpoints), not BERT's tanh pooler.
        let x = self.activation.apply(&self.dense.forward(&x)?)?;
        Ok(self.out_proj.forward(&dropout(x, self.dropout, train)?)?)
    }

    /// HF's choice: the configured type, else regression for one label, single-label for integer
    /// labels, multi-label otherwise. (HF also writes the inferred type back into its config on the
    /// first call; here every call infers afresh from its own labels.)
    fn problem_type(&self, labels: &Tensor) -> ProblemType {
        match self.problem_type {
            Some(p) => p,
            None if self.num_labels == 1 => ProblemType::Regression,
            None if matches!(labels.kind(), Kind::Int64 | Kind::Int) => {
                ProblemType::SingleLabelClassification
            }
            None => ProblemType::MultiLabelClassification,
        }
    }

    fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let batch = logits.size()[0];
        match self.problem_type(labels) {
            ProblemType::Regression if self.num_labels == 1 => {
                // MSELoss(logits.squeeze(), labels.squeeze()): one target per row, (B,) or (B, 1).
                if labels.numel() as i64 != batch || labels.dim() > 2 {
                    return Err(ConvBertHeadError::shape(
                        "labels",
                        format!("({batch},) or ({batch}, 1)"),
                        labels,
                    ));
                }
                mse(&logits.f_reshape([-1])?, &labels.f_reshape([-1])?, "labels")
            }
            ProblemType::Regression => mse(logits, labels, "labels"),
            ProblemType::SingleLabelClassification => {
                if labels.numel() as i64 != batch {
                    return Err(ConvBertHeadError::shape(
                        "labels",
                        format!("({batch},)"),
                        labels,
                    ));
                }
                cross_entropy(logits, &labels.f_reshape([-1])?, IGNORE_INDEX, "labels")
            }
            ProblemType::MultiLabelClassification => bce_with_logits(logits, labels, "labels"),
        }
    }
}

/// Output of [`ConvBertForSequenceClassification::forward_t`] (HF `SequenceClassifierOutput`).
#[derive(Debug)]
pub struct SequenceClassifierOutput {
    /// MSE, cross-entropy or BCE-with-logits by problem type; present when labels were given.
    pub loss: Option<Tensor>,
    /// (B, num_labels).
    pub logits: Tensor,
    /// Layers + 1 encoder states (B, L, D) when requested.
    pub hidden_states: Option<Vec<Tensor>>,
    /// Per-layer attention probabilities (B, H, L, L) when requested.
    pub attentions: Option<Vec<Tensor>>,
}

impl_head!(
    /// ConvBERT with a classification/regression head on the first token (HF
    /// `ConvBertForSequenceClassification`).
    ConvBertForSequenceClassification,
    ConvBertClassificationHead
);

impl ConvBertForSequenceClassification {
    /// Logits (B, num_labels) and, with `labels`, the loss: regression takes float (B,) targets
    /// (or (B, num_labels) when config.json forces "regression"), single-label int (B,) class
    /// indices, multi-label float (B, num_labels) multi-hot targets.
    pub fn forward_t(
        &self,
        inputs: &ConvBertInputs,
        labels: Option<&Tensor>,
        options: &ForwardOptions,
        train: bool,
    ) -> Result<SequenceClassifierOutput> {
        let out = self.encode(inputs, options, train)?;
        let head = &self.core.head;
        let logits = head.forward_t(&out.last_hidden_state, train)?;
        let loss = labels.map(|l| head.loss(&logits, l)).transpose()?;
        Ok(SequenceClassifierOutput {
            loss,
            logits,
            hidden_states: out.hidden_states,
            attentions: out.attentions,
        })
    }
}
