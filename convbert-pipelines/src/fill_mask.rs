//! Fill-mask: for every `[MASK]` of a text, the `top_k` most likely tokens with their softmax
//! scores and the text with the mask filled in. Mirrors transformers v4.57.6 `FillMaskPipeline`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/pipelines/fill_mask.py>).

use std::path::Path;

use convbert_heads::ConvBertForMaskedLM;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::batch::{single_outputs, Granularity, Prepared, Row};
use crate::batch_model::{impl_batch_model, BatchModel};
use crate::error::{PipelineError, Result};
use crate::loading::{check_len, Loaded};
use crate::options::{PipelineOptions, Truncation};
use crate::tokenizer::TextTokenizer;

/// One proposal for one mask (HF's keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FillMaskCandidate {
    /// Softmax probability of the token at this mask.
    pub score: f64,
    /// The token id.
    pub token: i64,
    /// The token decoded alone.
    pub token_str: String,
    /// The input with this token at the mask (special tokens kept when there are several masks).
    pub sequence: String,
}

/// `targets` of HF's fill-mask pipeline, resolved to token ids (`get_target_ids`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillMaskTargets {
    /// Distinct ids the candidates are chosen from, ascending.
    pub ids: Vec<i64>,
    /// What HF logs: targets replaced by their first token, or ignored.
    pub warnings: Vec<String>,
}

const TASK: &str = "fill-mask";

/// A masked-LM model and its tokenizer.
#[derive(Debug)]
pub struct FillMaskPipeline {
    loaded: Loaded<ConvBertForMaskedLM>,
}

impl_batch_model!(FillMaskPipeline, Granularity::Token, |m, inputs, fo| Ok(
    vec![m.forward_t(inputs, None, fo, false)?.logits]
));

impl FillMaskPipeline {
    /// Loads a checkpoint directory or a cached HF model id; warns when the MLM head is new.
    pub fn from_pretrained(source: impl AsRef<Path>, options: PipelineOptions) -> Result<Self> {
        Self::checked(Loaded::from_pretrained(source.as_ref(), options, TASK)?)
    }

    /// A pipeline over an already built model and tokenizer.
    pub fn new(
        model: ConvBertForMaskedLM,
        tokenizer: TextTokenizer,
        options: PipelineOptions,
    ) -> Result<Self> {
        options.check()?;
        Self::checked(Loaded::new(model, tokenizer, options, TASK))
    }

