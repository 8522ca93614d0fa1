//! The pipelines' tokenizer: Hugging Face `BertTokenizerFast` semantics through
//! `convbert_tokenizer::ConvBertTokenizerFast` (the `tokenizers` crate pipeline that the Python fast
//! tokenizer runs), loaded from a checkpoint's `tokenizer.json`, else built from its `vocab.txt` as
//! transformers' `BertConverter` does, else the embedded bert-base-uncased vocabulary that every
//! public ConvBERT checkpoint uses. Offsets are in characters of the original text, as in Python.

use std::path::Path;

use convbert_tokenizer::{clean_up_tokenization, ConvBertTokenizerFast};
use serde_json::Value;
use tokenizers::{
    Decoder, EncodeInput, Encoding, PostProcessor, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::{PipelineError, Result};

/// Which end of an input truncation removes tokens from (HF `truncation_side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncationSide {
    /// Keep the end of the text.
    Left,
    /// Keep the start of the text (HF's default).
    #[default]
    Right,
}

/// A WordPiece tokenizer with the special-token ids the pipelines need.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// `clean_up_tokenization_spaces` of tokenizer_config.json (true for BERT).
    clean_up_spaces: bool,
    /// `model_max_length` of tokenizer_config.json, when finite.
    model_max_length: Option<usize>,
    pad_id: u32,
    mask_id: Option<u32>,
    cls_id: Option<u32>,
    unk_id: Option<u32>,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    // Regular files only, size-capped: a FIFO or a huge file never hangs the load.
    let text = convbert_model::checkpoint::read_json_file(path)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| PipelineError::Tokenizer(format!("{}: {e}", path.display())))
}

