//! The pipelines as a server drives them: inputs of many requests are prepared (tokenized and
//! checked) on any thread, their rows packed into shared batches that one thread runs through
//! the model, and each input's outputs handed back to its pipeline's `finish`. Every pipeline
//! implements [`BatchModel`]; with the padding-invariant mode (the default) a row's outputs do not
//! depend on the other rows of its batch.

use convbert_cuda_graphs::GraphStats;
use convbert_model::ConvBertConfig;
use tch::Tensor;
use tokenizers::Encoding;

use crate::batch::{Prepared, Row};
use crate::error::{PipelineError, Result};
use crate::options::{PipelineOptions, Truncation};
use crate::tokenizer::{TextTokenizer, TruncationSide};

/// One batch through a pipeline's model, plus the preparation every task shares.
pub trait BatchModel: Send + Sync {
    /// The checkpoint's tokenizer.
    fn tokenizer(&self) -> &TextTokenizer;

    /// The checkpoint's config.
    fn config(&self) -> &ConvBertConfig;

    /// Device, dtype and padding mode of the model.
    fn options(&self) -> &PipelineOptions;

    /// `rows` as one padded batch through the task head: per row the head's outputs, f32 on the
    /// CPU, token-level ones without padding (`(L, V)` fill-mask logits, `(C,)` class logits,
    /// `(L, C)` token logits, `(L,)` start and end logits; the encoder's `(L, D)` state for a
    /// feature-extraction pipeline).
    fn forward_head(&self, rows: &[&Row]) -> Result<Vec<Vec<Tensor>>>;

    /// `rows` as one padded batch through the encoder: per row `last_hidden_state` `(L, D)`.
    fn forward_features(&self, rows: &[&Row]) -> Result<Vec<Tensor>>;

    /// The CUDA graphs' captures, replays and eager runs as of the last finished batch, and why
    /// graphs are unavailable (off, not a CUDA device, a build without them).
    fn cuda_graph_stats(&self) -> Result<GraphStats>;

    /// The longest input in tokens: `max_position_embeddings`, bounded by the tokenizer's
    /// `model_max_length` when it sets one.
    fn max_input_length(&self) -> usize {
        let positions = usize::try_from(self.config().max_position_embeddings).unwrap_or(0);
        self.tokenizer()
            .model_max_length()
            .map_or(positions, |m| m.min(positions))
    }

    /// A text (or text pair) with special tokens, cut as `truncation` says (its `max_length`
    /// defaulting to [`max_input_length`](Self::max_input_length)), else whole. The one
    /// truncation path of every pipeline's `prepare` and of [`prepare_text`](Self::prepare_text).
    fn encode_text(
        &self,
        text: &str,
        pair: Option<&str>,
        truncation: Option<Truncation>,
    ) -> Result<Encoding> {
        match truncation {
            Some(t) => {
                let max = t.max_length.unwrap_or_else(|| self.max_input_length());
                self.tokenizer().encode_truncated(text, pair, max, t.side)
            }
            None => self.tokenizer().encode(text, pair),
        }
    }

    /// A text (or text pair) with special tokens as one row. Longer than
    /// [`max_input_length`](Self::max_input_length): cut on `truncate`'s side, or an error
    /// without it.
    fn prepare_text(
        &self,
        text: &str,
        pair: Option<&str>,
        truncate: Option<TruncationSide>,
    ) -> Result<Prepared> {
        let max = self.max_input_length();
        let truncation = truncate.map(|side| Truncation {
            max_length: None,
            side,
        });
        let enc = self.encode_text(text, pair, truncation)?;
        if enc.len() > max {
            return Err(PipelineError::TooLong {
                len: enc.len(),
                max,
                limit: "max_input_length",
            });
        }
        Ok(Prepared::single(enc))
    }

    /// Token ids as given (no special tokens added) as one row; ids outside the vocabulary and
    /// inputs longer than [`max_input_length`](Self::max_input_length) are refused.
    fn prepare_ids(&self, ids: &[u32]) -> Result<Prepared> {
        let vocab = self.config().vocab_size;
        if let Some(bad) = ids.iter().find(|&&i| i64::from(i) >= vocab) {
            return Err(PipelineError::Input(format!(
                "token id {bad} is outside the vocabulary of {vocab} tokens"
            )));
        }
        let max = self.max_input_length();
        if ids.len() > max {
            return Err(PipelineError::TooLong {
                len: ids.len(),
                max,
                limit: "max_input_length",
            });
        }
        if ids.is_empty() {
            return Err(PipelineError::Input("no token ids".into()));
        }
        Ok(Prepared::from_ids(
            ids.iter().map(|&i| i64::from(i)).collect(),
        ))
    }
}

/// Implements [`BatchModel`] for a pipeline with a `loaded` field, given how its head runs.
macro_rules! impl_batch_model {
    ($pipeline:ty, $granularity:expr, |$m:ident, $inputs:ident, $fo:ident| $forward:expr) => {
        impl $crate::batch_model::BatchModel for $pipeline {
            fn tokenizer(&self) -> &$crate::tokenizer::TextTokenizer {
                &self.loaded.tokenizer
            }
            fn config(&self) -> &convbert_model::ConvBertConfig {
                &self.loaded.config
            }
            fn options(&self) -> &$crate::options::PipelineOptions {
                &self.loaded.options
            }
            fn forward_head(
                &self,
                rows: &[&$crate::batch::Row],
            ) -> $crate::error::Result<Vec<Vec<tch::Tensor>>> {
                self.loaded
                    .batch_rows(rows, $granularity, |$m, $inputs, $fo| $forward)
            }
            fn forward_features(
                &self,
                rows: &[&$crate::batch::Row],
            ) -> $crate::error::Result<Vec<tch::Tensor>> {
                self.loaded.feature_rows(rows)
            }
            fn cuda_graph_stats(&self) -> $crate::error::Result<convbert_cuda_graphs::GraphStats> {
                self.loaded.graph_stats()
            }
        }
    };
}
pub(crate) use impl_batch_model;
