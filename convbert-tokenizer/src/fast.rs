//! `ConvBertTokenizerFast`: the `tokenizers` crate pipeline (as `ConvBertTokenizerFast` of
//! transformers 4.57.6 drives tokenizers 0.22), with transformers' option handling on top.
//! Offsets are character offsets (`encode_char_offsets`), like Python's `offset_mapping`.

use crate::added_token::AddedToken;
use crate::api::{as_special, DecodeOptions, SpecialTokens};
use crate::config::TokenizerConfig;
use crate::decode::clean_up_tokenization;
use crate::encoding::{EncodeOptions, Encoding, PaddingStrategy, Side, TruncationStrategy};
use crate::error::{Result, TokenizerError};
use crate::options::resolve;
use crate::post_processor::SpecialIds;
use crate::vocab::Vocab;
use rayon::prelude::*;
use std::collections::BTreeMap;
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
///
/// Added tokens are the `tokenizers` crate's own (`AddedVocabulary`), as in Python: a normalised
/// token keeps its spelling (`ConvBERT` decodes as `ConvBERT`) and matches the normalised text;
/// special and `normalized=false` tokens match the raw text, case-sensitively.
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
        Self::with_added_tokens(vocab, config, BTreeMap::new())
    }

    /// Builds the pipeline, then adds `added_tokens_decoder` (id → token) in id order and the
    /// additional special tokens, as the fast `__init__` does after converting the vocabulary.
    pub fn with_added_tokens(
        vocab: Vocab,
        config: TokenizerConfig,
        added_tokens_decoder: BTreeMap<u32, AddedToken>,
    ) -> Result<Self> {
        let specials = SpecialIds::resolve(&vocab, &config)?;
        let json = crate::tokenizer_json::build(&vocab, &config, &specials);
        let inner = Tokenizer::from_str(&json.to_string()).map_err(backend)?;
        let mut tok = Self {
            inner,
            vocab,
            config,
            specials,
        };
        tok.add_missing(added_tokens_decoder);
        Ok(tok)
    }

    /// Adds the tokens the backend does not have yet (by content), in id order, then the
    /// additional special tokens.
    fn add_missing(&mut self, added: BTreeMap<u32, AddedToken>) {
        let specials: Vec<String> = self
            .config
            .all_special_tokens()
            .into_iter()
            .map(str::to_string)
            .collect();
        let mut have: std::collections::HashSet<String> = self
            .inner
            .get_added_tokens_decoder()
            .into_values()
            .map(|t| t.content)
            .collect();
        let mut todo: Vec<AddedToken> = added.into_values().collect();
        todo.extend(specials.iter().map(|s| AddedToken::special(s.clone())));
        for mut t in todo {
            if !have.insert(t.content.clone()) {
                continue;
            }
            t.special = t.special || specials.contains(&t.content);
            self.inner.add_tokens(&[t.to_backend()]);
        }
    }

    /// Loads a checkpoint directory as `ConvBertTokenizerFast.from_pretrained(dir)` (what
    /// `AutoTokenizer` gives): `tokenizer.json` when present, with the normaliser options of
    /// `tokenizer_config.json` (HF's defaults when absent) winning over it, as the Python
    /// `__init__` rebuilds the normaliser; else the pipeline built from `vocab.txt`. Special tokens
    /// come from `tokenizer_config.json` / `special_tokens_map.json`, added tokens from the config's
    /// `added_tokens_decoder` (else `added_tokens.json`) on top of `tokenizer.json`'s.
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self> {
        let p = crate::pretrained::read_dir(dir.as_ref())?;
        let Some((path, text)) = &p.tokenizer_json else {
            let vocab = p
                .vocab_txt
                .as_ref()
                .ok_or_else(|| TokenizerError::MissingVocab(dir.as_ref().to_path_buf()))?;
            return Self::with_added_tokens(Vocab::from_file(vocab)?, p.config.clone(), p.added);
        };
        let at = |e: TokenizerError| TokenizerError::File {
            path: path.clone(),
            reason: e.to_string(),
        };
        let (vocab, json_config) = crate::tokenizer_json::parse(text).map_err(at)?;
        let config = p.config_over(TokenizerConfig {
            unk_token: json_config.unk_token.clone(),
            cls_token: json_config.cls_token.clone(),
            sep_token: json_config.sep_token.clone(),
            max_input_chars_per_word: json_config.max_input_chars_per_word,
            ..TokenizerConfig::default()
        })?;
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| at(e.into()))?;
        if let Some(n) = value.get_mut("normalizer").and_then(|n| n.as_object_mut()) {
            n.insert("lowercase".into(), config.do_lower_case.into());
            n.insert("strip_accents".into(), config.strip_accents.into());
            n.insert(
                "handle_chinese_chars".into(),
                config.tokenize_chinese_chars.into(),
            );
        }
        let specials = SpecialIds::resolve(&vocab, &config)?;
        let inner = Tokenizer::from_str(&value.to_string()).map_err(|e| at(backend(e)))?;
        let mut tok = Self {
            inner,
            vocab,
            config,
            specials,
        };
        tok.add_missing(p.added);
        Ok(tok)
    }

    /// Writes what HF's `save_pretrained` writes for a fast tokenizer: `tokenizer_config.json`,
    /// `special_tokens_map.json`, `vocab.txt`, `added_tokens.json` (with added tokens beyond the
    /// vocabulary) and `tokenizer.json`.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        let dir = dir.as_ref();
        let added = self.added_tokens_decoder();
        let mut out =
            crate::pretrained::write_configs(dir, &self.config, &added, self.vocab.len())?;
        out.insert(2, self.vocab.save(dir, None)?.0);
        let json = dir.join("tokenizer.json");
        self.save(&json)?;
        out.push(json);
        Ok(out)
    }

    /// Adds normal tokens (`add_tokens`, the backend's `add_tokens`); returns what the backend
    /// counts, which includes tokens already in the vocabulary (HF's slow tokenizer does not).
    pub fn add_tokens<T: Into<AddedToken>>(
        &mut self,
        tokens: impl IntoIterator<Item = T>,
    ) -> usize {
        let tokens: Vec<tokenizers::AddedToken> = tokens
            .into_iter()
            .map(|t| t.into().to_backend())
            .filter(|t| !t.content.is_empty())
            .collect();
        self.inner.add_tokens(&tokens)
    }

    /// Adds special tokens (HF `add_special_tokens({"additional_special_tokens": [...]})`, appended
    /// to `additional_special_tokens`). Strings get `normalized=false`.
    pub fn add_special_tokens<T: Into<AddedToken>>(
        &mut self,
        tokens: impl IntoIterator<Item = T>,
    ) -> usize {
        let tokens: Vec<AddedToken> = tokens
            .into_iter()
            .map(|t| as_special(t.into()))
            .filter(|t| !t.content.is_empty())
            .collect();
        for t in &tokens {
            if !self
                .config
                .all_special_tokens()
                .contains(&t.content.as_str())
            {
                self.config
                    .additional_special_tokens
                    .push(t.content.clone());
            }
        }
        let backend: Vec<_> = tokens.iter().map(AddedToken::to_backend).collect();
        self.inner.add_special_tokens(&backend)
    }

    /// Every added token by id, the special tokens included (`added_tokens_decoder`).
    pub fn added_tokens_decoder(&self) -> BTreeMap<u32, AddedToken> {
        self.inner
            .get_added_tokens_decoder()
            .iter()
            .map(|(&id, t)| (id, AddedToken::from_backend(t)))
            .collect()
    }

    /// Size of the vocabulary without added tokens (`vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(false)
    }

    /// `len(tokenizer)`: the vocabulary plus the added tokens.
    pub fn len(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// True when the tokenizer has no token at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token strings of `text` without special tokens (`tokenize`: the encoding's tokens).
    pub fn tokenize(&self, text: &str) -> Result<Vec<String>> {
        Ok(self
            .inner
            .encode_char_offsets(text, false)
            .map_err(backend)?
            .get_tokens()
            .to_vec())
    }

    /// The id of `token` (added tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Ids of `tokens`; unknown tokens give the `[UNK]` id.
    pub fn convert_tokens_to_ids(&self, tokens: &[&str]) -> Vec<u32> {
        tokens
            .iter()
            .map(|t| self.inner.token_to_id(t).unwrap_or(self.specials.unk))
            .collect()
    }

    /// `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`.
    pub fn build_inputs_with_special_tokens(&self, a: &[u32], b: Option<&[u32]>) -> Vec<u32> {
        self.specials.build_inputs(a, b)
    }

    /// 1 at special positions; with `already_has_special_tokens`, 1 for every id of
    /// `all_special_ids` (`[UNK]` and added special tokens included) and `b` must be `None`. The
    /// flag keeps HF's name and position: it selects a different computation.
    pub fn get_special_tokens_mask(
        &self,
        a: &[u32],
        b: Option<&[u32]>,
        already_has_special_tokens: bool,
    ) -> Result<Vec<u32>> {
        SpecialIds::special_tokens_mask(a, b, already_has_special_tokens, || self.all_special_ids())
    }

    /// Zeros for `[CLS] a [SEP]`, ones for `b [SEP]`.
    pub fn create_token_type_ids_from_sequences(&self, a: &[u32], b: Option<&[u32]>) -> Vec<u32> {
        SpecialIds::type_ids(a, b)
    }

    /// HF's `all_special_ids`.
    fn all_special_ids(&self) -> Vec<u32> {
        self.config
            .all_special_tokens()
            .iter()
            .filter_map(|t| self.inner.token_to_id(t))
            .collect()
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

    /// Decodes with the backend (WordPiece decoder, added tokens), then Python's
    /// `clean_up_tokenization` when asked (the decoder already cleans each token).
    pub fn decode(&self, ids: &[u32], opts: &DecodeOptions) -> Result<String> {
        let text = self
            .inner
            .decode(ids, opts.skip_special_tokens)
            .map_err(backend)?;
        let clean = opts
            .clean_up_tokenization_spaces
            .unwrap_or(self.config.clean_up_tokenization_spaces);
        Ok(if clean {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// Tokens of `ids`; unknown ids are skipped (the backend knows no string for them; Python
    /// returns `None` there).
    pub fn convert_ids_to_tokens(&self, ids: &[u32], special: SpecialTokens) -> Vec<String> {
        let skip = if special == SpecialTokens::Skip {
            self.all_special_ids()
        } else {
            Vec::new()
        };
        ids.iter()
            .filter(|id| !skip.contains(id))
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
