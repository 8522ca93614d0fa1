//! `ConvBertTokenizerFast`: the `tokenizers` crate pipeline (as `ConvBertTokenizerFast` of
//! transformers 4.57.6 drives tokenizers 0.22), with transformers' option handling on top.
//! Offsets are character offsets (`encode_char_offsets`), like Python's `offset_mapping`.

use crate::config::TokenizerConfig;
use crate::decode::clean_up_tokenization;
use crate::encoding::{EncodeOptions, Encoding, PaddingStrategy, Side, TruncationStrategy};
use crate::error::{Result, TokenizerError};
use crate::options::resolve;
use crate::post_processor::SpecialIds;
use crate::vocab::Vocab;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tokenizers::utils::padding::{
    pad_encodings, PaddingDirection, PaddingParams, PaddingStrategy as HfPad,
};
use tokenizers::utils::truncation::{
    truncate_encodings, TruncationDirection, TruncationParams, TruncationStrategy as HfTrunc,
};
use tokenizers::{PostProcessor, Tokenizer};

/// Character offsets `(start, end)` of each token.
pub type Offsets = Vec<(usize, usize)>;

/// The HF fast tokenizer (`tokenizers` crate) with the same API as [`crate::ConvBertTokenizer`].
#[derive(Clone)]
pub struct ConvBertTokenizerFast {
    inner: Tokenizer,
    vocab: Vocab,
    config: TokenizerConfig,
    specials: SpecialIds,
}

impl std::fmt::Debug for ConvBertTokenizerFast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvBertTokenizerFast")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Backend(e.to_string())
}

impl ConvBertTokenizerFast {
    /// Builds the pipeline `BertConverter` would build for `vocab` and `config`.
    pub fn new(vocab: Vocab, config: TokenizerConfig) -> Result<Self> {
        let specials = SpecialIds::resolve(&vocab, &config)?;
        let json = crate::tokenizer_json::build(&vocab, &config, &specials);
        let inner = Tokenizer::from_str(&json.to_string()).map_err(backend)?;
        Ok(Self {
            inner,
            vocab,
            config,
            specials,
        })
    }

