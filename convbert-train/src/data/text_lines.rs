//! Masked-LM data: one example per non-blank line of raw text, truncated to `max_length`; word
//! starts (pieces not beginning with `##`) are kept for whole-word masking.

use std::path::Path;

use convbert_tokenizer::ConvBertTokenizer;

use super::reader::{data_error, read_text};
use super::{truncating, DataOptions, Dataset, Encoded, Example, Target, Task};
use crate::error::Result;

/// Reads a text file for MLM.
pub fn read_text_lines(
    path: &Path,
    tokenizer: &ConvBertTokenizer,
    options: &DataOptions,
) -> Result<Dataset> {
    let text = read_text(path)?;
    let opts = truncating(options.max_length);
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let enc = tokenizer
            .encode(line, &opts)
            .map_err(|e| data_error(path, i + 1, e))?;
        let mut encoded = Encoded::from_encoding(&enc);
        let tokens =
            tokenizer.convert_ids_to_tokens(&enc.ids, convbert_tokenizer::SpecialTokens::Keep);
        encoded.word_start = tokens.iter().map(|t| !t.starts_with("##")).collect();
        examples.push(Example {
            inputs: vec![encoded],
            target: Target::Masked,
        });
    }
    Ok(Dataset {
        task: Task::MaskedLm,
        examples,
        label_names: Vec::new(),
        squad: Vec::new(),
    })
}
