//! The HTTP routes. Each is thin: parse the request, run the task through [`crate::state`],
//! shape the JSON as Text Embeddings Inference or the HF Inference API return it.

pub(crate) mod embed;
pub(crate) mod inference_api;
pub(crate) mod info;
pub(crate) mod predict;
pub(crate) mod tasks;
pub(crate) mod tokenize;

use convbert_pipelines::TruncationSide;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A text, or token ids used as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum InputType {
    String(String),
    Ids(Vec<u32>),
}

/// One input or a batch of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Input {
    Single(InputType),
    Batch(Vec<InputType>),
}

impl Input {
    pub(crate) fn into_vec(self) -> Vec<InputType> {
        match self {
            // `[]` parses as an empty id list: an empty batch, as it reads.
            Input::Single(InputType::Ids(ids)) if ids.is_empty() => Vec::new(),
            Input::Single(x) => vec![x],
            Input::Batch(v) => v,
        }
    }
}

/// One text or a batch of texts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Texts {
    Single(String),
    Batch(Vec<String>),
}

impl Texts {
    pub(crate) fn is_batch(&self) -> bool {
        matches!(self, Texts::Batch(_))
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Texts::Single(x) => vec![x],
            Texts::Batch(v) => v,
        }
    }
}

/// Which end truncation cuts (TEI's names; lower case accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
pub enum TruncationDirection {
    #[serde(alias = "left")]
    Left,
    #[serde(alias = "right")]
    #[default]
    Right,
}

impl From<TruncationDirection> for TruncationSide {
    fn from(d: TruncationDirection) -> Self {
        match d {
            TruncationDirection::Left => TruncationSide::Left,
            TruncationDirection::Right => TruncationSide::Right,
        }
    }
}

/// The result of one input, or a list of them for a batch request.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// `One` for a single-input request.
    pub(crate) fn new(mut items: Vec<T>, batch: bool) -> Self {
        match items.pop() {
            Some(only) if !batch && items.is_empty() => OneOrMany::One(only),
            Some(last) => {
                items.push(last);
                OneOrMany::Many(items)
            }
            None => OneOrMany::Many(items),
        }
    }
}

pub(crate) fn default_true() -> bool {
    true
}
