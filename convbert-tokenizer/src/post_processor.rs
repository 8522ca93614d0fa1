//! Special tokens: `build_inputs_with_special_tokens`, `get_special_tokens_mask` and
//! `create_token_type_ids_from_sequences` of BertTokenizer (`[CLS] A [SEP]`, `[CLS] A [SEP] B [SEP]`).

use crate::config::TokenizerConfig;
use crate::error::{Result, TokenizerError};
use crate::vocab::Vocab;

/// Ids of the five special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpecialIds {
    pub(crate) unk: u32,
    pub(crate) sep: u32,
    pub(crate) pad: u32,
    pub(crate) cls: u32,
    pub(crate) mask: u32,
}

impl SpecialIds {
    /// Looks the special tokens up; each must be in the vocabulary.
    pub(crate) fn resolve(vocab: &Vocab, config: &TokenizerConfig) -> Result<Self> {
        let id = |t: &str| {
            vocab
                .token_to_id(t)
                .ok_or_else(|| TokenizerError::MissingToken(t.to_string()))
        };
        Ok(Self {
            unk: id(&config.unk_token)?,
            sep: id(&config.sep_token)?,
            pad: id(&config.pad_token)?,
            cls: id(&config.cls_token)?,
            mask: id(&config.mask_token)?,
        })
    }

    /// `all_special_ids` (includes `[UNK]`).
    pub(crate) fn build_inputs(&self, a: &[u32], b: Option<&[u32]>) -> Vec<u32> {
        let mut out = Vec::with_capacity(a.len() + b.map_or(0, |b| b.len() + 1) + 2);
        out.push(self.cls);
        out.extend_from_slice(a);
        out.push(self.sep);
        if let Some(b) = b {
            out.extend_from_slice(b);
            out.push(self.sep);
        }
        out
    }

    /// HF's `get_special_tokens_mask`: 1 at the positions `[CLS]`/`[SEP]` will take, or, for ids
    /// that already hold them, 1 for every id of `all_special_ids` (HF's list: added special
    /// tokens included), which is only computed then.
    pub(crate) fn special_tokens_mask(
        a: &[u32],
        b: Option<&[u32]>,
        already_has_special_tokens: bool,
        all_special_ids: impl FnOnce() -> Vec<u32>,
    ) -> Result<Vec<u32>> {
        if already_has_special_tokens {
            if b.is_some() {
                return Err(TokenizerError::Options(
                    "You should not supply a second sequence if the provided sequence of ids is already formatted with special tokens for the model.".into(),
                ));
            }
            let all = all_special_ids();
            return Ok(a.iter().map(|id| u32::from(all.contains(id))).collect());
        }
        Ok(Self::added_mask(a.len(), b.map(<[u32]>::len)))
    }

    /// The special-tokens mask of `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`.
    pub(crate) fn added_mask(a: usize, b: Option<usize>) -> Vec<u32> {
        let mut out = Vec::with_capacity(a + b.map_or(0, |b| b + 1) + 2);
        out.push(1);
        out.extend(std::iter::repeat_n(0, a));
        out.push(1);
        if let Some(b) = b {
            out.extend(std::iter::repeat_n(0, b));
            out.push(1);
        }
        out
    }

    pub(crate) fn type_ids(a: &[u32], b: Option<&[u32]>) -> Vec<u32> {
        let mut out = vec![0; a.len() + 2];
        if let Some(b) = b {
            out.extend(std::iter::repeat_n(1, b.len() + 1));
        }
        out
    }
}
