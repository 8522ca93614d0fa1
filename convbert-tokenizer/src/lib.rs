//! ConvBERT / BERT WordPiece tokenizer with Hugging Face parity and no libtorch.
//!
//! Two implementations of the same tokenizer:
//! * [`ConvBertTokenizer`]: the standalone path, a fast re-implementation of the slow Python
//!   `ConvBertTokenizer` of transformers 4.57.6 (Python 3.11, Unicode 14.0).
//! * [`ConvBertTokenizerFast`]: `ConvBertTokenizerFast`, i.e. the `tokenizers` crate pipeline.
//!
//! ```
//! use convbert_tokenizer::{ConvBertTokenizer, EncodeOptions};
//! let tok = ConvBertTokenizer::bert_base_uncased()?;
//! let enc = tok.encode("Hello, world!", &EncodeOptions::default())?;
//! assert_eq!(enc.ids, [101, 7592, 1010, 2088, 999, 102]);
//! assert_eq!(tok.decode(&enc.ids, true, true), "hello, world!");
//! # Ok::<(), convbert_tokenizer::TokenizerError>(())
//! ```
//!
//! Offsets are `(start, end)` **character** (Unicode scalar) offsets into the input text, as Python
//! reports them; `str::char_indices` converts them to byte offsets.

mod basic;
mod config;
mod decode;
mod encoding;
mod error;
mod fast;
mod normalizer;
mod options;
mod padding;
mod post_processor;
mod pre_tokenizer;
mod tokenizer;
mod tokenizer_json;
mod truncation;
mod unicode;
#[rustfmt::skip]
mod unicode_tables;
mod vocab;
mod wordpiece;

pub use config::TokenizerConfig;
pub use decode::clean_up_tokenization;
pub use encoding::{EncodeOptions, Encoding, PaddingStrategy, Side, TruncationStrategy};
pub use error::{Result, TokenizerError};
pub use fast::ConvBertTokenizerFast;
pub use tokenizer::ConvBertTokenizer;
pub use vocab::Vocab;

/// The README's example, run as a doctest (it needs the embedded vocabulary).
#[cfg(all(doctest, feature = "embedded-vocab"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
