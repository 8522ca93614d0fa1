//! [`PreTrainedTokenizerBase`]: the API shared by [`crate::ConvBertTokenizer`] (slow) and
//! [`crate::ConvBertTokenizerFast`], named after transformers' `PreTrainedTokenizerBase`, the class
//! both Python tokenizers derive from. Both types also have every method as an inherent method,
//! so the trait is only needed for code generic over the two.

use crate::added_token::AddedToken;
use crate::encoding::{EncodeOptions, Encoding};
use crate::error::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `decode` (HF `decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=None)`).
/// `Default` is HF's default: keep special tokens, clean up as the tokenizer config says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Drop special tokens (`[CLS]`, `[SEP]`, `[PAD]`, `[UNK]`, `[MASK]`, added special tokens).
    pub skip_special_tokens: bool,
    /// Apply `clean_up_tokenization` (`" ."` → `"."`, …); `None` follows the tokenizer's
    /// `clean_up_tokenization_spaces` (true for BERT in transformers v4).
    pub clean_up_tokenization_spaces: Option<bool>,
}

impl DecodeOptions {
    /// HF's defaults with `skip_special_tokens=True`.
    pub fn skip_special_tokens() -> Self {
        Self {
            skip_special_tokens: true,
            clean_up_tokenization_spaces: None,
        }
    }
}

/// Whether `convert_ids_to_tokens` keeps or drops special tokens (HF's `skip_special_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpecialTokens {
    /// Keep them (HF's default).
    #[default]
    Keep,
    /// Drop every id of `all_special_ids`.
    Skip,
}

