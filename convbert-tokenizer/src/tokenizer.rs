//! `ConvBertTokenizer`: the standalone (slow-reference) tokenizer and its encode / decode API.
//! Reference: transformers 4.57.6 `ConvBertTokenizer` and `PreTrainedTokenizerBase.prepare_for_model`.

use crate::added_token::AddedToken;
use crate::api::{as_special, DecodeOptions, SpecialTokens};
use crate::basic::{Pipeline, State};
use crate::config::TokenizerConfig;
use crate::decode::{clean_up_tokenization, tokens_to_string};
use crate::encoding::{EncodeOptions, Encoding, TruncationStrategy};
use crate::error::{Result, TokenizerError};
use crate::options::{resolve, Resolved};
use crate::padding::pad;
use crate::post_processor::SpecialIds;
use crate::pre_tokenizer::AddedTokens;
use crate::truncation::{truncate_sequences, Seq};
use crate::vocab::Vocab;
use crate::wordpiece::WordPiece;
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// BERT WordPiece tokenizer matching Python's slow `ConvBertTokenizer` (transformers 4.57.6).
///
/// User-added tokens follow the slow `PreTrainedTokenizer`: with `do_lower_case`, a normalised
/// added token is stored lowercased (`ConvBERT` is kept as `convbert`, and decodes so); matching
/// runs on the lowercased text; `lstrip` / `rstrip` / `single_word` as in `tokenize`.
#[derive(Debug, Clone)]
pub struct ConvBertTokenizer {
    vocab: Vocab,
    config: TokenizerConfig,
    specials: SpecialIds,
    added: AddedTokens,
    /// HF's `_added_tokens_decoder` (the special tokens included) and its reverse map.
    added_decoder: BTreeMap<u32, AddedToken>,
    added_encoder: HashMap<String, u32>,
    pipeline: Pipeline,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

impl ConvBertTokenizer {
    /// Builds the tokenizer; every special token of `config` must be in `vocab`.
    pub fn new(vocab: Vocab, config: TokenizerConfig) -> Result<Self> {
        Self::with_added_tokens(vocab, config, BTreeMap::new())
    }

    /// Builds the tokenizer with HF's `added_tokens_decoder` (id → token, as read from
    /// `tokenizer_config.json`); special tokens missing from it are added as HF's `__init__` does.
    pub fn with_added_tokens(
        vocab: Vocab,
        config: TokenizerConfig,
        added_tokens_decoder: BTreeMap<u32, AddedToken>,
    ) -> Result<Self> {
        let specials = SpecialIds::resolve(&vocab, &config)?;
        let never_split = config
            .never_split
            .iter()
            .map(|t| (t.clone(), vocab.token_to_id(t)))
            .collect();
        let pipeline = Pipeline {
            wordpiece: WordPiece::new(&vocab, specials.unk, config.max_input_chars_per_word),
            // Python's `do_lower_case` is a property of the BasicTokenizer: without it nothing
            // lowercases the text (not even `PreTrainedTokenizer.tokenize`).
            lower: config.do_lower_case && config.do_basic_tokenize,
            strip: config.strips_accents(),
            cjk: config.tokenize_chinese_chars,
            basic: config.do_basic_tokenize,
            never_split,
            unk_id: specials.unk,
            ascii: Pipeline::ascii_classes(),
        };
        let lower = pipeline.lower;
        let mut tok = Self {
            added_encoder: added_tokens_decoder
                .iter()
                .map(|(&id, t)| (t.content.clone(), id))
                .collect(),
            added_decoder: added_tokens_decoder,
            vocab,
            config,
            specials,
            added: AddedTokens::new(Vec::new(), lower),
            pipeline,
        };
        let missing: Vec<AddedToken> = tok
            .config
            .all_special_tokens()
            .into_iter()
            .filter(|t| !tok.added_encoder.contains_key(*t))
            .map(AddedToken::special)
            .collect();
        tok.add_tokens_impl(missing, true);
        Ok(tok)
    }

