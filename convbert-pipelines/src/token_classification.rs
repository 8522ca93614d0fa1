//! Token classification (NER): a label per token, or entities grouped with the aggregation
//! strategies none / simple / first / average / max, with character offsets into the input; long
//! texts in overlapping windows with `stride`.
//! Mirrors transformers v4.57.6 `TokenClassificationPipeline` (fast-tokenizer path)
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/pipelines/token_classification.py>).

use std::path::Path;

use convbert_heads::{ConvBertForTokenClassification, Labels};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::batch::{single_outputs, Granularity, Prepared, Row};
use crate::batch_model::{impl_batch_model, BatchModel};
use crate::error::{PipelineError, Result};
use crate::loading::{check_len, Loaded};
use crate::options::{PipelineOptions, Truncation};
use crate::tokenizer::TextTokenizer;

/// How tokens are merged into entities (HF `AggregationStrategy`; HF's lower-case names in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregationStrategy {
    /// One result per token.
    #[default]
    None,
    /// Adjacent tokens with the same entity type merged (B-/I- tags respected).
    Simple,
    /// Words take the label of their first token, then merged as `Simple`.
    First,
    /// Words take the label of their averaged token scores, then merged.
    Average,
    /// Words take the label of their most confident token, then merged.
    Max,
}

/// One result: a token (strategy none) or an entity group (other strategies), HF's keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Entity {
    /// A single token with its label.
    Token {
        entity: String,
        score: f64,
        index: usize,
        word: String,
        start: usize,
        end: usize,
    },
    /// Adjacent tokens or words with one entity type (`B-`/`I-` prefix removed).
    Group {
        entity_group: String,
        score: f64,
        word: String,
        start: usize,
        end: usize,
    },
}

impl Entity {
    fn start_end_score(&self) -> (usize, usize, f64) {
        match self {
            Entity::Token {
                start, end, score, ..
            }
            | Entity::Group {
                start, end, score, ..
            } => (*start, *end, *score),
        }
    }
}

/// HF `aggregate_overlapping_entities`: entities of overlapping windows, by start; of two that
/// overlap the longer stays, or at equal length the more confident.
fn aggregate_overlapping(mut entities: Vec<Entity>) -> Vec<Entity> {
    entities.sort_by_key(|e| e.start_end_score().0);
    let mut out = Vec::new();
    let mut entities = entities.into_iter();
    let Some(mut previous) = entities.next() else {
        return out;
    };
    for entity in entities {
        let (ps, pe, pscore) = previous.start_end_score();
        let (s, e, score) = entity.start_end_score();
        if ps <= s && s < pe {
            let (len, plen) = (e - s, pe - ps);
            if len > plen || (len == plen && score > pscore) {
                previous = entity;
            }
        } else {
            out.push(std::mem::replace(&mut previous, entity));
        }
    }
    out.push(previous);
    out
}

/// Stride windows run a text whole; truncation cuts it: asking for both is refused.
fn stride_with_truncation() -> PipelineError {
    PipelineError::option(
        "stride",
        "`stride` runs a long text whole in windows and `truncation` cuts it: use one of them",
    )
}

