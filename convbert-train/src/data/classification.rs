//! Text classification data: `{"text": .., "text_pair": .. (optional), "label": ..}` per JSON line,
//! or a CSV file with `text[,text_pair],label` columns and a header; labels are names or integers.

use std::path::Path;

use convbert_tokenizer::ConvBertTokenizer;
use serde::Deserialize;

use super::reader::{data_error, read_jsonl, read_text};
use super::{
    label_index, sorted_label_names, truncating, DataOptions, Dataset, Encoded, Example, Target,
    Task,
};
use crate::error::{Result, TrainError};

#[derive(Debug, Deserialize)]
struct Record {
    text: String,
    #[serde(default)]
    text_pair: Option<String>,
    label: serde_json::Value,
}

fn label_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

fn read_records(path: &Path) -> Result<Vec<(usize, Record)>> {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !is_csv {
        return read_jsonl(path);
    }
    // Decoded up front, so that invalid UTF-8 is reported like in the other readers.
    let text = read_text(path)?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| data_error(path, 1, e))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (text, pair, label) = match (column("text"), column("text_pair"), column("label")) {
        (Some(t), p, Some(l)) => (t, p, l),
        _ => {
            let reason = format!("the header {headers:?} needs `text` and `label` columns");
            return Err(data_error(path, 1, reason));
        }
    };
    let mut out = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            data_error(path, line, e)
        })?;
        // The line the record starts on (quoted fields may span lines).
        let line = row.position().map_or(0, |p| p.line() as usize);
        let field = |i: usize| row.get(i).unwrap_or_default().to_string();
        out.push((
            line,
            Record {
                text: field(text),
                text_pair: pair.map(field).filter(|s| !s.is_empty()),
                label: serde_json::Value::String(field(label)),
            },
        ));
    }
    Ok(out)
}

/// Reads a classification file; labels are mapped through `options.label_names` when given.
pub fn read_classification(
    path: &Path,
    tokenizer: &ConvBertTokenizer,
    options: &DataOptions,
) -> Result<Dataset> {
    let records = read_records(path)?;
    let mut labels = Vec::with_capacity(records.len());
    for (line, r) in &records {
        let label = label_string(&r.label)
            .ok_or_else(|| data_error(path, *line, "`label` must be a string or an integer"))?;
        labels.push(label);
    }
    let names = match &options.label_names {
        Some(n) => n.clone(),
        None => sorted_label_names(&labels),
    };
    if let [only] = names.as_slice() {
        return Err(TrainError::SingleLabel {
            path: path.into(),
            label: only.clone(),
        });
    }
    let opts = truncating(options.max_length);
    let mut examples = Vec::with_capacity(records.len());
    for ((line, r), label) in records.iter().zip(&labels) {
        let enc = match &r.text_pair {
            Some(pair) => tokenizer.encode_pair(&r.text, pair, &opts),
            None => tokenizer.encode(&r.text, &opts),
        }
        .map_err(|e| data_error(path, *line, e))?;
        examples.push(Example {
            inputs: vec![Encoded::from_encoding(&enc)],
            target: Target::Class(label_index(&names, label, path, *line)?),
        });
    }
    if examples.is_empty() {
        return Err(TrainError::EmptyDataset(path.into()));
    }
    Ok(Dataset {
        task: Task::TextClassification,
        examples,
        label_names: names,
        squad: Vec::new(),
    })
}
