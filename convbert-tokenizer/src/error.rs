//! The crate's error type: every fallible operation returns [`Result`].

use std::path::PathBuf;

/// Everything that can go wrong while loading, encoding or saving.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A vocabulary file or input is not valid UTF-8 (Python raises `UnicodeDecodeError`).
    #[error("invalid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    /// A required special token is absent from the vocabulary.
    #[error("the vocabulary has no {0:?} token")]
    MissingToken(String),
    /// A `tokenizer.json` that does not describe a BERT WordPiece tokenizer.
    #[error("tokenizer.json: {0}")]
    Json(String),
    /// Options that the reference rejects with a `ValueError` (or a panic in the Rust backend).
    #[error("invalid options: {0}")]
    Options(String),
    /// A checkpoint file (`tokenizer_config.json`, `special_tokens_map.json`, `added_tokens.json`)
    /// that is not valid JSON or has a field of the wrong type.
    #[error("{path}: {reason}")]
    File {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint directory with neither `tokenizer.json` nor `vocab.txt`.
    #[error("{0}: no vocab.txt or tokenizer.json")]
    MissingVocab(PathBuf),
    /// An error reported by the `tokenizers` crate.
    #[error("tokenizers: {0}")]
    Backend(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TokenizerError>;

impl TokenizerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<serde_json::Error> for TokenizerError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e.to_string())
    }
}