/// A token before aggregation.
struct PreEntity {
    word: String,
    scores: Vec<f64>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

/// A labelled token or word, before grouping.
struct Labelled {
    entity: String,
    score: f64,
    word: String,
    start: usize,
    end: usize,
}

fn argmax(v: &[f64]) -> usize {
    // First maximum, like numpy.
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&v| f64::from(v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// HF `get_tag`: ("B" | "I", type).
fn tag(label: &str) -> (&str, &str) {
    match label.split_at_checked(2) {
        Some(("B-", t)) => ("B", t),
        Some(("I-", t)) => ("I", t),
        _ => ("I", label),
    }
}

/// A token-classification model and its tokenizer.
#[derive(Debug)]
pub struct TokenClassificationPipeline {
    loaded: Loaded<ConvBertForTokenClassification>,
    labels: Labels,
}

impl_batch_model!(
    TokenClassificationPipeline,
    Granularity::Token,
    |m, inputs, fo| Ok(vec![m.forward_t(inputs, None, fo, false)?.logits])
);

impl TokenClassificationPipeline {
    /// Loads a checkpoint directory or a cached HF model id; warns when the head is new.
    pub fn from_pretrained(source: impl AsRef<Path>, options: PipelineOptions) -> Result<Self> {
        Self::with_labels(Loaded::from_pretrained(
            source.as_ref(),
            options,
            "token classification",
        )?)
    }

    fn with_labels(loaded: Loaded<ConvBertForTokenClassification>) -> Result<Self> {
        let labels = loaded.model()?.labels().clone();
        Ok(Self { loaded, labels })
    }

    /// The checkpoint's labels (`id2label`).
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// A pipeline over an already built model and tokenizer.
    pub fn new(
        model: ConvBertForTokenClassification,
        tokenizer: TextTokenizer,
        options: PipelineOptions,
    ) -> Result<Self> {
        options.check()?;
        Self::with_labels(Loaded::new(
            model,
            tokenizer,
            options,
            "token classification",
        ))
    }

    /// Warnings found while loading (a newly initialised head), for the user.
    pub fn warnings(&self) -> &[String] {
        &self.loaded.warnings
    }

    /// The pipeline with HF's `truncation=True` / `max_length` (see [`Truncation`]) applied by
    /// `prepare` and `run` (HF's token-classification pipeline always truncates to
    /// `model_max_length`: set `Truncation::default()` for its results); `None` (the default) makes a too long input an error. A
    /// `max_length` shorter than a text's special tokens is an option error, and
    /// so is a stride window run (truncation and stride are exclusive).
    pub fn with_truncation(mut self, truncation: Option<Truncation>) -> Result<Self> {
        self.loaded.set_truncation(truncation)?;
        Ok(self)
    }

    /// The truncation set with [`with_truncation`](Self::with_truncation).
    pub fn truncation(&self) -> Option<Truncation> {
        self.loaded.truncation
    }

    /// Per text, its entities in text order; labels in `ignore_labels` (HF default `["O"]`) are
    /// dropped. A text longer than the model takes gives an `Err` in its slot (see
    /// [`run_with_stride`](Self::run_with_stride)).
    pub fn run(
        &self,
        texts: &[&str],
        strategy: AggregationStrategy,
        ignore_labels: &[&str],
    ) -> Result<Vec<Result<Vec<Entity>>>> {
        self.run_inner(texts, strategy, ignore_labels, None)
    }

    /// [`run`](Self::run) over the whole of long texts, as HF's `stride=`: each text is cut into
    /// windows of the tokenizer's `model_max_length` tokens (else `max_position_embeddings`)
    /// overlapping by `stride` tokens, padded together as HF pads them, run one by one; their
    /// entities are merged, an overlap keeping the longer (then the more confident) entity.
    /// Needs an aggregation strategy other than `None`. In the default padding-invariant mode the
    /// last window's padding has no effect; with `padding_invariant: false` and `batch_size: 1`
    /// the numbers are HF's, padding quirk included (checked by the goldens).
    pub fn run_with_stride(
        &self,
        texts: &[&str],
        strategy: AggregationStrategy,
        ignore_labels: &[&str],
        stride: usize,
    ) -> Result<Vec<Result<Vec<Entity>>>> {
        self.check_stride(strategy, stride)?;
        self.run_inner(texts, strategy, ignore_labels, Some(stride))
    }

    /// Refuses a `stride` with [`AggregationStrategy::None`] or not shorter than the windows, as
    /// HF does, and on a pipeline with truncation set.
    pub fn check_stride(&self, strategy: AggregationStrategy, stride: usize) -> Result<()> {
        if self.loaded.truncation.is_some() {
            return Err(stride_with_truncation());
        }
        if strategy == AggregationStrategy::None {
            return Err(PipelineError::option(
                "stride",
                "`stride` was provided to process all the text but `aggregation_strategy=\"none\"`, please select another one instead.",
            ));
        }
        let max_len = self.window_len();
        if stride >= max_len {
            return Err(PipelineError::option(
                "stride",
                format!("`stride` ({stride}) must be less than `tokenizer.model_max_length` ({max_len}) (or even lower if the tokenizer adds special tokens)"),
            ));
        }
        Ok(())
    }

    fn window_len(&self) -> usize {
        let positions = self.loaded.config.max_position_embeddings;
        self.loaded
            .tokenizer
            .model_max_length()
            .unwrap_or(usize::try_from(positions).unwrap_or(usize::MAX))
    }

    /// One text as model rows: whole, or in windows overlapping by `stride` tokens (check it
    /// first with [`check_stride`](Self::check_stride)); a row too long for the model is an
    /// error.
    pub fn prepare(&self, text: &str, stride: Option<usize>) -> Result<Prepared> {
        let tok = &self.loaded.tokenizer;
        let truncation = self.loaded.truncation;
        let encodings = match stride {
            Some(_) if truncation.is_some() => return Err(stride_with_truncation()),
            Some(stride) => tok.encode_text_windows(text, self.window_len(), stride)?,
            None => vec![self.encode_text(text, None, truncation)?],
        };
        for enc in &encodings {
            check_len(enc.len(), self.loaded.config.max_position_embeddings)?;
        }
        let pad_id = self.loaded.pad_id();
        let longest = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let rows = encodings
            .iter()
            .map(|e| Row::padded(e, longest, pad_id))
            .collect();
        Ok(Prepared { encodings, rows })
    }

    fn run_inner(
        &self,
        texts: &[&str],
        strategy: AggregationStrategy,
        ignore_labels: &[&str],
        stride: Option<usize>,
    ) -> Result<Vec<Result<Vec<Entity>>>> {
        let prepared = texts.iter().map(|t| self.prepare(t, stride)).collect();
        self.loaded.run_prepared(
            prepared,
            Granularity::Token,
            |m, inputs, fo| Ok(vec![m.forward_t(inputs, None, fo, false)?.logits]),
            |i, p, outputs| self.finish(texts[i], p, outputs, strategy, ignore_labels),
        )
    }

    /// The entities of one prepared text from its rows' `(L, C)` logits, see
    /// [`run`](Self::run).
    pub fn finish(
        &self,
        text: &str,
        prepared: &Prepared,
        outputs: Vec<Vec<Tensor>>,
        strategy: AggregationStrategy,
        ignore_labels: &[&str],
    ) -> Result<Vec<Entity>> {
        let logits = single_outputs(outputs)?;
        let mut entities = Vec::new();
        for (enc, out) in prepared.encodings.iter().zip(&logits) {
            let width = out.size().last().copied().unwrap_or(1).max(1) as usize;
            let flat = Vec::<f32>::try_from(&out.f_flatten(0, -1)?)?;
            let scores: Vec<Vec<f64>> = flat.chunks(width).map(softmax).collect();
            let pre = self.gather(text, enc, scores);
            entities.extend(self.aggregate(pre, strategy)?.into_iter().filter(|e| {
                let label = match e {
                    Entity::Token { entity, .. } => entity,
                    Entity::Group { entity_group, .. } => entity_group,
                };
                !ignore_labels.contains(&label.as_str())
            }));
        }
        Ok(if prepared.encodings.len() > 1 {
            aggregate_overlapping(entities)
        } else {
            entities
        })
    }

    /// HF `gather_pre_entities`: non-special tokens with their text span and subword flag.
    fn gather(
        &self,
        text: &str,
        enc: &tokenizers::Encoding,
        scores: Vec<Vec<f64>>,
    ) -> Vec<PreEntity> {
        let chars: Vec<char> = text.chars().collect();
        let prefixed = self.loaded.tokenizer.has_subword_prefix();
        let unk = self.loaded.tokenizer.unk_id();
        let special = enc.get_special_tokens_mask();
        scores
            .into_iter()
            .enumerate()
            .filter(|(i, _)| special.get(*i) == Some(&0))
            .map(|(i, scores)| {
                let id = enc.get_ids()[i];
                let (start, end) = enc.get_offsets()[i];
                let word_ref: String = chars[start.min(chars.len())..end.min(chars.len())]
                    .iter()
                    .collect();
                let mut word = self.loaded.tokenizer.id_to_token(id);
                let mut is_subword = if prefixed {
                    word.chars().count() != word_ref.chars().count()
                } else {
                    start > 0 && !chars[start - 1..=start.min(chars.len() - 1)].contains(&' ')
                };
                if Some(id) == unk {
                    word = word_ref;
                    is_subword = false;
                }
                PreEntity {
                    word,
                    scores,
                    start,
                    end,
                    index: i,
                    is_subword,
                }
            })
            .collect()
    }

    fn label(&self, i: usize) -> String {
        self.labels
            .id2label
            .get(&(i as i64))
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{i}"))
    }

    fn aggregate(&self, pre: Vec<PreEntity>, strategy: AggregationStrategy) -> Result<Vec<Entity>> {
        let labelled: Vec<Labelled> = match strategy {
            AggregationStrategy::None => {
                return Ok(pre
                    .into_iter()
                    .map(|p| {
                        let k = argmax(&p.scores);
                        Entity::Token {
                            entity: self.label(k),
                            score: p.scores[k],
                            index: p.index,
                            word: p.word,
                            start: p.start,
                            end: p.end,
                        }
                    })
                    .collect())
            }
            AggregationStrategy::Simple => pre
                .into_iter()
                .map(|p| {
                    let k = argmax(&p.scores);
                    Labelled {
                        entity: self.label(k),
                        score: p.scores[k],
                        word: p.word,
                        start: p.start,
                        end: p.end,
                    }
                })
                .collect(),
            _ => {
                let mut words: Vec<Vec<PreEntity>> = Vec::new();
                for p in pre {
                    match words.last_mut() {
                        Some(group) if p.is_subword => group.push(p),
                        _ => words.push(vec![p]),
                    }
                }
                words
                    .iter()
                    .map(|w| self.aggregate_word(w, strategy))
                    .collect::<Result<_>>()?
            }
        };
        self.group(labelled)
    }

    /// HF `aggregate_word`: one label for the tokens of a word.
    fn aggregate_word(
        &self,
        tokens: &[PreEntity],
        strategy: AggregationStrategy,
    ) -> Result<Labelled> {
        let words: Vec<String> = tokens.iter().map(|t| t.word.clone()).collect();
        let scores: Vec<f64> = match strategy {
            AggregationStrategy::Max => {
                let best = tokens.iter().fold(&tokens[0], |best, t| {
                    let m =
                        |x: &PreEntity| x.scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    if m(t) > m(best) {
                        t
                    } else {
                        best
                    }
                });
                best.scores.clone()
            }
            AggregationStrategy::Average => {
                let n = tokens.len() as f64;
                (0..tokens[0].scores.len())
                    .map(|k| tokens.iter().map(|t| t.scores[k]).sum::<f64>() / n)
                    .collect()
            }
            _ => tokens[0].scores.clone(),
        };
        let k = argmax(&scores);
        Ok(Labelled {
            entity: self.label(k),
            score: scores[k],
            word: self.loaded.tokenizer.tokens_to_string(&words)?,
            start: tokens[0].start,
            end: tokens[tokens.len() - 1].end,
        })
    }

    /// HF `group_entities`: adjacent items of one type merged unless a `B-` starts a new one.
    fn group(&self, items: Vec<Labelled>) -> Result<Vec<Entity>> {
        let mut groups: Vec<Vec<Labelled>> = Vec::new();
        for item in items {
            let joins = groups.last().and_then(|g| g.last()).is_some_and(|last| {
                let (bi, t) = tag(&item.entity);
                let (_, last_t) = tag(&last.entity);
                t == last_t && bi != "B"
            });
            match groups.last_mut() {
                Some(g) if joins => g.push(item),
                _ => groups.push(vec![item]),
            }
        }
        groups
            .into_iter()
            .map(|g| {
                let words: Vec<String> = g.iter().map(|e| e.word.clone()).collect();
                let entity = &g[0].entity;
                Ok(Entity::Group {
                    entity_group: entity
                        .split_once('-')
                        .map_or(entity.as_str(), |(_, t)| t)
                        .to_string(),
                    score: g.iter().map(|e| e.score).sum::<f64>() / g.len() as f64,
                    word: self.loaded.tokenizer.tokens_to_string(&words)?,
                    start: g[0].start,
                    end: g[g.len() - 1].end,
                })
            })
            .collect()
    }
}
