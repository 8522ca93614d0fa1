//! The one error type of this crate. Every public operation returns [`Result`]; shapes, kinds and
//! ranges coming from users are checked at the public boundary and reported with these variants.

use std::path::PathBuf;

use crate::checkpoint::LoadReport;

/// Shorthand for `std::result::Result<T, ConvBertError>`.
pub type Result<T, E = ConvBertError> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring, loading or running a ConvBERT model.
#[derive(Debug, thiserror::Error)]
pub enum ConvBertError {
    /// A configuration value is invalid (HF would fail later, or compute something else).
    #[error("invalid config field `{field}`: {reason}")]
    Config { field: String, reason: String },

    /// A tensor handed to the model has the wrong shape.
    #[error("`{name}` has shape {got:?}, expected {expected}")]
    Shape {
        name: String,
        expected: String,
        got: Vec<i64>,
    },

    /// A tensor handed to the model has the wrong element kind.
    #[error("`{name}` has kind {got:?}, expected {expected}")]
    Kind {
        name: String,
        expected: String,
        got: tch::Kind,
    },

    /// An input is missing, ambiguous or empty.
    #[error("invalid input: {0}")]
    Input(String),

    /// An id lies outside `[0, limit)` (`vocab_size`, `type_vocab_size` or the position table).
    #[error("`{name}` contains {value}, outside [0, {limit})")]
    InputIdOutOfRange {
        name: String,
        value: i64,
        limit: i64,
    },

    /// The sequence is longer than `max_position_embeddings`.
    #[error("sequence length {len} exceeds max_position_embeddings = {max}")]
    SequenceTooLong { len: i64, max: i64 },

    /// The checkpoint keys do not match the model: every missing, unexpected and mis-shaped key.
    #[error("checkpoint does not match the model: {0}")]
    Weights(Box<LoadReport>),

    /// A weight file is truncated, corrupt or in an unsupported format.
    #[error("cannot read weights {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    /// No checkpoint directory or hub snapshot was found; `searched` lists every place tried.
    #[error("cannot find {what}; looked in: {searched:?}")]
    NotFound {
        what: String,
        searched: Vec<PathBuf>,
    },

    /// A model file could not be downloaded from the Hugging Face Hub: the HTTP status when the
    /// server answered one, and what it means in plain words.
    #[error("cannot download {file} of {model_id} from {url}: {reason}")]
    Download {
        model_id: String,
        file: String,
        url: String,
        status: Option<u16>,
        reason: String,
    },

    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A JSON file (config.json, index.json) is not valid JSON or has the wrong structure.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// An error raised by libtorch.
    #[error(transparent)]
    Tch(#[from] tch::TchError),
}

impl ConvBertError {
    pub(crate) fn config(field: &str, reason: impl Into<String>) -> Self {
        ConvBertError::Config {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ConvBertError::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ConvBertError::Io {
            path: path.into(),
            source,
        }
    }
}
