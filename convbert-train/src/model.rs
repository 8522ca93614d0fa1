//! The trained model: one of the five heads of `convbert-heads`, chosen by the task, with one
//! forward over a [`Batch`] that returns the HF loss and the logits.

use std::path::Path;

use convbert_heads::{
    ConvBertForMaskedLM, ConvBertForMultipleChoice, ConvBertForQuestionAnswering,
    ConvBertForSequenceClassification, ConvBertForTokenClassification, SpanPositions,
};
use convbert_model::{ConvBertConfig, ConvBertInputs, ForwardOptions};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::collator::Batch;
use crate::data::Task;
use crate::error::Result;

/// A head of any task.
#[derive(Debug)]
pub enum TaskModel {
    /// `ConvBertForSequenceClassification`.
    TextClassification(ConvBertForSequenceClassification),
    /// `ConvBertForTokenClassification`.
    TokenClassification(ConvBertForTokenClassification),
    /// `ConvBertForQuestionAnswering`.
    QuestionAnswering(ConvBertForQuestionAnswering),
    /// `ConvBertForMultipleChoice`.
    MultipleChoice(ConvBertForMultipleChoice),
    /// `ConvBertForMaskedLM`.
    MaskedLm(ConvBertForMaskedLM),
}

/// Loss (when the batch has labels) and logits: one tensor, or (start, end) for QA.
#[derive(Debug)]
pub struct TaskOutput {
    /// Scalar HF loss.
    pub loss: Option<Tensor>,
    /// Logits: (B, labels), (B, L, labels), (B, choices), (B, L, vocab), or [start, end] (B, L).
    pub logits: Vec<Tensor>,
}

macro_rules! each_head {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            TaskModel::TextClassification($m) => $body,
            TaskModel::TokenClassification($m) => $body,
            TaskModel::QuestionAnswering($m) => $body,
            TaskModel::MultipleChoice($m) => $body,
            TaskModel::MaskedLm($m) => $body,
        }
    };
}

impl TaskModel {
    /// Fresh weights for `config`.
    pub fn from_config(task: Task, config: ConvBertConfig, device: Device) -> Result<Self> {
        let k = Kind::Float;
        Ok(match task {
            Task::TextClassification => Self::TextClassification(
                ConvBertForSequenceClassification::from_config(config, device, k)?,
            ),
            Task::TokenClassification => Self::TokenClassification(
                ConvBertForTokenClassification::from_config(config, device, k)?,
            ),
            Task::QuestionAnswering => Self::QuestionAnswering(
                ConvBertForQuestionAnswering::from_config(config, device, k)?,
            ),
            Task::MultipleChoice => {
                Self::MultipleChoice(ConvBertForMultipleChoice::from_config(config, device, k)?)
            }
            Task::MaskedLm => Self::MaskedLm(ConvBertForMaskedLM::from_config(config, device, k)?),
        })
    }

    /// Loads a checkpoint (task or encoder-only) with `config` replacing its config.json.
    pub fn from_pretrained(
        task: Task,
        dir: &Path,
        config: ConvBertConfig,
        device: Device,
    ) -> Result<Self> {
        let k = Kind::Float;
        Ok(match task {
            Task::TextClassification => Self::TextClassification(
                ConvBertForSequenceClassification::from_pretrained_with_config(
                    dir, config, device, k,
                )?,
            ),
            Task::TokenClassification => Self::TokenClassification(
                ConvBertForTokenClassification::from_pretrained_with_config(
                    dir, config, device, k,
                )?,
            ),
            Task::QuestionAnswering => Self::QuestionAnswering(
                ConvBertForQuestionAnswering::from_pretrained_with_config(dir, config, device, k)?,
            ),
            Task::MultipleChoice => Self::MultipleChoice(
                ConvBertForMultipleChoice::from_pretrained_with_config(dir, config, device, k)?,
            ),
            Task::MaskedLm => Self::MaskedLm(ConvBertForMaskedLM::from_pretrained_with_config(
                dir, config, device, k,
            )?),
        })
    }

    /// The VarStore with every weight.
    pub fn var_store(&self) -> &VarStore {
        each_head!(self, m => m.var_store())
    }

    /// The model config.
    pub fn config(&self) -> &ConvBertConfig {
        each_head!(self, m => m.config())
    }

    /// Writes an HF-loadable checkpoint (config.json + model.safetensors) into `dir`.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        Ok(each_head!(self, m => m.save_pretrained(dir))?)
    }

    /// Forward over `batch`, in training mode (dropout on) when `train`.
    pub fn forward(&self, batch: &Batch, train: bool) -> Result<TaskOutput> {
        let inputs = ConvBertInputs {
            input_ids: Some(&batch.input_ids),
            attention_mask: Some(&batch.attention_mask),
            token_type_ids: Some(&batch.token_type_ids),
            ..Default::default()
        };
        let o = ForwardOptions::default();
        let labels = batch.labels.as_ref();
        Ok(match self {
            Self::TextClassification(m) => {
                let out = m.forward_t(&inputs, labels, &o, train)?;
                TaskOutput {
                    loss: out.loss,
                    logits: vec![out.logits],
                }
            }
            Self::TokenClassification(m) => {
                let out = m.forward_t(&inputs, labels, &o, train)?;
                TaskOutput {
                    loss: out.loss,
                    logits: vec![out.logits],
                }
            }
            Self::MultipleChoice(m) => {
                let out = m.forward_t(&inputs, labels, &o, train)?;
                TaskOutput {
                    loss: out.loss,
                    logits: vec![out.logits],
                }
            }
            Self::MaskedLm(m) => {
                let out = m.forward_t(&inputs, labels, &o, train)?;
                TaskOutput {
                    loss: out.loss,
                    logits: vec![out.logits],
                }
            }
            Self::QuestionAnswering(m) => {
                let positions = batch.positions.as_ref().map(|(s, e)| SpanPositions {
                    start_positions: s,
                    end_positions: e,
                });
                let out = m.forward_t(&inputs, positions, &o, train)?;
                TaskOutput {
                    loss: out.loss,
                    logits: vec![out.start_logits, out.end_logits],
                }
            }
        })
    }
}
