//! Options shared by every pipeline: device, dtype, batch size, the padding mode and CUDA graphs;
//! and [`Truncation`], HF's `truncation=True` / `max_length` for the text pipelines.

use tch::{Device, Kind};

use crate::error::{PipelineError, Result};
use crate::quantization::Quantization;
use crate::tokenizer::TruncationSide;

/// How a pipeline runs its model.
///
/// `padding_invariant` (default `true`) runs ConvBERT in `convbert-model`'s padding-invariant mode:
/// Hugging Face's convolution branch lets padded positions leak into real tokens, so a padded
/// batch gives slightly different numbers than each input alone. With this mode on, every result
/// equals the input's unpadded single run, whatever else was in its batch. Set it to `false` for
/// HF's exact padded behaviour (parity checks against batched HF runs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineOptions {
    /// Where the model runs.
    pub device: Device,
    /// Weight and compute dtype (`Float`, `Half` or `BFloat16`); results are returned in f32.
    pub kind: Kind,
    /// Sequences per forward call; inputs are sorted by length before batching.
    pub batch_size: usize,
    /// See the type docs; `true` by default.
    pub padding_invariant: bool,
    /// int8 dynamic quantization after `from_pretrained` loads the model (CPU, `kind` f32); a
    /// model handed to a pipeline's `new` runs as built. None by default.
    pub quantization: Quantization,
    /// On a CUDA device, replay small batches from CUDA graphs (`convbert-cuda-graphs`, built
    /// with the `cuda-graphs` feature): the same results, fewer kernel launches. `true` by
    /// default; ignored elsewhere.
    pub cuda_graphs: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            kind: Kind::Float,
            batch_size: 8,
            padding_invariant: true,
            quantization: Quantization::None,
            cuda_graphs: true,
        }
    }
}

impl PipelineOptions {
    pub(crate) fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(PipelineError::option("batch_size", "must be at least 1"));
        }
        if !matches!(self.kind, Kind::Float | Kind::Half | Kind::BFloat16) {
            return Err(PipelineError::option(
                "kind",
                format!("{:?} is not one of f32, f16, bf16", self.kind),
            ));
        }
        self.quantization.check(self.device, self.kind)?;
        Ok(())
    }
}

/// HF's `truncation=True` with an optional `max_length`: inputs longer than `max_length` tokens
/// (special tokens included) are cut on `side`, the longer text of a pair first. Set on a
/// pipeline with `with_truncation`; without it, a text longer than the model takes is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Truncation {
    /// Longest input in tokens; `None`: the tokenizer's `model_max_length` bounded by
    /// `max_position_embeddings` (what HF's `truncation=True` uses).
    pub max_length: Option<usize>,
    /// Which end is cut (HF `truncation_side`, right by default).
    pub side: TruncationSide,
}