    /// Loads a BERT `tokenizer.json`.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::io(path, e))?;
        let (vocab, config) = crate::tokenizer_json::parse(&text)?;
        let specials = SpecialIds::resolve(&vocab, &config)?;
        let inner = Tokenizer::from_str(&text).map_err(backend)?;
        Ok(Self {
            inner,
            vocab,
            config,
            specials,
        })
    }

    /// Loads a `vocab.txt` file.
    pub fn from_vocab_file(path: impl AsRef<Path>, config: TokenizerConfig) -> Result<Self> {
        Self::new(Vocab::from_file(path)?, config)
    }

    /// bert-base-uncased with HF defaults, from the embedded vocabulary (cargo feature
    /// `embedded-vocab`, on by default).
    #[cfg(feature = "embedded-vocab")]
    pub fn bert_base_uncased() -> Result<Self> {
        Self::new(Vocab::bert_base_uncased()?, TokenizerConfig::default())
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The options this tokenizer was built with.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// The underlying `tokenizers` pipeline, for what this API does not surface (word ids,
    /// overflow windows of a custom truncation).
    pub fn backend(&self) -> &Tokenizer {
        &self.inner
    }

    /// Token ids of `text` without special tokens.
    pub fn tokenize_ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode_char_offsets(text, false)
            .map_err(backend)?
            .get_ids()
            .to_vec())
    }

    /// Token ids and character offsets of `text`, without special tokens.
    pub fn tokenize_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Offsets)> {
        let e = self
            .inner
            .encode_char_offsets(text, false)
            .map_err(backend)?;
        Ok((e.get_ids().to_vec(), e.get_offsets().to_vec()))
    }

    /// Encodes one text; with `return_overflowing_tokens`, overflow windows (with stride) come
    /// back in `Encoding::overflowing`.
    pub fn encode(&self, text: &str, opts: &EncodeOptions) -> Result<Encoding> {
        self.encode_batch(&[text], None, opts)?
            .pop()
            .ok_or_else(|| backend("empty batch"))
    }

    /// Encodes a pair of texts.
    pub fn encode_pair(&self, text: &str, pair: &str, opts: &EncodeOptions) -> Result<Encoding> {
        self.encode_batch(&[text], Some(&[pair]), opts)?
            .pop()
            .ok_or_else(|| backend("empty batch"))
    }

    /// Encodes a batch (parallel, input order), padding over the batch like `encode_batch`.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        pairs: Option<&[&str]>,
        opts: &EncodeOptions,
    ) -> Result<Vec<Encoding>> {
        if pairs.is_some_and(|p| p.len() != texts.len()) {
            return Err(TokenizerError::Options(
                "texts and pairs differ in length".into(),
            ));
        }
        let r = resolve(opts, self.config.model_max_length)?;
        let padding = r.padding.map(|len| PaddingParams {
            strategy: len.map_or(HfPad::BatchLongest, HfPad::Fixed),
            direction: if opts.padding_side == Side::Left {
                PaddingDirection::Left
            } else {
                PaddingDirection::Right
            },
            pad_to_multiple_of: opts.pad_to_multiple_of,
            pad_id: self.specials.pad,
            pad_type_id: 0,
            pad_token: self.config.pad_token.clone(),
        });
        let mut encs = texts
            .par_iter()
            .enumerate()
            .map(|(i, text)| {
                let a = self
                    .inner
                    .encode_char_offsets(*text, false)
                    .map_err(backend)?;
                let b = match pairs {
                    Some(p) => {
                        // As `TokenizerImpl::encode` does: the pair is encoded with type id 1, which
                        // its overflow windows keep.
                        let mut b = self
                            .inner
                            .encode_char_offsets(p[i], false)
                            .map_err(backend)?;
                        b.set_type_ids(vec![1; b.len()]);
                        Some(b)
                    }
                    None => None,
                };
                let n_added = if opts.add_special_tokens {
                    2 + usize::from(b.is_some())
                } else {
                    0
                };
                let (a, b) = match r.truncation {
                    Some((strategy, max)) => {
                        let budget = max.checked_sub(n_added).ok_or_else(|| {
                            TokenizerError::Options(format!(
                                "max_length {max} is below the {n_added} special tokens"
                            ))
                        })?;
                        truncate(a, b, budget, strategy, opts)?
                    }
                    None => (a, b),
                };
                let processor = self
                    .inner
                    .get_post_processor()
                    .ok_or_else(|| backend("no post-processor"))?;
                let mut enc = processor
                    .process(a, b, opts.add_special_tokens)
                    .map_err(backend)?;
                if let Some(p) = &padding {
                    pad_encodings(std::slice::from_mut(&mut enc), p).map_err(backend)?;
                }
                Ok(enc)
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(p) = &padding {
            pad_encodings(&mut encs, p).map_err(backend)?;
        }
        Ok(encs
            .into_iter()
            .map(|e| convert(e, opts.return_offsets))
            .collect())
    }

    /// Decodes with the WordPiece decoder, then Python's cleanup when asked.
    pub fn decode(
        &self,
        ids: &[u32],
        skip_special_tokens: bool,
        clean_up_tokenization_spaces: bool,
    ) -> Result<String> {
        let text = self
            .inner
            .decode(ids, skip_special_tokens)
            .map_err(backend)?;
        Ok(if clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// Tokens of `ids` (unknown ids are skipped, as the backend does).
    pub fn convert_ids_to_tokens(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .filter_map(|&id| self.inner.id_to_token(id))
            .collect()
    }

    /// Writes `vocab.txt` in id order (see [`Vocab::save`]).
    pub fn save_vocabulary(
        &self,
        target: impl AsRef<Path>,
        prefix: Option<&str>,
    ) -> Result<(PathBuf, bool)> {
        self.vocab.save(target, prefix)
    }

    /// Writes `tokenizer.json` (pretty), as `save_pretrained` does.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = self.to_json_string()?;
        std::fs::write(path, text).map_err(|e| TokenizerError::io(path, e))
    }

    /// The `tokenizer.json` text.
    pub fn to_json_string(&self) -> Result<String> {
        self.inner.to_string(true).map_err(backend)
    }
}

/// Rows above which the overflow windows of a pair truncated `longest_first` are refused: every
/// window of one side is paired with every window of the other, so two long texts would need
/// memory quadratic in their length (two 1000-token texts cut to 8 tokens: 166,000 rows).
const MAX_PAIR_OVERFLOW_ROWS: usize = 1 << 14;

/// `truncate_encodings`, after checking what would make the backend panic (`stride >= max_len`).
/// Without `return_overflowing_tokens` the overflow is dropped before the post-processor merges a
/// pair (its merge pairs every window of one side with every window of the other: memory
/// quadratic in the texts' length); with it, a pair whose cross product of windows is too large
/// is an error instead.
fn truncate(
    a: tokenizers::Encoding,
    b: Option<tokenizers::Encoding>,
    budget: usize,
    strategy: TruncationStrategy,
    opts: &EncodeOptions,
) -> Result<(tokenizers::Encoding, Option<tokenizers::Encoding>)> {
    let (la, lb) = (a.len(), b.as_ref().map(|b| b.len()));
    let total = la + lb.unwrap_or(0);
    let strategy = match strategy {
        TruncationStrategy::DoNotTruncate => return Ok((a, b)),
        TruncationStrategy::LongestFirst => HfTrunc::LongestFirst,
        TruncationStrategy::OnlyFirst => HfTrunc::OnlyFirst,
        TruncationStrategy::OnlySecond => HfTrunc::OnlySecond,
    };
    let direction = if opts.truncation_side == Side::Left {
        TruncationDirection::Left
    } else {
        TruncationDirection::Right
    };
    if budget > 0 && total > budget {
        let targets: Vec<(usize, usize)> = match (strategy, lb) {
            (HfTrunc::LongestFirst, Some(lb)) => {
                let (mut n1, mut n2) = (la.min(lb), la.max(lb));
                n2 = if n1 > budget {
                    n1
                } else {
                    n2.min(budget - n1).max(n1)
                };
                if n1 + n2 > budget {
                    n1 = budget / 2;
                    n2 = n1 + budget % 2;
                }
                if la > lb {
                    std::mem::swap(&mut n1, &mut n2);
                }
                vec![(la, n1), (lb, n2)]
            }
            (HfTrunc::OnlySecond, Some(lb)) => vec![(lb, lb.saturating_sub(total - budget))],
            _ => vec![(la, la.saturating_sub(total - budget))],
        };
        if targets
            .iter()
            .any(|&(len, t)| t > 0 && t < len && opts.stride >= t)
        {
            return Err(TokenizerError::Options(format!(
                "stride {} must be strictly less than the truncated length",
                opts.stride
            )));
        }
        if let (true, HfTrunc::LongestFirst, [(la, n1), (lb, n2)]) =
            (opts.return_overflowing_tokens, strategy, &targets[..])
        {
            let rows = windows(*la, *n1, opts.stride) * windows(*lb, *n2, opts.stride);
            if rows > MAX_PAIR_OVERFLOW_ROWS {
                return Err(TokenizerError::Options(format!(
                    "overflow windows of a pair truncated longest_first: {rows} rows of {} tokens; \
                     truncate only_first or only_second instead",
                    n1 + n2
                )));
            }
        }
    }
    if !opts.return_overflowing_tokens {
        // The kept tokens do not depend on the stride: cut with none, drop the windows unmerged.
        let params = TruncationParams {
            direction,
            max_length: budget,
            strategy,
            stride: 0,
        };
        let (mut a, mut b) = truncate_encodings(a, b, &params).map_err(backend)?;
        a.take_overflowing();
        if let Some(b) = b.as_mut() {
            b.take_overflowing();
        }
        return Ok((a, b));
    }
    let params = TruncationParams {
        direction,
        max_length: budget,
        strategy,
        stride: opts.stride,
    };
    truncate_encodings(a, b, &params).map_err(backend)
}

/// The number of windows `Encoding::truncate` cuts `len` tokens into (`max_len > stride`).
fn windows(len: usize, max_len: usize, stride: usize) -> usize {
    if max_len == 0 || max_len >= len {
        return 1;
    }
    1 + (len - max_len).div_ceil(max_len - stride)
}

fn convert(e: tokenizers::Encoding, offsets: bool) -> Encoding {
    let overflowing = e
        .get_overflowing()
        .iter()
        .map(|o| convert(o.clone(), offsets))
        .collect();
    Encoding {
        ids: e.get_ids().to_vec(),
        type_ids: e.get_type_ids().to_vec(),
        attention_mask: e.get_attention_mask().to_vec(),
        special_tokens_mask: e.get_special_tokens_mask().to_vec(),
        offsets: if offsets {
            e.get_offsets().to_vec()
        } else {
            Vec::new()
        },
        overflowing_tokens: Vec::new(),
        num_truncated_tokens: None,
        overflowing,
    }
}

impl PaddingStrategy {
    /// HF's string name (`"longest"`, `"max_length"`, `"do_not_pad"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::DoNotPad => "do_not_pad",
            Self::Longest => "longest",
            Self::MaxLength => "max_length",
        }
    }
}
