//! ConvBERT / BERT WordPiece tokenizer with Hugging Face parity and no libtorch.
//!
//! Two implementations of the same tokenizer:
//! * [`ConvBertTokenizer`]: the standalone path, a fast re-implementation of the slow Python
//!   `ConvBertTokenizer` of transformers 4.57.6 (Python 3.11, Unicode 14.0).
//! * [`ConvBertTokenizerFast`]: `ConvBertTokenizerFast`, i.e. the `tokenizers` crate pipeline.
//!
//! Both implement [`PreTrainedTokenizerBase`], Hugging Face's tokenizer API: `from_pretrained` /
//! `save_pretrained` of a checkpoint directory, `encode`, `decode` with [`DecodeOptions`],
//! `add_tokens` / `add_special_tokens` with [`AddedToken`], `len` (added tokens included).
//!
//! ```
//! use convbert_tokenizer::{
//!     ConvBertTokenizer, ConvBertTokenizerFast, DecodeOptions, EncodeOptions,
//!     PreTrainedTokenizerBase, TokenizerConfig, Vocab,
//! };
//! let vocab = Vocab::from_bytes(b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n,\n!\n")?;
//! let mut tok = ConvBertTokenizer::new(vocab, TokenizerConfig::default())?;
//! assert_eq!(tok.add_tokens(["ConvBERT"]), 1); // id 9, after the vocabulary
//! tok.add_special_tokens(["<ent>"]); // id 10
//! let enc = tok.encode("Hello, ConvBERT <ent>!", &EncodeOptions::default())?;
//! assert_eq!(enc.ids, [2, 5, 7, 9, 10, 8, 3]);
//! assert_eq!(tok.decode(&enc.ids, &DecodeOptions::skip_special_tokens())?, "hello, convbert!");
//! assert_eq!((tok.vocab_size(), tok.len()), (9, 11));
//!
//! // A checkpoint directory, as `save_pretrained` / `from_pretrained` in Python.
//! let dir = std::env::temp_dir().join(format!("convbert-doc-{}", std::process::id()));
//! tok.save_pretrained(&dir)?;
//! let fast = ConvBertTokenizerFast::from_pretrained(&dir)?;
//!
//! // Code generic over both tokenizers.
//! fn count<T: PreTrainedTokenizerBase>(tok: &T, text: &str) -> convbert_tokenizer::Result<usize> {
//!     Ok(tok.tokenize_ids(text)?.len())
//! }
//! assert_eq!(count(&tok, "hello convbert")?, count(&fast, "hello convbert")?);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), convbert_tokenizer::TokenizerError>(())
//! ```
//!
//! Added tokens behave as in transformers 4.57.6, where the slow and fast Python tokenizers
//! differ (each of ours matches its own counterpart; fixtures/tokenizer/added):
//! * uncased slow stores a normalised added token lowercased (`ConvBERT` decodes as `convbert`);
//!   fast keeps `ConvBERT`;
//! * uncased slow lowercases the text before matching, so a lowercase special token (`<ent>`)
//!   also matches `<ENT>`, and a `normalized=false` token with capitals never matches; fast matches
//!   special and `normalized=false` tokens on the raw text, case-sensitively;
//! * `add_tokens` counts a token already in the vocabulary in fast, not in slow;
//! * `single_word`: slow glues the token to a neighbour not separated by a plain space (`mid.` is
//!   one word), fast uses word boundaries (`mid` `.`); with `lstrip` / `rstrip`, fast's token
//!   strings keep the stripped spaces (ids are the same).
//!
//! Offsets are `(start, end)` **character** (Unicode scalar) offsets into the input text, as Python
//! reports them; `str::char_indices` converts them to byte offsets.

mod added_token;
mod api;
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
mod pretrained;
mod tokenizer;
mod tokenizer_json;
mod trie;
mod truncation;
mod unicode;
#[rustfmt::skip]
mod unicode_tables;
mod vocab;
mod wordpiece;

pub use added_token::AddedToken;
pub use api::{DecodeOptions, PreTrainedTokenizerBase, SpecialTokens};
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
