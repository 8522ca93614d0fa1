//! The crate's error type. Library calls return [`Result`]; per-input problems (a text without
//! `[MASK]`, a sequence longer than the model allows) are [`PipelineError::Input`] values returned
//! next to the other inputs' results, so one bad input never loses the rest.

use std::path::PathBuf;

use convbert_heads::ConvBertHeadError;
use convbert_model::ConvBertError;

/// Shorthand for `std::result::Result<T, PipelineError>`.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything that can go wrong while loading or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Loading or running the encoder.
    #[error(transparent)]
    Model(#[from] ConvBertError),
    /// Loading or running a task head.
    #[error(transparent)]
    Head(#[from] ConvBertHeadError),
    /// A libtorch error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// int8 quantization failed (e.g. a libtorch without fbgemm's quantized ops).
    #[error(transparent)]
    Quantization(#[from] convbert_quant::QuantError),
    /// Replaying a CUDA graph failed (a failed capture falls back to eager instead).
    #[error(transparent)]
    Graph(#[from] convbert_cuda_graphs::GraphError),
    /// No usable tokenizer files, or the tokenizer library failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// One input cannot be processed (the others still are).
    #[error("{0}")]
    Input(String),
    /// An input longer than the model takes (and truncation was not asked for); `limit` names
    /// the bound (`max_position_embeddings`, or the server's `max_input_length`).
    #[error("sequence of {len} tokens exceeds {limit} = {max}")]
    TooLong {
        len: usize,
        max: usize,
        limit: &'static str,
    },
    /// A call into the model panicked earlier; the model is no longer usable.
    #[error("the model is unusable: an earlier call into it panicked")]
    Poisoned,
    /// An option value the pipeline cannot use.
    #[error("invalid option `{name}`: {reason}")]
    Option { name: &'static str, reason: String },
}

impl PipelineError {
    /// Whether this is an input longer than the model takes, one that truncation would have cut.
    pub fn is_too_long(&self) -> bool {
        matches!(self, PipelineError::TooLong { .. })
    }

    pub(crate) fn tokenizer(e: impl std::fmt::Display) -> Self {
        PipelineError::Tokenizer(e.to_string())
    }

    pub(crate) fn option(name: &'static str, reason: impl Into<String>) -> Self {
        PipelineError::Option {
            name,
            reason: reason.into(),
        }
    }
}
