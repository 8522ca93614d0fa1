//! Extractive question answering: the best answer spans of a context with their scores and
//! character offsets. Long contexts are cut into windows of `max_seq_len` tokens overlapping by
//! `doc_stride`; spans are limited to `max_answer_len` tokens; `handle_impossible_answer` adds
//! the empty answer. Mirrors transformers v4.57.6 `QuestionAnsweringPipeline` (fast tokenizer)
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/pipelines/question_answering.py>).

use std::path::Path;

use convbert_heads::ConvBertForQuestionAnswering;
use serde::{Deserialize, Serialize};
use tch::Tensor;
use tokenizers::Encoding;

use crate::batch::{Granularity, Prepared, Row};
use crate::batch_model::impl_batch_model;
use crate::error::{PipelineError, Result};
use crate::loading::{check_len, Loaded};
use crate::options::PipelineOptions;

/// A question about a context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaInput {
    /// The question (never truncated).
    pub question: String,
    /// The text holding the answer (split into windows when long).
    pub context: String,
}

/// Decoding options, HF's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QaOptions {
    /// Number of answers per input (default 1).
    pub top_k: usize,
    /// Tokens per window; default min(tokenizer `model_max_length`, 384).
    pub max_seq_len: Option<usize>,
    /// Tokens shared by consecutive windows; default min(max_seq_len / 2, 128).
    pub doc_stride: Option<usize>,
    /// Longest answer in tokens (default 15).
    pub max_answer_len: usize,
    /// Also propose the empty answer, scored by the `[CLS]` start and end probabilities.
    pub handle_impossible_answer: bool,
    /// Extend spans to whole words (default true).
    pub align_to_words: bool,
}

impl Default for QaOptions {
    fn default() -> Self {
        Self {
            top_k: 1,
            max_seq_len: None,
            doc_stride: None,
            max_answer_len: 15,
            handle_impossible_answer: false,
            align_to_words: true,
        }
    }
}

