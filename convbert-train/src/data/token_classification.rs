//! Token classification data: `{"tokens": [words], "tags": [labels]}` per JSON line. Each word is
//! split into word pieces; its first piece carries the tag, the others and the special tokens -100
//! (the `label_all_tokens=False` rule of HF's run_ner.py).

use std::path::Path;

use convbert_tokenizer::ConvBertTokenizer;
use serde::Deserialize;

use super::reader::{data_error, read_jsonl};
use super::{
    label_index, sorted_label_names, DataOptions, Dataset, Encoded, Example, Target, Task,
};
use crate::error::{Result, TrainError};

/// The ignored label of HF's losses.
pub(crate) const IGNORE: i64 = -100;

#[derive(Debug, Deserialize)]
struct Record {
    tokens: Vec<String>,
    tags: Vec<String>,
}

/// Reads a token classification file; tag names map through `options.label_names` when given.
pub fn read_token_classification(
    path: &Path,
    tokenizer: &ConvBertTokenizer,
    options: &DataOptions,
) -> Result<Dataset> {
    let records: Vec<(usize, Record)> = read_jsonl(path)?;
    let names = match &options.label_names {
        Some(n) => n.clone(),
        None => sorted_label_names(records.iter().flat_map(|(_, r)| &r.tags)),
    };
    let vocab = tokenizer.vocab();
    let special = |t: &str| vocab.token_to_id(t).map(i64::from);
    let cfg = tokenizer.config();
    let (cls, sep) = match (special(&cfg.cls_token), special(&cfg.sep_token)) {
        (Some(c), Some(s)) => (c, s),
        _ => {
            return Err(TrainError::argument(
                "tokenizer",
                "no [CLS] or [SEP] in the vocabulary",
            ))
        }
    };
    let budget = options.max_length.saturating_sub(2);
    let mut examples = Vec::with_capacity(records.len());
    for (line, r) in &records {
        if r.tokens.len() != r.tags.len() {
            let reason = format!("{} tokens but {} tags", r.tokens.len(), r.tags.len());
            return Err(data_error(path, *line, reason));
        }
        let (mut ids, mut labels, mut starts) = (vec![cls], vec![IGNORE], vec![true]);
        for (word, tag) in r.tokens.iter().zip(&r.tags) {
            let tag = label_index(&names, tag, path, *line)?;
            for (k, id) in tokenizer.tokenize_ids(word)?.into_iter().enumerate() {
                if ids.len() > budget {
                    break;
                }
                ids.push(i64::from(id));
                labels.push(if k == 0 { tag } else { IGNORE });
                starts.push(k == 0);
            }
        }
        ids.push(sep);
        labels.push(IGNORE);
        starts.push(true);
        let n = ids.len();
        let mut special = vec![false; n];
        special[0] = true;
        special[n - 1] = true;
        examples.push(Example {
            inputs: vec![Encoded {
                input_ids: ids,
                token_type_ids: vec![0; n],
                special,
                word_start: starts,
            }],
            target: Target::Tags(labels),
        });
    }
    Ok(Dataset {
        task: Task::TokenClassification,
        examples,
        label_names: names,
        squad: Vec::new(),
    })
}