    fn checked(loaded: Loaded<ConvBertForMaskedLM>) -> Result<Self> {
        if loaded.tokenizer.mask_id().is_none() {
            return Err(PipelineError::Tokenizer(
                "the vocabulary has no [MASK] token".into(),
            ));
        }
        Ok(Self { loaded })
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

    /// Resolves `targets` as HF does: a target in the vocabulary is its id; any other is replaced
    /// by the first token of its tokenization (a warning), or ignored when it has none (a
    /// warning); duplicates are dropped. No target left is an error.
    pub fn targets(&self, targets: &[&str]) -> Result<FillMaskTargets> {
        let tok = &self.loaded.tokenizer;
        let (mut ids, mut warnings) = (Vec::new(), Vec::new());
        for target in targets {
            if let Some(id) = tok.token_to_id(target) {
                ids.push(i64::from(id));
                continue;
            }
            match tok.ids_without_specials(target)?.first() {
                Some(&id) => {
                    warnings.push(format!(
                        "The specified target token `{target}` does not exist in the model vocabulary. Replacing with `{}`.",
                        tok.id_to_token(id)
                    ));
                    ids.push(i64::from(id));
                }
                None => warnings.push(format!(
                    "The specified target token `{target}` does not exist in the model vocabulary. We cannot replace it with anything meaningful, ignoring it"
                )),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Err(PipelineError::Input(
                "At least one target must be provided when passed.".into(),
            ));
        }
        Ok(FillMaskTargets { ids, warnings })
    }

    /// Per text: one list of `top_k` candidates per `[MASK]`, best first. A text without a
    /// mask, or too long, gives an `Err` in its own slot.
    pub fn run(
        &self,
        texts: &[&str],
        top_k: usize,
    ) -> Result<Vec<Result<Vec<Vec<FillMaskCandidate>>>>> {
        self.run_inner(texts, top_k, None)
    }

    /// [`run`](Self::run) with the candidates chosen among `targets` only (HF's `targets=`):
    /// scores stay the probabilities over the whole vocabulary, and `top_k` is capped at the
    /// number of targets.
    pub fn run_with_targets(
        &self,
        texts: &[&str],
        top_k: usize,
        targets: &FillMaskTargets,
    ) -> Result<Vec<Result<Vec<Vec<FillMaskCandidate>>>>> {
        self.run_inner(texts, top_k, Some(&targets.ids))
    }

    /// One text as a model row, truncated when set; a text without `[MASK]` (also one cut
    /// away by truncation), or too long, is an error.
    pub fn prepare(&self, text: &str) -> Result<Prepared> {
        let enc = self.encode_text(text, None, self.loaded.truncation)?;
        let prepared = Prepared::single(enc);
        if !prepared.rows[0].ids.contains(&self.mask_id()) {
            return Err(PipelineError::Input("no [MASK] token in the input".into()));
        }
        check_len(
            prepared.rows[0].ids.len(),
            self.loaded.config.max_position_embeddings,
        )?;
        Ok(prepared)
    }

    /// The candidates of one prepared text from its `(L, V)` logits (see [`run`](Self::run)
    /// and [`run_with_targets`](Self::run_with_targets)).
    pub fn finish(
        &self,
        prepared: &Prepared,
        logits: &Tensor,
        top_k: usize,
        targets: Option<&FillMaskTargets>,
    ) -> Result<Vec<Vec<FillMaskCandidate>>> {
        let targets = self.target_index(targets.map(|t| t.ids.as_slice()))?;
        self.postprocess(&prepared.rows[0], logits, top_k, targets.as_ref())
    }

    fn mask_id(&self) -> i64 {
        i64::from(self.loaded.tokenizer.mask_id().unwrap_or(0))
    }

    /// The target ids, checked, with their index tensor (the logits come back on the CPU).
    fn target_index<'a>(&self, targets: Option<&'a [i64]>) -> Result<Option<(&'a [i64], Tensor)>> {
        let vocab = self.loaded.config.vocab_size;
        let Some(ids) = targets else {
            return Ok(None);
        };
        if let Some(bad) = ids.iter().find(|&&i| i < 0 || i >= vocab) {
            return Err(PipelineError::Input(format!(
                "target id {bad} is outside the vocabulary of {vocab} tokens"
            )));
        }
        Ok(Some((ids, Tensor::f_from_slice(ids)?)))
    }

    fn run_inner(
        &self,
        texts: &[&str],
        top_k: usize,
        targets: Option<&[i64]>,
    ) -> Result<Vec<Result<Vec<Vec<FillMaskCandidate>>>>> {
        // Checked and turned into an index tensor once per call, not per text.
        let targets = self.target_index(targets)?;
        let prepared = texts.iter().map(|t| self.prepare(t)).collect();
        self.loaded.run_prepared(
            prepared,
            Granularity::Token,
            |m, inputs, fo| Ok(vec![m.forward_t(inputs, None, fo, false)?.logits]),
            |_, p, outputs| {
                let logits = single_outputs(outputs)?;
                self.postprocess(&p.rows[0], &logits[0], top_k, targets.as_ref())
            },
        )
    }

    fn postprocess(
        &self,
        row: &Row,
        logits: &Tensor,
        top_k: usize,
        targets: Option<&(&[i64], Tensor)>,
    ) -> Result<Vec<Vec<FillMaskCandidate>>> {
        let mask_id = self.mask_id();
        let masks: Vec<usize> = (0..row.ids.len())
            .filter(|&i| row.ids[i] == mask_id)
            .collect();
        let single = masks.len() == 1;
        let vocab = logits.size().last().copied().unwrap_or(0);
        let k = (top_k as i64).min(targets.map_or(vocab, |(ids, _)| ids.len() as i64));
        let pad = i64::from(self.loaded.tokenizer.pad_id());
        masks
            .iter()
            .map(|&m| {
                let mut probs = logits.f_get(m as i64)?.f_softmax(-1, Kind::Float)?;
                if let Some((_, index)) = targets {
                    probs = probs.f_index_select(0, index)?;
                }
                let (values, indices) = probs.f_topk(k, -1, true, true)?;
                let values = Vec::<f32>::try_from(&values)?;
                let mut indices = Vec::<i64>::try_from(&indices)?;
                if let Some((ids, _)) = targets {
                    indices = indices.iter().map(|&i| ids[i as usize]).collect();
                }
                values
                    .iter()
                    .zip(&indices)
                    .map(|(&score, &token)| {
                        let mut ids = row.ids.clone();
                        ids[m] = token;
                        let kept: Vec<u32> = ids
                            .into_iter()
                            .filter(|&t| t != pad)
                            .map(|t| t as u32)
                            .collect();
                        Ok(FillMaskCandidate {
                            score: f64::from(score),
                            token,
                            token_str: self.loaded.tokenizer.decode(&[token as u32], false)?,
                            sequence: self.loaded.tokenizer.decode(&kept, single)?,
                        })
                    })
                    .collect()
            })
            .collect()
    }
}