    /// Loads a checkpoint directory as `ConvBertTokenizer.from_pretrained(dir)`: `vocab.txt` (else
    /// the vocabulary and normaliser options of `tokenizer.json`), options and special tokens from
    /// `tokenizer_config.json` and `special_tokens_map.json`, added tokens from the config's
    /// `added_tokens_decoder` (else `added_tokens.json`, else `tokenizer.json`'s `added_tokens`).
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self> {
        let p = crate::pretrained::read_dir(dir.as_ref())?;
        match (&p.vocab_txt, &p.tokenizer_json) {
            (Some(vocab), _) => {
                Self::with_added_tokens(Vocab::from_file(vocab)?, p.config.clone(), p.added.clone())
            }
            (None, Some((_, text))) => {
                let (vocab, json_config) = crate::tokenizer_json::parse(text)?;
                let config = p.config_over(json_config)?;
                let added = if p.added.is_empty() {
                    crate::tokenizer_json::added_tokens(text)?
                } else {
                    p.added.clone()
                };
                Self::with_added_tokens(vocab, config, added)
            }
            (None, None) => Err(TokenizerError::MissingVocab(dir.as_ref().to_path_buf())),
        }
    }

    /// Writes `tokenizer_config.json`, `special_tokens_map.json`, `vocab.txt` and (with added
    /// tokens beyond the vocabulary) `added_tokens.json` into `dir`, as HF's `save_pretrained`.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        let dir = dir.as_ref();
        let mut out = crate::pretrained::write_configs(
            dir,
            &self.config,
            &self.added_decoder,
            self.vocab.len(),
        )?;
        out.insert(2, self.vocab.save(dir, None)?.0);
        Ok(out)
    }

    /// HF `_add_tokens`: ids continue after `len(tokenizer)`; a token already in the vocabulary
    /// keeps its id (and is not counted). Returns the number of new ids.
    fn add_tokens_impl(&mut self, tokens: Vec<AddedToken>, special_tokens: bool) -> usize {
        let mut added = 0;
        let new_idx = self.len() as u32;
        for mut token in tokens {
            if token.content.is_empty() {
                continue;
            }
            // A plain token stands for a Python string: skipped when already added, special
            // when it is one of the special tokens.
            if token == AddedToken::new(token.content.clone()) {
                if self.added_encoder.contains_key(&token.content) {
                    continue;
                }
                let is_special = special_tokens
                    || self
                        .config
                        .all_special_tokens()
                        .contains(&token.content.as_str());
                token.special = is_special;
                token.normalized = !is_special;
            } else if special_tokens {
                token.special = true;
            }
            if !token.special && token.normalized && self.pipeline.lower {
                token.content = crate::unicode::py_lower(&token.content);
            }
            let existing = self
                .added_encoder
                .get(&token.content)
                .copied()
                .or_else(|| self.vocab.token_to_id(&token.content));
            let id = existing.unwrap_or_else(|| {
                added += 1;
                new_idx + added - 1
            });
            if token.special
                && !self
                    .config
                    .all_special_tokens()
                    .contains(&token.content.as_str())
            {
                self.config
                    .additional_special_tokens
                    .push(token.content.clone());
            }
            self.added_encoder.insert(token.content.clone(), id);
            self.added_decoder.insert(id, token);
        }
        self.added = AddedTokens::new(
            self.added_decoder
                .iter()
                .map(|(&id, t)| (t.clone(), id))
                .collect(),
            self.pipeline.lower,
        );
        added as usize
    }

    /// Adds normal tokens (`add_tokens`), matched before WordPiece; returns how many got new ids.
    /// Strings get HF's defaults (`normalized=true`: lowercased when the tokenizer lowercases).
    pub fn add_tokens<T: Into<AddedToken>>(
        &mut self,
        tokens: impl IntoIterator<Item = T>,
    ) -> usize {
        self.add_tokens_impl(tokens.into_iter().map(Into::into).collect(), false)
    }

    /// Adds special tokens (HF `add_special_tokens({"additional_special_tokens": [...]})`, appended
    /// to `additional_special_tokens`): never split, dropped by `decode` with
    /// `skip_special_tokens`. Strings get `normalized=false`.
    pub fn add_special_tokens<T: Into<AddedToken>>(
        &mut self,
        tokens: impl IntoIterator<Item = T>,
    ) -> usize {
        let tokens = tokens.into_iter().map(|t| as_special(t.into())).collect();
        self.add_tokens_impl(tokens, true)
    }

    /// Every added token by id, the special tokens included (`added_tokens_decoder`).
    pub fn added_tokens_decoder(&self) -> BTreeMap<u32, AddedToken> {
        self.added_decoder.clone()
    }

    /// Size of the vocabulary without added tokens (`vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// `len(tokenizer)`: the vocabulary plus the added tokens that are not in it.
    pub fn len(&self) -> usize {
        self.vocab.len()
            + self
                .added_encoder
                .keys()
                .filter(|t| self.vocab.token_to_id(t).is_none())
                .count()
    }

    /// True when the tokenizer has no token at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads a `vocab.txt` file.
    pub fn from_vocab_file(path: impl AsRef<Path>, config: TokenizerConfig) -> Result<Self> {
        Self::new(Vocab::from_file(path)?, config)
    }

