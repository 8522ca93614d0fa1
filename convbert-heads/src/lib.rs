//! Task heads on the ConvBERT encoder of `convbert-model`, with Hugging Face `transformers` 4.57.6
//! parity: [`ConvBertForMaskedLM`], [`ConvBertForSequenceClassification`],
//! [`ConvBertForMultipleChoice`], [`ConvBertForTokenClassification`] and
//! [`ConvBertForQuestionAnswering`]. Each loads task or base checkpoints (`from_pretrained`), saves
//! HF-loadable ones (`save_pretrained`), starts from fresh weights (`from_config`) and computes HF's
//! losses. Reference: <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py>.
//!
//! The public YituTech checkpoints are encoder-only: loaded into a head, the head weights are
//! newly initialised, and [`HeadLoadReport`] says so.
//!
//! ```
//! use convbert_heads::ConvBertForSequenceClassification;
//! use convbert_model::{ConvBertConfig, ConvBertInputs, ForwardOptions};
//! use tch::{Device, Kind, Tensor};
//!
//! let config = ConvBertConfig::from_json_str(
//!     r#"{"vocab_size": 50, "hidden_size": 16, "embedding_size": 8, "num_hidden_layers": 1,
//!         "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16,
//!         "num_labels": 3}"#,
//! )?;
//! let model = ConvBertForSequenceClassification::from_config(config, Device::Cpu, Kind::Float)?;
//! let ids = Tensor::from_slice(&[2i64, 7, 9, 3, 5, 1]).view([2, 3]);
//! let inputs = ConvBertInputs { input_ids: Some(&ids), ..Default::default() };
//! let labels = Tensor::from_slice(&[0i64, 2]);
//! let out = model.forward_t(&inputs, Some(&labels), &ForwardOptions::default(), false)?;
//! assert_eq!(out.logits.size(), [2, 3]);
//! assert!(out.loss.is_some());
//! # Ok::<(), convbert_heads::ConvBertHeadError>(())
//! ```

mod error;
mod labels;
pub mod loss;
mod masked_lm;
mod multiple_choice;
mod pretrained;
mod question_answering;
mod sequence_classification;
mod sequence_summary;
mod token_classification;

pub use error::{ConvBertHeadError, Result};
pub use labels::{Labels, ProblemType};
pub use masked_lm::{ConvBertForMaskedLM, MaskedLMOutput};
pub use multiple_choice::{ConvBertForMultipleChoice, MultipleChoiceModelOutput};
pub use pretrained::{HeadLoadReport, BASE_MODEL_PREFIX};
pub use question_answering::{
    ConvBertForQuestionAnswering, QuestionAnsweringModelOutput, SpanPositions,
};
pub use sequence_classification::{ConvBertForSequenceClassification, SequenceClassifierOutput};
pub use sequence_summary::{ConvBertSequenceSummary, SummaryType};
pub use token_classification::{ConvBertForTokenClassification, TokenClassifierOutput};

/// The workspace README's Rust snippets, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
