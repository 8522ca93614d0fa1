//! Feature extraction: the encoder's `last_hidden_state` per text (HF `FeatureExtractionPipeline`,
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/pipelines/feature_extraction.py>),
//! or one pooled vector per text (the `[CLS]` state, or the mean over the attention mask).

use std::path::Path;

use convbert_model::{ConvBertModel, ForwardOptions};
use tch::nn::VarStore;
use tch::Tensor;

use crate::batch::{next_output, ok_rows, run_batched, Granularity, Row};
use crate::error::{PipelineError, Result};
use crate::loading::{check_len, locate_with_tokenizer};
use crate::options::PipelineOptions;
use crate::tokenizer::TextTokenizer;

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

/// A ConvBERT encoder (any checkpoint: base or head) and its tokenizer.
#[derive(Debug)]
pub struct FeatureExtractionPipeline {
    model: ConvBertModel,
    _vs: VarStore,
    tokenizer: TextTokenizer,
    options: PipelineOptions,
}

impl FeatureExtractionPipeline {
    /// Loads the encoder of a checkpoint directory or cached HF model id (head keys are ignored).
    pub fn from_pretrained(source: impl AsRef<Path>, options: PipelineOptions) -> Result<Self> {
        options.check()?;
        let (dir, tokenizer) = locate_with_tokenizer(source.as_ref())?;
        let (model, vs) = ConvBertModel::from_pretrained(&dir, options.device, options.kind)?;
        Ok(Self {
            model,
            _vs: vs,
            tokenizer,
            options,
        })
    }

    /// The encoder's hidden size D.
    pub fn hidden_size(&self) -> i64 {
        self.model.config().hidden_size
    }

    /// Per text, f32 on the CPU: (L, D) for [`Pooling::None`], else (D,). A text too long for
    /// the model gives an `Err` in its own slot.
    pub fn run(&self, texts: &[&str], pooling: Pooling) -> Result<Vec<Result<Tensor>>> {
        let max = self.model.config().max_position_embeddings;
        let prepared: Vec<Result<Row>> = texts
            .iter()
            .map(|t| {
                let row = Row::new(&self.tokenizer.encode(t, None)?);
                check_len(row.ids.len(), max).map_err(PipelineError::Input)?;
                Ok(row)
            })
            .collect();
        let states = run_batched(
            &ok_rows(&prepared),
            &self.options,
            i64::from(self.tokenizer.pad_id()),
            Granularity::Token,
            |inputs, fo: &ForwardOptions| {
                Ok(vec![
                    self.model.forward_t(inputs, fo, false)?.last_hidden_state,
                ])
            },
        )?;
        let mut states = states.into_iter();
        prepared
            .into_iter()
            .map(|p| {
                let Ok(_) = p else {
                    return Ok(p.map(|_| Tensor::new()));
                };
                let h = next_output(&mut states)?;
                Ok(Ok(match pooling {
                    Pooling::None => h,
                    Pooling::Cls => h.f_get(0)?,
                    Pooling::Mean => h.f_mean_dim(0, false, None)?,
                }))
            })
            .collect()
    }
}
