//! Reading text files with 1-based line numbers in every error: invalid UTF-8 is reported at its
//! line, and JSON Lines are parsed line by line (blank lines are skipped).

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Result, TrainError};

/// The UTF-8 text of `path`; invalid UTF-8 is a [`TrainError::Data`] at the line that holds it.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        let line_start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = at - line_start + 1;
        data_error(
            path,
            line,
            format!("invalid UTF-8 at byte {column} of the line"),
        )
    })
}

/// Parses every non-blank line of `path` as a `T`, with its line number.
pub(crate) fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>> {
    let text = read_text(path)?;
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
