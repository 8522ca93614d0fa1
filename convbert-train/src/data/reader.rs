//! JSON Lines reading with 1-based line numbers in every error; blank lines are skipped.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Result, TrainError};

/// Parses every non-blank line of `path` as a `T`, with its line number.
pub(crate) fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(line).map_err(|e| data_error(path, i + 1, e))?;
        out.push((i + 1, record));
    }
    Ok(out)
}

/// A [`TrainError::Data`] for `path:line`.
pub(crate) fn data_error(path: &Path, line: usize, reason: impl ToString) -> TrainError {
    TrainError::Data {
        path: path.into(),
        line,
        reason: reason.to_string(),
    }
}
