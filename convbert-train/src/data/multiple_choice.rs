//! Multiple choice data: `{"context": .., "choices": [..], "label": k}` per JSON line; each choice
//! is encoded as the pair (context, choice), all choices of a file in equal number.

use std::path::Path;

use convbert_tokenizer::ConvBertTokenizer;
use serde::Deserialize;

use super::reader::{data_error, read_jsonl};
use super::{truncating, DataOptions, Dataset, Encoded, Example, Target, Task};
use crate::error::Result;

#[derive(Debug, Deserialize)]
struct Record {
    context: String,
    choices: Vec<String>,
    label: i64,
}

/// Reads a multiple-choice file.
pub fn read_multiple_choice(
    path: &Path,
    tokenizer: &ConvBertTokenizer,
    options: &DataOptions,
) -> Result<Dataset> {
    let records: Vec<(usize, Record)> = read_jsonl(path)?;
    let opts = truncating(options.max_length);
    let mut examples = Vec::with_capacity(records.len());
    let width = records.first().map(|(_, r)| r.choices.len());
    for (line, r) in &records {
        if Some(r.choices.len()) != width || r.choices.len() < 2 {
            let reason = format!(
                "{} choices; every line needs the same number, at least 2",
                r.choices.len()
            );
            return Err(data_error(path, *line, reason));
        }
        if r.label < 0 || r.label as usize >= r.choices.len() {
            let reason = format!(
                "label {} is not a choice index below {}",
                r.label,
                r.choices.len()
            );
            return Err(data_error(path, *line, reason));
        }
        let mut inputs = Vec::with_capacity(r.choices.len());
        for choice in &r.choices {
            let enc = tokenizer
                .encode_pair(&r.context, choice, &opts)
                .map_err(|e| data_error(path, *line, e))?;
            inputs.push(Encoded::from_encoding(&enc));
        }
        examples.push(Example {
            inputs,
            target: Target::Choice(r.label),
        });
    }
    Ok(Dataset {
        task: Task::MultipleChoice,
        examples,
        label_names: Vec::new(),
        squad: Vec::new(),
    })
}