/// The tokenizer API of Hugging Face's `PreTrainedTokenizerBase`, implemented by both tokenizers.
///
/// Lengths follow HF: [`vocab_size`](Self::vocab_size) is the WordPiece vocabulary alone,
/// [`len`](Self::len) (`len(tokenizer)`) also counts added tokens.
pub trait PreTrainedTokenizerBase: Sized {
    /// Loads a checkpoint directory as `from_pretrained(dir)` does (see the type's docs for the
    /// files read and their precedence).
    fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self>;
    /// Writes what `save_pretrained(dir)` writes; returns the files written.
    fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>>;
    /// Writes `vocab.txt` (`save_vocabulary`); returns the path and whether the ids had holes.
    fn save_vocabulary(
        &self,
        target: impl AsRef<Path>,
        prefix: Option<&str>,
    ) -> Result<(PathBuf, bool)>;
    /// Encodes one text (`__call__(text)`).
    fn encode(&self, text: &str, opts: &EncodeOptions) -> Result<Encoding>;
    /// Encodes a pair (`__call__(text, text_pair)`).
    fn encode_pair(&self, text: &str, pair: &str, opts: &EncodeOptions) -> Result<Encoding>;
    /// Encodes a batch (optionally of pairs), padded over the batch.
    fn encode_batch(
        &self,
        texts: &[&str],
        pairs: Option<&[&str]>,
        opts: &EncodeOptions,
    ) -> Result<Vec<Encoding>>;
    /// Token strings of `text` without special tokens (`tokenize`).
    fn tokenize(&self, text: &str) -> Result<Vec<String>>;
    /// Token ids of `text` without special tokens (`encode(text, add_special_tokens=False)`).
    fn tokenize_ids(&self, text: &str) -> Result<Vec<u32>>;
    /// Ids back to text (`decode`).
    fn decode(&self, ids: &[u32], opts: &DecodeOptions) -> Result<String>;
    /// Token strings of `ids` (`convert_ids_to_tokens`).
    fn convert_ids_to_tokens(&self, ids: &[u32], special: SpecialTokens) -> Vec<String>;
    /// Ids of `tokens`, added tokens included; unknown tokens give the `[UNK]` id.
    fn convert_tokens_to_ids(&self, tokens: &[&str]) -> Vec<u32>;
    /// `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`.
    fn build_inputs_with_special_tokens(&self, a: &[u32], b: Option<&[u32]>) -> Vec<u32>;
    /// HF's `get_special_tokens_mask(a, b, already_has_special_tokens)`.
    fn get_special_tokens_mask(
        &self,
        a: &[u32],
        b: Option<&[u32]>,
        already_has_special_tokens: bool,
    ) -> Result<Vec<u32>>;
    /// Zeros for `[CLS] a [SEP]`, ones for `b [SEP]`.
    fn create_token_type_ids_from_sequences(&self, a: &[u32], b: Option<&[u32]>) -> Vec<u32>;
    /// Adds normal tokens (`add_tokens`); returns how many HF reports as added.
    fn add_tokens<T: Into<AddedToken>>(&mut self, tokens: impl IntoIterator<Item = T>) -> usize;
    /// Adds special tokens (`add_special_tokens({"additional_special_tokens": ...})`).
    fn add_special_tokens<T: Into<AddedToken>>(
        &mut self,
        tokens: impl IntoIterator<Item = T>,
    ) -> usize;
    /// Every added token by id, the five special tokens included (`added_tokens_decoder`).
    fn added_tokens_decoder(&self) -> BTreeMap<u32, AddedToken>;
    /// Size of the WordPiece vocabulary without added tokens (`vocab_size`).
    fn vocab_size(&self) -> usize;
    /// Vocabulary plus added tokens (`len(tokenizer)`).
    fn len(&self) -> usize;
    /// True when [`len`](Self::len) is 0.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Implements the trait by delegating to the type's inherent methods of the same signatures.
macro_rules! impl_tokenizer_api {
    ($ty:ty) => {
        impl $crate::api::PreTrainedTokenizerBase for $ty {
            fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self> {
                <$ty>::from_pretrained(dir)
            }
            fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
                <$ty>::save_pretrained(self, dir)
            }
            fn save_vocabulary(
                &self,
                target: impl AsRef<Path>,
                prefix: Option<&str>,
            ) -> Result<(PathBuf, bool)> {
                <$ty>::save_vocabulary(self, target, prefix)
            }
            fn encode(&self, text: &str, opts: &EncodeOptions) -> Result<Encoding> {
                <$ty>::encode(self, text, opts)
            }
            fn encode_pair(
                &self,
                text: &str,
                pair: &str,
                opts: &EncodeOptions,
            ) -> Result<Encoding> {
                <$ty>::encode_pair(self, text, pair, opts)
            }
            fn encode_batch(
                &self,
                texts: &[&str],
                pairs: Option<&[&str]>,
                opts: &EncodeOptions,
            ) -> Result<Vec<Encoding>> {
                <$ty>::encode_batch(self, texts, pairs, opts)
            }
            fn tokenize(&self, text: &str) -> Result<Vec<String>> {
                <$ty>::tokenize(self, text)
            }
            fn tokenize_ids(&self, text: &str) -> Result<Vec<u32>> {
                <$ty>::tokenize_ids(self, text)
            }
            fn decode(&self, ids: &[u32], opts: &DecodeOptions) -> Result<String> {
                <$ty>::decode(self, ids, opts)
            }
            fn convert_ids_to_tokens(&self, ids: &[u32], special: SpecialTokens) -> Vec<String> {
                <$ty>::convert_ids_to_tokens(self, ids, special)
            }
            fn convert_tokens_to_ids(&self, tokens: &[&str]) -> Vec<u32> {
                <$ty>::convert_tokens_to_ids(self, tokens)
            }
            fn build_inputs_with_special_tokens(&self, a: &[u32], b: Option<&[u32]>) -> Vec<u32> {
                <$ty>::build_inputs_with_special_tokens(self, a, b)
            }
            fn get_special_tokens_mask(
                &self,
                a: &[u32],
                b: Option<&[u32]>,
                already_has_special_tokens: bool,
            ) -> Result<Vec<u32>> {
                <$ty>::get_special_tokens_mask(self, a, b, already_has_special_tokens)
            }
            fn create_token_type_ids_from_sequences(
                &self,
                a: &[u32],
                b: Option<&[u32]>,
            ) -> Vec<u32> {
                <$ty>::create_token_type_ids_from_sequences(self, a, b)
            }
            fn add_tokens<T: Into<AddedToken>>(
                &mut self,
                tokens: impl IntoIterator<Item = T>,
            ) -> usize {
                <$ty>::add_tokens(self, tokens)
            }
            fn add_special_tokens<T: Into<AddedToken>>(
                &mut self,
                tokens: impl IntoIterator<Item = T>,
            ) -> usize {
                <$ty>::add_special_tokens(self, tokens)
            }
            fn added_tokens_decoder(&self) -> BTreeMap<u32, AddedToken> {
                <$ty>::added_tokens_decoder(self)
            }
            fn vocab_size(&self) -> usize {
                <$ty>::vocab_size(self)
            }
            fn len(&self) -> usize {
                <$ty>::len(self)
            }
        }
    };
}
impl_tokenizer_api!(crate::ConvBertTokenizer);
impl_tokenizer_api!(crate::ConvBertTokenizerFast);

/// A special token given as a plain string (all flags at their defaults) is added with
/// `normalized = false`, as HF's `add_special_tokens` does for strings; explicit flags are kept.
pub(crate) fn as_special(t: AddedToken) -> AddedToken {
    if t == AddedToken::new(t.content.clone()) {
        AddedToken::special(t.content)
    } else {
        AddedToken { special: true, ..t }
    }
}
