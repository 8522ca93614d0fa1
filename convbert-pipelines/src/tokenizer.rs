//! The pipelines' tokenizer: Hugging Face `BertTokenizerFast` semantics through the `tokenizers`
//! crate (what the Python fast tokenizer runs), loaded from a checkpoint's `tokenizer.json`, or
//! built from its `vocab.txt` the way transformers' `BertConverter` does
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/convert_slow_tokenizer.py>).
//! Offsets are in characters of the original text, as in Python.

use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, Decoder, EncodeInput, Encoding, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

use crate::error::{PipelineError, Result};

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

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
    let text = std::fs::read_to_string(path).map_err(|source| PipelineError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| PipelineError::Tokenizer(format!("{}: {e}", path.display())))
}

/// HF's `BertConverter`: normaliser, pre-tokeniser, WordPiece, `[CLS] A [SEP] (B [SEP])`.
fn from_vocab(vocab: &Path, lowercase: bool, strip_accents: Option<bool>) -> Result<Tokenizer> {
    let path = vocab
        .to_str()
        .ok_or_else(|| PipelineError::Tokenizer(format!("non-UTF-8 path {}", vocab.display())))?;
    let model = WordPiece::from_file(path)
        .unk_token("[UNK]".into())
        .build()
        .map_err(PipelineError::tokenizer)?;
    let mut tok = Tokenizer::new(model);
    let id = |t: &str| {
        tok.token_to_id(t)
            .ok_or_else(|| PipelineError::Tokenizer(format!("{} lacks {t}", vocab.display())))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    tok.with_normalizer(Some(BertNormalizer::new(
        true,
        true,
        strip_accents,
        lowercase,
    )))
    .with_pre_tokenizer(Some(BertPreTokenizer))
    .with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )))
    .with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .filter(|t| tok.token_to_id(t).is_some())
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

impl TextTokenizer {
    /// Loads `dir/tokenizer.json`, else builds the tokenizer from `dir/vocab.txt` (lower-casing
    /// per `tokenizer_config.json`, default true).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let inner = if json.is_file() {
            Tokenizer::from_file(&json).map_err(PipelineError::tokenizer)?
        } else if vocab.is_file() {
            let lowercase = config["do_lower_case"].as_bool().unwrap_or(true);
            from_vocab(&vocab, lowercase, config["strip_accents"].as_bool())?
        } else {
            return Err(PipelineError::Tokenizer(format!(
                "{} has neither tokenizer.json nor vocab.txt",
                dir.display()
            )));
        };
        Self::new(inner, &config)
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

    /// `first` + `second` cut into windows of `max_len` tokens over `second` with `stride`
    /// overlapping tokens (HF `truncation="only_second"`, `return_overflowing_tokens=True`).
    pub fn encode_windows(
        &self,
        first: &str,
        second: &str,
        max_len: usize,
        stride: usize,
    ) -> Result<Vec<Encoding>> {
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len,
            strategy: TruncationStrategy::OnlySecond,
            stride,
        }))
        .map_err(PipelineError::tokenizer)?;
        let mut enc = tok
            .encode_char_offsets((first, second), true)
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

/// transformers' `clean_up_tokenization`: removes the space before punctuation and contractions.
fn clean_up_tokenization(text: &str) -> String {
    [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ]
    .iter()
    .fold(text.to_string(), |t, (from, to)| t.replace(from, to))
}
