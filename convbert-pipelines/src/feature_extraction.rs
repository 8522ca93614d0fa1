//! Feature extraction: the encoder's `last_hidden_state` per text (HF `FeatureExtractionPipeline`,
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/pipelines/feature_extraction.py>),
//! or one pooled vector per text (the `[CLS]` state, or the mean over the attention mask).

use std::path::Path;

use tch::Tensor;

use crate::batch::{single_outputs, Granularity, Prepared};
use crate::batch_model::{impl_batch_model, BatchModel};
use crate::error::Result;
use crate::loading::{check_len, Encoder, Loaded, TaskHead};
use crate::options::{PipelineOptions, Truncation};

/// What [`FeatureExtractionPipeline::run`] returns per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// `last_hidden_state` of every token, (L, D) (HF's feature-extraction output).
    #[default]
    None,
    /// The first (`[CLS]`) token's state, (D,).
    Cls,
    /// The mean of the states of the real (unpadded) tokens, (D,).
    Mean,
}

impl Pooling {
    /// Pools the `(L, D)` states of one text's real tokens.
    pub fn apply(self, states: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Pooling::None => states.shallow_clone(),
            Pooling::Cls => states.f_get(0)?,
            Pooling::Mean => states.f_mean_dim(0, false, None)?,
        })
    }
}

/// A ConvBERT encoder (any checkpoint: base or head) and its tokenizer.
#[derive(Debug)]
pub struct FeatureExtractionPipeline {
    loaded: Loaded<Encoder>,
}

impl_batch_model!(
    FeatureExtractionPipeline,
    Granularity::Token,
    |m, inputs, fo| Ok(vec![
        m.encoder().forward_t(inputs, fo, false)?.last_hidden_state
    ])
);

impl FeatureExtractionPipeline {
    /// Loads the encoder of a checkpoint directory or cached HF model id (head keys are ignored).
    pub fn from_pretrained(source: impl AsRef<Path>, options: PipelineOptions) -> Result<Self> {
        Ok(Self {
            loaded: Loaded::from_pretrained(source.as_ref(), options, "feature extraction")?,
        })
    }

    /// The pipeline with HF's `truncation=True` / `max_length` (see [`Truncation`]) applied by
    /// `prepare` and `run`; `None` (the default) makes a too long input an error. A
    /// `max_length` shorter than a text's special tokens is an option error.
    pub fn with_truncation(mut self, truncation: Option<Truncation>) -> Result<Self> {
        self.loaded.set_truncation(truncation)?;
        Ok(self)
    }

    /// The truncation set with [`with_truncation`](Self::with_truncation).
    pub fn truncation(&self) -> Option<Truncation> {
        self.loaded.truncation
    }

    /// The encoder's hidden size D.
    pub fn hidden_size(&self) -> i64 {
        self.loaded.config.hidden_size
    }

    /// One text as a model row, truncated when set; too long for the model is an error.
    pub fn prepare(&self, text: &str) -> Result<Prepared> {
        let enc = self.encode_text(text, None, self.loaded.truncation)?;
        check_len(enc.len(), self.loaded.config.max_position_embeddings)?;
        Ok(Prepared::single(enc))
    }

    /// Per text, f32 on the CPU: (L, D) for [`Pooling::None`], else (D,). A text too long for
    /// the model gives an `Err` in its own slot.
    pub fn run(&self, texts: &[&str], pooling: Pooling) -> Result<Vec<Result<Tensor>>> {
        let prepared = texts.iter().map(|t| self.prepare(t)).collect();
        self.loaded.run_prepared(
            prepared,
            Granularity::Token,
            |m, inputs, fo| {
                Ok(vec![
                    m.encoder().forward_t(inputs, fo, false)?.last_hidden_state,
                ])
            },
            |_, _, outputs| {
                let states = single_outputs(outputs)?;
                pooling.apply(&states[0])
            },
        )
    }
}
