//! The crate's error type: every failure of training (bad data, bad arguments, a diverging loss,
//! checkpoint I/O) is a typed [`TrainError`]; errors of the model, head and tokenizer crates are
//! wrapped unchanged.

use std::path::PathBuf;

/// Result alias used by every fallible function of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Everything that can go wrong while reading data, training, evaluating or checkpointing.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An error of the encoder crate (config, checkpoint reading).
    #[error(transparent)]
    Model(#[from] convbert_model::ConvBertError),
    /// An error of a task head (labels, shapes, loading, saving).
    #[error(transparent)]
    Head(#[from] convbert_heads::ConvBertHeadError),
    /// A torch.distributed error: joining the job, or a collective (a rank died or timed out).
    #[error("distributed training: {0}")]
    Distributed(#[from] convbert_distributed::DistError),
    /// Another rank of a data-parallel job failed; its own error says why.
    #[error("rank {rank} of the distributed job failed (its output names the problem)")]
    RankFailed { rank: usize },
    /// A tokenizer error.
    #[error(transparent)]
    Tokenizer(#[from] convbert_tokenizer::TokenizerError),
    /// A libtorch error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A libtorch kernel that tch does not bind (the fused optimizer step, the foreach norms),
    /// reached through this crate's C++ shim, raised an error.
    #[error("libtorch {op}: {message}")]
    Kernel { op: &'static str, message: String },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Serialising JSON state (trainer state, log lines).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A line that cannot be used, of a data file or of a checkpoint's `trainer_state.json`: file,
    /// 1-based line (or record) number and why (bad JSON, CSV or UTF-8, a missing field, ...).
    #[error("{path}:{line}: {reason}")]
    Data {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A label that the model's label2id (or the training set's labels) does not know.
    #[error("{path}:{line}: label {label:?} is not one of {known:?}")]
    UnknownLabel {
        path: PathBuf,
        line: usize,
        label: String,
        known: Vec<String>,
    },
    /// Classification data whose examples all have the same label: nothing to tell apart (a
    /// one-label head would be a regression head).
    #[error("{path}: every example has the label {label:?}; classification needs at least two distinct labels")]
    SingleLabel { path: PathBuf, label: String },
    /// A dataset with no usable example.
    #[error("{0}: the dataset is empty")]
    EmptyDataset(PathBuf),
    /// A new run into a directory that holds files, likely an earlier run's: its checkpoints and
    /// log would be mixed with the new run's (see `TrainingArgs::overwrite_output_dir`).
    #[error("the output directory {0} is not empty; use another, resume from one of its checkpoints or overwrite it")]
    OutputDirNotEmpty(PathBuf),
    /// A training argument that cannot work.
    #[error("argument `{name}`: {reason}")]
    Argument { name: &'static str, reason: String },
    /// The loss became NaN or infinite; nothing was saved from that step.
    #[error("the loss is {loss} at step {step}; training stopped before the weights were updated")]
    NonFiniteLoss { step: usize, loss: f64 },
    /// The gradient norm became NaN or infinite (seen when clipping); nothing was updated.
    #[error("the gradient norm is {norm} at step {step}; training stopped before the weights were updated")]
    NonFiniteGradient { step: usize, norm: f64 },
    /// A checkpoint to resume from that does not fit the run (missing state, other parameters).
    #[error("cannot resume from {path}: {reason}")]
    Resume { path: PathBuf, reason: String },
    /// Drawing the loss curve.
    #[error("loss curve {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}

impl TrainError {
    /// An `Io` error for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An `Argument` error.
    pub(crate) fn argument(name: &'static str, reason: impl Into<String>) -> Self {
        Self::Argument {
            name,
            reason: reason.into(),
        }
    }
}
