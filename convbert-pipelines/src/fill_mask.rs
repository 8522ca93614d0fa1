//! Fill-mask: for every `[MASK]` of a text, the `top_k` most likely tokens with their softmax
//! scores and the text with the mask filled in. Mirrors transformers v4.57.6 `FillMaskPipeline`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/pipelines/fill_mask.py>).

use std::path::Path;

use convbert_heads::ConvBertForMaskedLM;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::batch::{next_output, ok_rows, Granularity, Row};
use crate::error::{PipelineError, Result};
use crate::loading::{check_len, Loaded};
use crate::options::PipelineOptions;
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

    fn run_inner(
        &self,
        texts: &[&str],
        top_k: usize,
        targets: Option<&[i64]>,
    ) -> Result<Vec<Result<Vec<Vec<FillMaskCandidate>>>>> {
        let mask_id = i64::from(self.loaded.tokenizer.mask_id().unwrap_or(0));
        let config = self.loaded.model.config();
        let (max, vocab) = (config.max_position_embeddings, config.vocab_size);
        // The target ids, checked and as an index tensor (the logits come back on the CPU), once.
        let targets = match targets {
            Some(ids) => {
                if let Some(bad) = ids.iter().find(|&&i| i < 0 || i >= vocab) {
                    return Err(PipelineError::Input(format!(
                        "target id {bad} is outside the vocabulary of {vocab} tokens"
                    )));
                }
                Some((ids, Tensor::f_from_slice(ids)?))
            }
            None => None,
        };
        let prepared: Vec<Result<Row>> = texts
            .iter()
            .map(|t| {
                let row = Row::new(&self.loaded.tokenizer.encode(t, None)?);
                if !row.ids.contains(&mask_id) {
                    return Err(PipelineError::Input("no [MASK] token in the input".into()));
                }
                check_len(row.ids.len(), max).map_err(PipelineError::Input)?;
                Ok(row)
            })
            .collect();
        let logits =
            self.loaded
                .run_rows(&ok_rows(&prepared), Granularity::Token, |inputs, fo| {
                    Ok(vec![
                        self.loaded.model.forward_t(inputs, None, fo, false)?.logits,
                    ])
                })?;
        let mut logits = logits.into_iter();
        prepared
            .into_iter()
            .map(|p| match p {
                Ok(row) => {
                    let out = next_output(&mut logits)?;
                    Ok(self.postprocess(&row, &out, top_k, mask_id, targets.as_ref()))
                }
                Err(e) => Ok(Err(e)),
            })
            .collect()
    }

    fn postprocess(
        &self,
        row: &Row,
        logits: &Tensor,
        top_k: usize,
        mask_id: i64,
        targets: Option<&(&[i64], Tensor)>,
    ) -> Result<Vec<Vec<FillMaskCandidate>>> {
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