impl QaOptions {
    /// Refuses `top_k` or `max_answer_len` of 0.
    pub fn check(&self) -> Result<()> {
        if self.top_k == 0 {
            return Err(PipelineError::option("top_k", "must be at least 1"));
        }
        if self.max_answer_len == 0 {
            return Err(PipelineError::option(
                "max_answer_len",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// One answer: score, character span `[start, end)` of the context and its text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// Product of start and end probabilities (summed over spans giving the same text).
    pub score: f64,
    /// First character of the answer in the context.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
    /// The answer text.
    pub answer: String,
}

/// A question-answering model and its tokenizer.
#[derive(Debug)]
pub struct QuestionAnsweringPipeline {
    loaded: Loaded<ConvBertForQuestionAnswering>,
}

impl_batch_model!(
    QuestionAnsweringPipeline,
    Granularity::Token,
    |m, inputs, fo| {
        let out = m.forward_t(inputs, None, fo, false)?;
        Ok(vec![out.start_logits, out.end_logits])
    }
);

/// Softmax over the allowed positions (others get -10000 first, as in HF).
fn probabilities(logits: &[f32], allowed: &[bool]) -> Vec<f64> {
    let x: Vec<f64> = logits
        .iter()
        .zip(allowed)
        .map(|(&v, &ok)| if ok { f64::from(v) } else { -10000.0 })
        .collect();
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// HF `decode_spans`: the `top_k` best (start, end, score) with start <= end < start + max_len,
/// both ends allowed. Index 0 always counts as allowed, as in HF (its `isin` over `nonzero()` of a
/// (1, L) mask also matches the row index 0).
fn decode_spans(
    start: &[f64],
    end: &[f64],
    top_k: usize,
    max_answer_len: usize,
    allowed: &[bool],
) -> Vec<(usize, usize, f64)> {
    let n = start.len();
    let mut candidates: Vec<(usize, usize, f64)> = (0..n)
        .flat_map(|s| (0..n).map(move |e| (s, e)))
        .map(|(s, e)| {
            let inside = e >= s && e - s < max_answer_len;
            (s, e, if inside { start[s] * end[e] } else { 0.0 })
        })
        .collect();
    candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
    candidates.truncate(top_k);
    let any = allowed.iter().any(|&a| a);
    let ok = |i: usize| allowed[i] || (i == 0 && any);
    candidates.retain(|&(s, e, _)| ok(s) && ok(e));
    candidates
}

impl QuestionAnsweringPipeline {
    /// Loads a checkpoint directory or a cached HF model id; warns when the head is new.
    pub fn from_pretrained(source: impl AsRef<Path>, options: PipelineOptions) -> Result<Self> {
        Ok(Self {
            loaded: Loaded::from_pretrained(source.as_ref(), options, "question answering")?,
        })
    }

    /// Warnings found while loading (a newly initialised head), for the user.
    pub fn warnings(&self) -> &[String] {
        &self.loaded.warnings
    }

    /// The windows of one question and context as model rows; a window too long for the model,
    /// or `doc_stride` > `max_seq_len`, is an error.
    pub fn prepare(&self, x: &QaInput, opts: &QaOptions) -> Result<Prepared> {
        let encodings = self.windows(x, opts)?;
        let rows = encodings.iter().map(Row::new).collect();
        Ok(Prepared { encodings, rows })
    }

    fn windows(&self, x: &QaInput, opts: &QaOptions) -> Result<Vec<Encoding>> {
        let max_seq_len = opts.max_seq_len.unwrap_or_else(|| {
            self.loaded
                .tokenizer
                .model_max_length()
                .unwrap_or(384)
                .min(384)
        });
        let stride = opts.doc_stride.unwrap_or((max_seq_len / 2).min(128));
        if stride > max_seq_len {
            return Err(PipelineError::option(
                "doc_stride",
                format!("({stride}) is larger than max_seq_len ({max_seq_len})"),
            ));
        }
        let windows =
            self.loaded
                .tokenizer
                .encode_windows(&x.question, &x.context, max_seq_len, stride)?;
        let max = self.loaded.config.max_position_embeddings;
        for w in &windows {
            check_len(w.len(), max)?;
        }
        Ok(windows)
    }

    /// Per input, up to `top_k` answers, best first.
    pub fn run(&self, inputs: &[QaInput], opts: &QaOptions) -> Result<Vec<Result<Vec<Answer>>>> {
        opts.check()?;
        let prepared = inputs.iter().map(|x| self.prepare(x, opts)).collect();
        self.loaded.run_prepared(
            prepared,
            Granularity::Token,
            |m, inputs, fo| {
                let out = m.forward_t(inputs, None, fo, false)?;
                Ok(vec![out.start_logits, out.end_logits])
            },
            |i, p, outputs| self.finish(&inputs[i], p, outputs, opts),
        )
    }

    /// The answers of one prepared input from its windows' outputs (start and end logits
    /// `(L,)` per window), see [`run`](Self::run).
    pub fn finish(
        &self,
        x: &QaInput,
        prepared: &Prepared,
        outputs: Vec<Vec<Tensor>>,
        opts: &QaOptions,
    ) -> Result<Vec<Answer>> {
        let mut logits = Vec::with_capacity(outputs.len());
        for v in &outputs {
            let [start, end] = v.as_slice() else {
                return Err(PipelineError::Input("the model returned no output".into()));
            };
            logits.push((Vec::<f32>::try_from(start)?, Vec::<f32>::try_from(end)?));
        }
        if logits.len() != prepared.encodings.len() {
            return Err(PipelineError::Input("the model returned no output".into()));
        }
        Ok(self.answers(x, &prepared.encodings, &logits, opts))
    }

    /// HF `postprocess` over all windows of one input.
    fn answers(
        &self,
        x: &QaInput,
        windows: &[Encoding],
        logits: &[(Vec<f32>, Vec<f32>)],
        opts: &QaOptions,
    ) -> Vec<Answer> {
        let context: Vec<char> = x.context.chars().collect();
        let cls = self.loaded.tokenizer.cls_id();
        let pre_top_k = if opts.align_to_words {
            opts.top_k * 2 + 10
        } else {
            opts.top_k
        };
        let mut min_null_score = 1_000_000.0f64;
        let mut answers: Vec<Answer> = Vec::new();
        for (enc, (start, end)) in windows.iter().zip(logits) {
            let allowed: Vec<bool> = enc
                .get_sequence_ids()
                .iter()
                .zip(enc.get_ids())
                .map(|(seq, id)| *seq == Some(1) || Some(*id) == cls)
                .collect();
            let mut ps = probabilities(start, &allowed);
            let mut pe = probabilities(end, &allowed);
            if opts.handle_impossible_answer {
                min_null_score = min_null_score.min(ps[0] * pe[0]);
            }
            ps[0] = 0.0;
            pe[0] = 0.0;
            for (s, e, score) in decode_spans(&ps, &pe, pre_top_k, opts.max_answer_len, &allowed) {
                let (a, b) = span_chars(enc, s, e, opts.align_to_words);
                let text: String = context[a.min(context.len())..b.min(context.len())]
                    .iter()
                    .collect();
                let lower = text.to_lowercase();
                match answers
                    .iter_mut()
                    .find(|x| x.answer.to_lowercase() == lower)
                {
                    Some(existing) => existing.score += score,
                    None => answers.push(Answer {
                        score,
                        start: a,
                        end: b,
                        answer: text,
                    }),
                }
            }
        }
        if opts.handle_impossible_answer {
            answers.push(Answer {
                score: min_null_score,
                start: 0,
                end: 0,
                answer: String::new(),
            });
        }
        answers.sort_by(|a, b| b.score.total_cmp(&a.score));
        answers.truncate(opts.top_k);
        answers
    }
}

/// HF `get_indices`: character span of tokens `s..=e` in the context, widened to whole words.
fn span_chars(enc: &Encoding, s: usize, e: usize, align_to_words: bool) -> (usize, usize) {
    let offsets = enc.get_offsets();
    let raw = (offsets[s].0, offsets[e].1);
    if !align_to_words {
        return raw;
    }
    let word = |t: usize| {
        enc.token_to_word(t)
            .and_then(|(_, w)| enc.word_to_chars(w, 1))
    };
    match (word(s), word(e)) {
        (Some(a), Some(b)) => (a.0, b.1),
        _ => raw,
    }
}
