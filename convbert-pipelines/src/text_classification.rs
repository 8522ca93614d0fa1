//! Text classification of single texts and text pairs: label scores after softmax (single-label),
//! sigmoid (multi-label or one label) or nothing (regression), best first, top-k. Mirrors
//! transformers v4.57.6 `TextClassificationPipeline` called with an explicit `top_k`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/pipelines/text_classification.py>).

use std::path::Path;

use convbert_heads::{ConvBertForSequenceClassification, Labels, ProblemType};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::batch::{single_outputs, Granularity, Prepared};
use crate::batch_model::{impl_batch_model, BatchModel};
use crate::error::Result;
use crate::loading::{check_len, Loaded};
use crate::options::{PipelineOptions, Truncation};

/// A text, or a text pair (HF's `{"text": .., "text_pair": ..}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextInput {
    /// The (first) text.
    pub text: String,
    /// The second text of a pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_pair: Option<String>,
}

/// The function turning logits into scores (HF `ClassificationFunction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreFunction {
    /// Probabilities over the labels.
    Softmax,
    /// Independent probability per label.
    Sigmoid,
    /// Raw logits.
    None,
}

/// One label with its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    /// `id2label` name of the class.
    pub label: String,
    /// Its score.
    pub score: f64,
}

/// A sequence-classification model and its tokenizer.
#[derive(Debug)]
pub struct TextClassificationPipeline {
    loaded: Loaded<ConvBertForSequenceClassification>,
    labels: Labels,
}

impl_batch_model!(
    TextClassificationPipeline,
    Granularity::Sequence,
    |m, inputs, fo| Ok(vec![m.forward_t(inputs, None, fo, false)?.logits])
);

impl TextClassificationPipeline {
    /// Loads a checkpoint directory or a cached HF model id; warns when the head is new.
    pub fn from_pretrained(source: impl AsRef<Path>, options: PipelineOptions) -> Result<Self> {
        let loaded: Loaded<ConvBertForSequenceClassification> =
            Loaded::from_pretrained(source.as_ref(), options, "text classification")?;
        let labels = loaded.model()?.labels().clone();
        Ok(Self { loaded, labels })
    }

    /// The checkpoint's labels (`id2label`, problem type).
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Warnings found while loading (a newly initialised head), for the user.
    pub fn warnings(&self) -> &[String] {
        &self.loaded.warnings
    }

    /// The pipeline with HF's `truncation=True` / `max_length` (see [`Truncation`]) applied by
    /// `prepare` and `run`; `None` (the default) makes a too long input an error. A
    /// `max_length` shorter than a text's special tokens is an option error.
    pub fn with_truncation(mut self, truncation: Option<Truncation>) -> Result<Self> {
        self.loaded.set_truncation(truncation)?;
        Ok(self)
    }

    /// The truncation set with [`with_truncation`](Self::with_truncation).
    pub fn truncation(&self) -> Option<Truncation> {
        self.loaded.truncation
    }

    /// HF's default: none for regression, sigmoid for multi-label or a single label, else softmax.
    pub fn default_function(&self) -> ScoreFunction {
        let labels = &self.labels;
        match labels.problem_type {
            Some(ProblemType::Regression) => ScoreFunction::None,
            Some(ProblemType::MultiLabelClassification) => ScoreFunction::Sigmoid,
            _ if labels.num_labels == 1 => ScoreFunction::Sigmoid,
            _ => ScoreFunction::Softmax,
        }
    }

    /// One text or pair as a model row, truncated when set; too long for the model is an
    /// error.
    pub fn prepare(&self, x: &TextInput) -> Result<Prepared> {
        let pair = x.text_pair.as_deref();
        let enc = self.encode_text(&x.text, pair, self.loaded.truncation)?;
        check_len(enc.len(), self.loaded.config.max_position_embeddings)?;
        Ok(Prepared::single(enc))
    }

    /// Per input, the labels sorted by score (best first), cut to `top_k` (`None` = all).
    pub fn run(
        &self,
        inputs: &[TextInput],
        top_k: Option<usize>,
        function: Option<ScoreFunction>,
    ) -> Result<Vec<Result<Vec<LabelScore>>>> {
        let prepared = inputs.iter().map(|x| self.prepare(x)).collect();
        self.loaded.run_prepared(
            prepared,
            Granularity::Sequence,
            |m, inputs, fo| Ok(vec![m.forward_t(inputs, None, fo, false)?.logits]),
            |_, _, outputs| {
                let logits = single_outputs(outputs)?;
                self.finish(&logits[0], top_k, function)
            },
        )
    }

    /// The ranked labels of one input's `(C,)` logits (see [`run`](Self::run)); `function`
    /// `None` is [`default_function`](Self::default_function).
    pub fn finish(
        &self,
        logits: &Tensor,
        top_k: Option<usize>,
        function: Option<ScoreFunction>,
    ) -> Result<Vec<LabelScore>> {
        let function = function.unwrap_or_else(|| self.default_function());
        let raw = Vec::<f32>::try_from(logits)?;
        Ok(self.rank(&raw, top_k, function))
    }

    fn rank(
        &self,
        logits: &[f32],
        top_k: Option<usize>,
        function: ScoreFunction,
    ) -> Vec<LabelScore> {
        let x: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
        let scores: Vec<f64> = match function {
            ScoreFunction::None => x,
            ScoreFunction::Sigmoid => x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
            ScoreFunction::Softmax => {
                let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            }
        };
        let names = &self.labels.id2label;
        let mut ranked: Vec<LabelScore> = scores
            .iter()
            .enumerate()
            .map(|(i, &score)| LabelScore {
                label: names
                    .get(&(i as i64))
                    .cloned()
                    .unwrap_or_else(|| format!("LABEL_{i}")),
                score,
            })
            .collect();
        // Stable, like Python's sort(reverse=True): equal scores keep label order.
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        ranked.truncate(top_k.unwrap_or(ranked.len()));
        ranked
    }
}
