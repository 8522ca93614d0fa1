//! Training data: readers for the five tasks turn files into tokenized [`Example`]s, each with its
//! target. Every malformed record is reported with its file and line ([`TrainError::Data`]).

mod classification;
mod multiple_choice;
mod question_answering;
mod reader;
mod text_lines;
mod token_classification;

use std::path::Path;

use convbert_tokenizer::{ConvBertTokenizer, EncodeOptions, Encoding, TruncationStrategy};

use crate::error::{Result, TrainError};

pub(crate) use reader::{data_error, read_text};

pub use classification::read_classification;
pub use multiple_choice::read_multiple_choice;
pub use question_answering::{read_squad, SquadFeature};
pub use text_lines::read_text_lines;
pub use token_classification::read_token_classification;

/// The training task, i.e. which head is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Sequence classification from `{text[, text_pair], label}` (JSONL or CSV).
    TextClassification,
    /// Token classification from `{tokens, tags}` (JSONL).
    TokenClassification,
    /// Extractive QA from SQuAD v1/v2 JSON.
    QuestionAnswering,
    /// Multiple choice from `{context, choices, label}` (JSONL).
    MultipleChoice,
    /// Masked language modelling on raw text lines.
    MaskedLm,
}

impl Task {
    /// Parses the CLI spelling (`text-classification`, ...).
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "text-classification" => Task::TextClassification,
            "token-classification" => Task::TokenClassification,
            "question-answering" => Task::QuestionAnswering,
            "multiple-choice" => Task::MultipleChoice,
            "masked-lm" => Task::MaskedLm,
            other => {
                return Err(TrainError::argument(
                    "task",
                    format!("unknown task {other:?}"),
                ))
            }
        })
    }
}

/// One tokenized sequence (special tokens included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids `(seq,)`.
    pub input_ids: Vec<i64>,
    /// Segment ids `(seq,)`.
    pub token_type_ids: Vec<i64>,
    /// True for `[CLS]`, `[SEP]` (never masked by MLM).
    pub special: Vec<bool>,
    /// True where a token starts a word (whole-word masking); all true when unknown.
    pub word_start: Vec<bool>,
}

impl Encoded {
    pub(crate) fn from_encoding(enc: &Encoding) -> Self {
        Self {
            input_ids: enc.ids.iter().map(|&i| i64::from(i)).collect(),
            token_type_ids: enc.type_ids.iter().map(|&i| i64::from(i)).collect(),
            special: enc.special_tokens_mask.iter().map(|&m| m == 1).collect(),
            word_start: vec![true; enc.ids.len()],
        }
    }
}

/// What an example is trained to predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A class index.
    Class(i64),
    /// One label per token, -100 where ignored.
    Tags(Vec<i64>),
    /// Answer start and end token positions (0 = `[CLS]` for no answer in the window).
    Span { start: i64, end: i64 },
    /// The correct choice.
    Choice(i64),
    /// MLM: the labels come from masking at batch time.
    Masked,
}

/// One training example: one sequence, or one per choice for multiple choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The tokenized sequence(s).
    pub inputs: Vec<Encoded>,
    /// The target.
    pub target: Target,
}

/// A tokenized dataset of one task.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The task.
    pub task: Task,
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// Class names by index (classification tasks), empty otherwise.
    pub label_names: Vec<String>,
    /// For QA: per example, the window's context offsets and gold answers (for EM/F1).
    pub squad: Vec<SquadFeature>,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True when there is no example.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }
}

/// Options shared by the readers.
#[derive(Debug, Clone)]
pub struct DataOptions {
    /// Longest sequence in tokens, special tokens included.
    pub max_length: usize,
    /// QA: overlap of consecutive context windows in tokens
    /// ([`default_doc_stride`](Self::default_doc_stride) unless set).
    pub doc_stride: usize,
    /// Class names fixed in advance (from the model config or the training set); `None` collects
    /// them from this file, sorted.
    pub label_names: Option<Vec<String>>,
}

impl DataOptions {
    /// HF run_qa's doc_stride (128), at most half the window so that consecutive windows move
    /// forward.
    pub fn default_doc_stride(max_length: usize) -> usize {
        (max_length / 2).min(128)
    }
}

impl Default for DataOptions {
    fn default() -> Self {
        let max_length = 128;
        Self {
            max_length,
            doc_stride: Self::default_doc_stride(max_length),
            label_names: None,
        }
    }
}

/// Reads the dataset of `task` from `path`.
pub fn read_dataset(
    task: Task,
    path: &Path,
    tokenizer: &ConvBertTokenizer,
    options: &DataOptions,
) -> Result<Dataset> {
    let data = match task {
        Task::TextClassification => read_classification(path, tokenizer, options)?,
        Task::TokenClassification => read_token_classification(path, tokenizer, options)?,
        Task::QuestionAnswering => read_squad(path, tokenizer, options)?,
        Task::MultipleChoice => read_multiple_choice(path, tokenizer, options)?,
        Task::MaskedLm => read_text_lines(path, tokenizer, options)?,
    };
    if data.is_empty() {
        return Err(TrainError::EmptyDataset(path.into()));
    }
    Ok(data)
}

/// Encode options: truncation to `max_length`, no padding (the collator pads per batch).
pub(crate) fn truncating(max_length: usize) -> EncodeOptions {
    EncodeOptions {
        truncation: TruncationStrategy::LongestFirst,
        max_length: Some(max_length),
        ..EncodeOptions::default()
    }
}

/// The distinct labels, sorted: numerically when every label is an integer (so that class `10`
/// comes after `2` and integer labels keep their index), by name otherwise.
pub(crate) fn sorted_label_names<'a>(labels: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let names: Vec<String> = labels
        .into_iter()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let numbers: Option<Vec<i64>> = names.iter().map(|n| n.parse().ok()).collect();
    match numbers {
        Some(mut n) => {
            n.sort_unstable();
            n.iter().map(i64::to_string).collect()
        }
        None => names,
    }
}

/// Index of `label` in `names`, or [`TrainError::UnknownLabel`].
pub(crate) fn label_index(names: &[String], label: &str, path: &Path, line: usize) -> Result<i64> {
    names
        .iter()
        .position(|n| n == label)
        .map(|i| i as i64)
        .ok_or_else(|| TrainError::UnknownLabel {
            path: path.into(),
            line,
            label: label.into(),
            known: names.to_vec(),
        })
}
