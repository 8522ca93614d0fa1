//! Encode options and the encoded output (`BatchEncoding` fields of one example).

/// Truncation strategy (`truncation=` in Python).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncationStrategy {
    /// No truncation (`False` / `"do_not_truncate"`).
    #[default]
    DoNotTruncate,
    /// Remove from the longer sequence first (`True` / `"longest_first"`).
    LongestFirst,
    /// Truncate only the first sequence.
    OnlyFirst,
    /// Truncate only the second sequence.
    OnlySecond,
}

/// Padding strategy (`padding=` in Python).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingStrategy {
    /// No padding.
    #[default]
    DoNotPad,
    /// Pad to the longest sequence of the batch (`True` / `"longest"`).
    Longest,
    /// Pad to `max_length` (or `model_max_length`).
    MaxLength,
}

/// Which end truncation and padding act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Side {
    /// The start of the sequence.
    Left,
    /// The end of the sequence (HF default).
    #[default]
    Right,
}

/// Per-call options of `encode` / `encode_pair` / `encode_batch` (HF `__call__` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add `[CLS]` / `[SEP]` (default true).
    pub add_special_tokens: bool,
    /// Truncation strategy.
    pub truncation: TruncationStrategy,
    /// Target length for truncation and `MaxLength` padding; `None` uses `model_max_length`.
    pub max_length: Option<usize>,
    /// Overlap of overflowing tokens.
    pub stride: usize,
    /// Padding strategy.
    pub padding: PaddingStrategy,
    /// Round the padded length up to a multiple of this.
    pub pad_to_multiple_of: Option<usize>,
    /// Side that receives padding (`padding_side`).
    pub padding_side: Side,
    /// Side that loses tokens (`truncation_side`).
    pub truncation_side: Side,
    /// Compute character offsets.
    pub return_offsets: bool,
    /// Return overflowing tokens (`return_overflowing_tokens`).
    pub return_overflowing_tokens: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            add_special_tokens: true,
            truncation: TruncationStrategy::DoNotTruncate,
            max_length: None,
            stride: 0,
            padding: PaddingStrategy::DoNotPad,
            pad_to_multiple_of: None,
            padding_side: Side::Right,
            truncation_side: Side::Right,
            return_offsets: false,
            return_overflowing_tokens: false,
        }
    }
}

/// One encoded example.
///
/// The standalone path reports overflow like the slow tokenizer (`overflowing_tokens`,
/// `num_truncated_tokens`); the fast path like the fast one (extra rows in `overflowing`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoding {
    /// Token ids `(seq,)`.
    pub ids: Vec<u32>,
    /// Segment ids: 0 for the first sequence, 1 for the second.
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// 1 for added special tokens and padding.
    pub special_tokens_mask: Vec<u32>,
    /// Character offsets `(start, end)`, `(0, 0)` for special and pad tokens; empty unless asked.
    pub offsets: Vec<(usize, usize)>,
    /// Slow semantics: the truncated-away ids plus `stride` context.
    pub overflowing_tokens: Vec<u32>,
    /// Slow semantics: total length minus `max_length` (may be negative, as in Python).
    pub num_truncated_tokens: Option<i64>,
    /// Fast semantics: one full extra row per overflow window.
    pub overflowing: Vec<Encoding>,
}

impl Encoding {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there is no token.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