impl TextTokenizer {
    /// Loads `dir` as HF's `AutoTokenizer.from_pretrained(dir)` does
    /// ([`ConvBertTokenizerFast::from_pretrained`]: `tokenizer.json`, else `vocab.txt`, with
    /// `tokenizer_config.json`, `special_tokens_map.json` and added tokens); a directory with
    /// neither vocabulary file gets the embedded bert-base-uncased vocabulary.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.join("tokenizer.json").is_file() && !dir.join("vocab.txt").is_file() {
            let config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
            let fast =
                ConvBertTokenizerFast::bert_base_uncased().map_err(PipelineError::tokenizer)?;
            return Self::new(fast.backend().clone(), &config);
        }
        let fast = ConvBertTokenizerFast::from_pretrained(dir).map_err(PipelineError::tokenizer)?;
        let config = fast.config();
        let options = serde_json::json!({
            "clean_up_tokenization_spaces": config.clean_up_tokenization_spaces,
        });
        Ok(Self::new(fast.backend().clone(), &options)?
            .with_model_max_length(config.model_max_length))
    }

    /// Wraps a `tokenizers::Tokenizer`; `config` is the tokenizer_config.json content (or null).
    pub fn new(mut inner: Tokenizer, config: &Value) -> Result<Self> {
        inner
            .with_truncation(None)
            .map_err(PipelineError::tokenizer)?
            .with_padding(None);
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        Ok(Self {
            clean_up_spaces: config["clean_up_tokenization_spaces"]
                .as_bool()
                .unwrap_or(true),
            model_max_length: config["model_max_length"]
                .as_u64()
                .filter(|&n| n < 1 << 40)
                .map(|n| n as usize),
            pad_id,
            mask_id: inner.token_to_id("[MASK]"),
            cls_id: inner.token_to_id("[CLS]"),
            unk_id: inner.token_to_id("[UNK]"),
            inner,
        })
    }

    /// The same tokenizer with another `model_max_length` (`None`: unbounded), as setting
    /// `tokenizer.model_max_length` in Python.
    pub fn with_model_max_length(mut self, model_max_length: Option<usize>) -> Self {
        self.model_max_length = model_max_length;
        self
    }

    /// Encodes one text or a text pair with special tokens, no truncation, char offsets.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoding> {
        let input: EncodeInput = match pair {
            Some(p) => (text, p).into(),
            None => text.into(),
        };
        self.inner
            .encode_char_offsets(input, true)
            .map_err(|e| PipelineError::Input(format!("cannot tokenize: {e}")))
    }

    /// [`encode`](Self::encode) cut to at most `max_len` tokens (special tokens included) on
    /// `side`, the longer of a pair first (HF `truncation=True`). A `max_len` below the special
    /// tokens is an option error (HF's tokenizer silently skips the truncation then).
    pub fn encode_truncated(
        &self,
        text: &str,
        pair: Option<&str>,
        max_len: usize,
        side: TruncationSide,
    ) -> Result<Encoding> {
        self.check_max_length(max_len, pair.is_some())?;
        let input: EncodeInput = match pair {
            Some(p) => (text, p).into(),
            None => text.into(),
        };
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams {
            direction: match side {
                TruncationSide::Left => TruncationDirection::Left,
                TruncationSide::Right => TruncationDirection::Right,
            },
            max_length: max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(PipelineError::tokenizer)?;
        tok.encode_char_offsets(input, true)
            .map_err(|e| PipelineError::Input(format!("cannot tokenize: {e}")))
    }

    /// How many special tokens an input gets: 2 for a text (`[CLS] … [SEP]`), 3 for a pair.
    pub fn num_special_tokens(&self, pair: bool) -> usize {
        self.inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(pair))
    }

    /// Refuses a truncation length that leaves no room for the special tokens of a text
    /// (`pair = false`) or a pair.
    pub fn check_max_length(&self, max_len: usize, pair: bool) -> Result<()> {
        let specials = self.num_special_tokens(pair);
        if max_len < specials {
            let what = if pair { "a text pair" } else { "a text" };
            return Err(PipelineError::option(
                "max_length",
                format!("{max_len} is less than the {specials} special tokens of {what}"),
            ));
        }
        Ok(())
    }

    /// One text, with or without special tokens, offsets in bytes of `text` (what Text
    /// Embeddings Inference's `/tokenize` reports).
    pub fn encode_byte_offsets(&self, text: &str, add_special_tokens: bool) -> Result<Encoding> {
        self.inner
            .encode(text, add_special_tokens)
            .map_err(|e| PipelineError::Input(format!("cannot tokenize: {e}")))
    }

    /// `first` + `second` cut into windows of `max_len` tokens over `second` with `stride`
    /// overlapping tokens (HF `truncation="only_second"`, `return_overflowing_tokens=True`).
    pub fn encode_windows(
        &self,
        first: &str,
        second: &str,
        max_len: usize,
        stride: usize,
    ) -> Result<Vec<Encoding>> {
        let strategy = TruncationStrategy::OnlySecond;
        self.windows((first, second).into(), max_len, stride, strategy)
    }

    /// `text` cut into windows of at most `max_len` tokens (special tokens included), consecutive
    /// windows sharing `stride` tokens (HF `truncation=True`, `return_overflowing_tokens=True`).
    pub fn encode_text_windows(
        &self,
        text: &str,
        max_len: usize,
        stride: usize,
    ) -> Result<Vec<Encoding>> {
        let strategy = TruncationStrategy::LongestFirst;
        self.windows(text.into(), max_len, stride, strategy)
    }

    /// The encoding truncated with `strategy`, then its overflowing windows.
    fn windows(
        &self,
        input: EncodeInput,
        max_len: usize,
        stride: usize,
        strategy: TruncationStrategy,
    ) -> Result<Vec<Encoding>> {
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len,
            strategy,
            stride,
        }))
        .map_err(PipelineError::tokenizer)?;
        let mut enc = tok
            .encode_char_offsets(input, true)
            .map_err(|e| PipelineError::Input(format!("cannot tokenize: {e}")))?;
        let overflow = enc.take_overflowing();
        Ok(std::iter::once(enc).chain(overflow).collect())
    }

    /// HF `decode`: ids to text, with the `clean_up_tokenization_spaces` pass when configured.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text = self
            .inner
            .decode(ids, skip_special_tokens)
            .map_err(PipelineError::tokenizer)?;
        Ok(if self.clean_up_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// HF `convert_tokens_to_string` of a fast tokenizer: the decoder alone, no clean-up pass.
    pub fn tokens_to_string(&self, tokens: &[String]) -> Result<String> {
        match self.inner.get_decoder() {
            Some(d) => d.decode(tokens.to_vec()).map_err(PipelineError::tokenizer),
            None => Ok(tokens.join(" ")),
        }
    }

    /// The id of `token` in the vocabulary (added tokens included), as `get_vocab()[token]`.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of `text` without special tokens.
    pub fn ids_without_specials(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| PipelineError::Input(format!("cannot tokenize: {e}")))
    }

    /// The token string of `id` (`[UNK]`-free lookup; unknown ids give an empty string).
    pub fn id_to_token(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_default()
    }

    /// Whether the WordPiece model marks word continuations with a prefix (`##`).
    pub(crate) fn has_subword_prefix(&self) -> bool {
        matches!(self.inner.get_model(), tokenizers::ModelWrapper::WordPiece(w) if !w.continuing_subword_prefix.is_empty())
    }

    /// Id of `[PAD]` (0 when the vocabulary has none).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of `[MASK]`.
    pub fn mask_id(&self) -> Option<u32> {
        self.mask_id
    }

    /// Id of `[CLS]`.
    pub fn cls_id(&self) -> Option<u32> {
        self.cls_id
    }

    /// Id of `[UNK]`.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// `model_max_length` from tokenizer_config.json, when set and finite.
    pub fn model_max_length(&self) -> Option<usize> {
        self.model_max_length
    }
}