    /// Loads a BERT `tokenizer.json` (vocabulary and normaliser options).
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::io(path, e))?;
        let (vocab, config) = crate::tokenizer_json::parse(&text)?;
        Self::new(vocab, config)
    }

    /// bert-base-uncased with HF defaults, from the vocabulary embedded in the crate (cargo
    /// feature `embedded-vocab`, on by default).
    #[cfg(feature = "embedded-vocab")]
    pub fn bert_base_uncased() -> Result<Self> {
        Self::new(Vocab::bert_base_uncased()?, TokenizerConfig::default())
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The options.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        STATE.with(|s| match s.try_borrow_mut() {
            Ok(mut st) => f(&mut st),
            Err(_) => f(&mut State::default()),
        })
    }

    fn run(&self, st: &mut State, text: &str, offsets: bool) -> Seq {
        st.reset(offsets);
        self.added.tokenize(&self.pipeline, st, text);
        seq_of(st, offsets)
    }

    /// Token ids of `text` without special tokens (`encode(text, add_special_tokens=False)`).
    pub fn tokenize_ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.with_state(|st| self.run(st, text, false).ids))
    }

    /// Token ids and character offsets of `text`, without special tokens.
    pub fn tokenize_with_offsets(&self, text: &str) -> (Vec<u32>, Vec<(usize, usize)>) {
        self.with_state(|st| {
            let s = self.run(st, text, true);
            (s.ids, s.offsets)
        })
    }

    /// Tokens of `text` (`tokenize`).
    pub fn tokenize(&self, text: &str) -> Result<Vec<String>> {
        Ok(self.convert_ids_to_tokens(&self.tokenize_ids(text)?, SpecialTokens::Keep))
    }

    /// Encodes one text (`__call__(text)`).
    pub fn encode(&self, text: &str, opts: &EncodeOptions) -> Result<Encoding> {
        self.encode_one(text, None, opts)
    }

    /// Encodes a pair (`__call__(text, text_pair)`).
    pub fn encode_pair(&self, text: &str, pair: &str, opts: &EncodeOptions) -> Result<Encoding> {
        self.encode_one(text, Some(pair), opts)
    }

    fn encode_one(&self, text: &str, pair: Option<&str>, opts: &EncodeOptions) -> Result<Encoding> {
        let r = self.resolve(opts, pair.is_some())?;
        let mut enc = self.with_state(|st| self.prepare(st, text, pair, opts, &r));
        if let Some(target) = r.padding {
            let target = target.unwrap_or(enc.ids.len());
            self.pad(&mut enc, target, opts);
        }
        Ok(enc)
    }

    /// The options with `model_max_length` applied, rejected when they cannot work.
    fn resolve(&self, opts: &EncodeOptions, pairs: bool) -> Result<Resolved> {
        let r = resolve(opts, self.config.model_max_length)?;
        if pairs {
            check_pair_options(opts, &r)?;
        }
        Ok(r)
    }

    fn pad(&self, enc: &mut Encoding, target: usize, opts: &EncodeOptions) {
        pad(
            enc,
            target,
            opts.pad_to_multiple_of,
            opts.padding_side,
            self.specials.pad,
            opts.return_offsets,
        );
    }

    /// Encodes a batch in parallel (rayon; results in input order), then pads over the batch.
    /// `pairs`, when given, must have the same length as `texts`.
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
        let r = self.resolve(opts, pairs.is_some())?;
        // Coarse work units, each with its own buffers; the results go straight to their
        // slots of the output, so nothing runs serially after the parallel part.
        let unit = (texts.len() / (rayon::current_num_threads() * 4)).clamp(1, 1024);
        let mut out = Vec::with_capacity(texts.len());
        texts
            .par_iter()
            .enumerate()
            .with_min_len(unit)
            .map_init(State::default, |st, (i, t)| {
                self.prepare(st, t, pairs.map(|p| p[i]), opts, &r)
            })
            .collect_into_vec(&mut out);
        if let Some(target) = r.padding {
            let target = target.unwrap_or_else(|| out.iter().map(Encoding::len).max().unwrap_or(0));
            out.par_iter_mut()
                .with_min_len(unit)
                .for_each(|enc| self.pad(enc, target, opts));
        }
        Ok(out)
    }

    /// `prepare_for_model` without padding: truncation, special tokens, masks. Options that
    /// cannot work are rejected by `resolve` before.
    fn prepare(
        &self,
        st: &mut State,
        text: &str,
        pair: Option<&str>,
        opts: &EncodeOptions,
        r: &Resolved,
    ) -> Encoding {
        st.reset(opts.return_offsets);
        self.added.tokenize(&self.pipeline, st, text);
        if pair.is_none() {
            // A single text that needs no truncation is built straight from the buffers.
            let added = if opts.add_special_tokens { 2 } else { 0 };
            let fits = r
                .truncation
                .is_none_or(|(_, max)| max == 0 || st.ids.len() + added <= max);
            if fits {
                return self.single(&st.ids, &st.offsets, opts, r);
            }
        }
        let mut a = seq_of(st, opts.return_offsets);
        let mut b = pair.map(|p| self.run(st, p, opts.return_offsets));
        let added = if opts.add_special_tokens {
            2 + usize::from(b.is_some())
        } else {
            0
        };
        let total = a.ids.len() + b.as_ref().map_or(0, |b| b.ids.len()) + added;
        let mut overflow = Vec::new();
        if let Some((strategy, max)) = r.truncation {
            if max > 0 && total > max {
                overflow = truncate_sequences(
                    &mut a,
                    b.as_mut(),
                    total - max,
                    strategy,
                    opts.stride,
                    opts.truncation_side,
                );
            }
        }
        let mut enc = Encoding::default();
        if opts.return_overflowing_tokens {
            enc.overflowing_tokens = overflow;
            enc.num_truncated_tokens = r.truncation.map(|(_, max)| total as i64 - max as i64);
        }
        let b_ids = b.as_ref().map(|b| b.ids.as_slice());
        if opts.add_special_tokens {
            enc.ids = self.specials.build_inputs(&a.ids, b_ids);
            enc.type_ids = SpecialIds::type_ids(&a.ids, b_ids);
            enc.special_tokens_mask = SpecialIds::added_mask(a.ids.len(), b_ids.map(<[u32]>::len));
        } else {
            enc.ids = a.ids.iter().chain(b_ids.unwrap_or(&[])).copied().collect();
            enc.type_ids = vec![0; enc.ids.len()];
            enc.special_tokens_mask = vec![0; enc.ids.len()];
        }
        enc.attention_mask = vec![1; enc.ids.len()];
        if opts.return_offsets {
            let special = opts.add_special_tokens;
            let mut offsets = Vec::with_capacity(enc.ids.len());
            offsets.extend(special.then_some((0, 0)));
            offsets.extend_from_slice(&a.offsets);
            offsets.extend(special.then_some((0, 0)));
            if let Some(b) = &b {
                offsets.extend_from_slice(&b.offsets);
                offsets.extend(special.then_some((0, 0)));
            }
            enc.offsets = offsets;
        }
        enc
    }

    /// The encoding of one untruncated sequence, built from the tokenizer's buffers.
    fn single(
        &self,
        ids: &[u32],
        offsets: &[(usize, usize)],
        opts: &EncodeOptions,
        r: &Resolved,
    ) -> Encoding {
        let special = opts.add_special_tokens;
        let n = ids.len() + if special { 2 } else { 0 };
        let mut enc = Encoding {
            type_ids: vec![0; n],
            attention_mask: vec![1; n],
            ..Encoding::default()
        };
        if special {
            enc.ids = self.specials.build_inputs(ids, None);
            enc.special_tokens_mask = SpecialIds::added_mask(ids.len(), None);
        } else {
            enc.ids = ids.to_vec();
            enc.special_tokens_mask = vec![0; n];
        }
        if opts.return_offsets {
            let mut out = Vec::with_capacity(n);
            out.extend(special.then_some((0, 0)));
            out.extend_from_slice(offsets);
            out.extend(special.then_some((0, 0)));
            enc.offsets = out;
        }
        if opts.return_overflowing_tokens {
            enc.num_truncated_tokens = r.truncation.map(|(_, max)| n as i64 - max as i64);
        }
        enc
    }

    /// Decodes ids (`decode`, i.e. `_decode` of the slow tokenizer): WordPiece tokens joined,
    /// added non-special tokens (and added special tokens beyond the vocabulary) kept as separate
    /// pieces, special tokens dropped when asked, then `clean_up_tokenization` when asked.
    pub fn decode(&self, ids: &[u32], opts: &DecodeOptions) -> Result<String> {
        let skip = if opts.skip_special_tokens {
            SpecialTokens::Skip
        } else {
            SpecialTokens::Keep
        };
        let tokens = self.convert_ids_to_tokens(ids, skip);
        let specials = self.config.all_special_tokens();
        let vocab_size = self.vocab.len() as u32;
        let legacy = |t: &str| {
            self.added_encoder.get(t).is_some_and(|&id| {
                !specials.contains(&t)
                    || (self.config.additional_special_tokens.iter().any(|a| a == t)
                        && id >= vocab_size)
            })
        };
        let mut sub_texts: Vec<String> = Vec::new();
        let mut current: Vec<&str> = Vec::new();
        for t in &tokens {
            if opts.skip_special_tokens && specials.contains(&t.as_str()) {
                continue;
            }
            if legacy(t) {
                if !current.is_empty() {
                    let s = tokens_to_string(&current);
                    if !s.is_empty() {
                        sub_texts.push(s);
                    }
                    current.clear();
                }
                sub_texts.push(t.clone());
            } else {
                current.push(t);
            }
        }
        if !current.is_empty() {
            sub_texts.push(tokens_to_string(&current));
        }
        let text = sub_texts.join(" ");
        let clean = opts
            .clean_up_tokenization_spaces
            .unwrap_or(self.config.clean_up_tokenization_spaces);
        Ok(if clean {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// Tokens of `ids` (added tokens included); unknown ids give the `[UNK]` string.
    pub fn convert_ids_to_tokens(&self, ids: &[u32], special: SpecialTokens) -> Vec<String> {
        let skip = special == SpecialTokens::Skip;
        let special_ids: Vec<u32> = if skip {
            self.all_special_ids()
        } else {
            Vec::new()
        };
        ids.iter()
            .filter(|id| !special_ids.contains(id))
            .map(|&id| match self.added_decoder.get(&id) {
                Some(t) => t.content.clone(),
                None => self
                    .vocab
                    .id_to_token(id)
                    .unwrap_or(&self.config.unk_token)
                    .to_string(),
            })
            .collect()
    }

    /// HF's `all_special_ids`: ids of the five special tokens and the additional ones.
    fn all_special_ids(&self) -> Vec<u32> {
        self.config
            .all_special_tokens()
            .iter()
            .filter_map(|t| self.token_to_id(t))
            .collect()
    }

    /// The id of `token` (added tokens first, then the vocabulary).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added_encoder
            .get(token)
            .copied()
            .or_else(|| self.vocab.token_to_id(token))
    }

    /// Ids of `tokens`; unknown tokens give the `[UNK]` id.
    pub fn convert_tokens_to_ids(&self, tokens: &[&str]) -> Vec<u32> {
        tokens
            .iter()
            .map(|t| self.token_to_id(t).unwrap_or(self.specials.unk))
            .collect()
    }

    /// `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`.
    pub fn build_inputs_with_special_tokens(&self, a: &[u32], b: Option<&[u32]>) -> Vec<u32> {
        self.specials.build_inputs(a, b)
    }

    /// 1 at special positions; with `already_has_special_tokens`, 1 for every special id
    /// (`[UNK]` included) and `b` must be `None`. The flag keeps HF's name and position: it
    /// selects a different computation (look at the ids instead of their positions), and code
    /// ported from Python reads the same.
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

    /// Writes `vocab.txt` (see [`Vocab::save`]); returns the path and whether ids had holes.
    pub fn save_vocabulary(
        &self,
        target: impl AsRef<Path>,
        prefix: Option<&str>,
    ) -> Result<(PathBuf, bool)> {
        self.vocab.save(target, prefix)
    }

    /// Writes the equivalent `tokenizer.json`, loadable by HF `ConvBertTokenizerFast`.
    pub fn save_tokenizer_json(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::fast::ConvBertTokenizerFast::with_added_tokens(
            self.vocab.clone(),
            self.config.clone(),
            self.added_decoder.clone(),
        )?
        .save(path)
    }
}

/// A copy of the ids (and offsets, when asked for) in `st`.
fn seq_of(st: &State, offsets: bool) -> Seq {
    Seq {
        ids: st.ids.clone(),
        offsets: if offsets {
            st.offsets.clone()
        } else {
            Vec::new()
        },
    }
}

/// Python refuses overflowing tokens for pairs truncated `longest_first`.
fn check_pair_options(opts: &EncodeOptions, r: &Resolved) -> Result<()> {
    if opts.return_overflowing_tokens
        && matches!(r.truncation, Some((TruncationStrategy::LongestFirst, _)))
    {
        return Err(TokenizerError::Options(
            "Not possible to return overflowing tokens for pair of sequences with the `longest_first`. Please select another truncation strategy than `longest_first`, for instance `only_second` or `only_first`.".into(),
        ));
    }
    Ok(())
}
