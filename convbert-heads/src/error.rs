//! The crate's error type: every failure of a head (bad labels, bad inputs, a checkpoint that does not
//! fit the head) is a typed [`ConvBertHeadError`]; encoder and loader errors are wrapped unchanged.

use std::path::PathBuf;

use convbert_model::ConvBertError;

/// Result alias used by every fallible function of this crate.
pub type Result<T> = std::result::Result<T, ConvBertHeadError>;

/// Everything that can go wrong while building, loading, running or saving a head.
#[derive(Debug, thiserror::Error)]
pub enum ConvBertHeadError {
    /// An error of the encoder crate (config, checkpoint reading, encoder forward).
    #[error(transparent)]
    Model(#[from] ConvBertError),
    /// A libtorch error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Serialising or parsing `config.json`.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A tensor (input or labels) whose shape does not fit the head.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        what: &'static str,
        expected: String,
        got: Vec<i64>,
    },
    /// A tensor whose dtype does not fit (e.g. float class indices, integer regression targets).
    #[error("{what}: expected {expected}, got dtype {got:?}")]
    Kind {
        what: &'static str,
        expected: &'static str,
        got: tch::Kind,
    },
    /// A label value outside the valid range (class index, vocabulary id, choice index).
    #[error("{what}: value {value} outside {valid}")]
    LabelOutOfRange {
        what: &'static str,
        value: i64,
        valid: String,
    },
    /// A config value the head cannot work with.
    #[error("config field `{field}`: {reason}")]
    Config { field: String, reason: String },
    /// Checkpoint tensors whose shapes disagree with the head (e.g. a classifier for another
    /// `num_labels`): `name: expected [..], got [..]` per tensor.
    #[error("checkpoint weights with the wrong shape: {0:?}")]
    MismatchedWeights(Vec<String>),
    /// Encoder weights absent from the checkpoint (only head weights may be freshly initialised).
    #[error("checkpoint lacks encoder weights: {0:?}")]
    MissingWeights(Vec<String>),
}

impl ConvBertHeadError {
    pub(crate) fn shape(
        what: &'static str,
        expected: impl Into<String>,
        got: &tch::Tensor,
    ) -> Self {
        Self::Shape {
            what,
            expected: expected.into(),
            got: got.size(),
        }
    }
}
