//! Fill-mask: for every `[MASK]` of a text, the `top_k` most likely tokens with their softmax
//! scores and the text with the mask filled in. Mirrors transformers v4.57.6 `FillMaskPipeline`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/pipelines/fill_mask.py>).

use std::path::Path;

use convbert_heads::ConvBertForMaskedLM;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::batch::{run_batched, Granularity, Row};
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

    /// Per text: one list of `top_k` candidates per `[MASK]`, best first. A text without a
    /// mask, or too long, gives an `Err` in its own slot.
    pub fn run(
        &self,
        texts: &[&str],
        top_k: usize,
    ) -> Result<Vec<Result<Vec<Vec<FillMaskCandidate>>>>> {
        let mask_id = i64::from(self.loaded.tokenizer.mask_id().unwrap_or(0));
        let max = self.loaded.model.config().max_position_embeddings;
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
        let rows: Vec<Row> = prepared
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let logits = run_batched(
            &rows,
            &self.loaded.options,
            i64::from(self.loaded.tokenizer.pad_id()),
            Granularity::Token,
            |inputs, fo| {
                Ok(vec![
                    self.loaded.model.forward_t(inputs, None, fo, false)?.logits,
                ])
            },
        )?;
        let mut logits = logits.into_iter();
        prepared
            .into_iter()
            .map(|p| match p {
                Ok(row) => {
                    let out = logits.next().and_then(|mut v| v.pop()).ok_or_else(|| {
                        PipelineError::Input("the model returned no output".into())
                    })?;
                    Ok(self.postprocess(&row, &out, top_k, mask_id))
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
    ) -> Result<Vec<Vec<FillMaskCandidate>>> {
        let masks: Vec<usize> = (0..row.ids.len())
            .filter(|&i| row.ids[i] == mask_id)
            .collect();
        let single = masks.len() == 1;
        let vocab = logits.size().last().copied().unwrap_or(0);
        let k = (top_k as i64).min(vocab);
        let pad = i64::from(self.loaded.tokenizer.pad_id());
        masks
            .iter()
            .map(|&m| {
                let probs = logits.f_get(m as i64)?.f_softmax(-1, Kind::Float)?;
                let (values, indices) = probs.f_topk(k, -1, true, true)?;
                let values = Vec::<f32>::try_from(&values)?;
                let indices = Vec::<i64>::try_from(&indices)?;
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
