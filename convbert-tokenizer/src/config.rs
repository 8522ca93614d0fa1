//! Constructor options of `ConvBertTokenizer` / `ConvBertTokenizerFast`, with Hugging Face defaults.

/// Tokenizer options (HF constructor arguments and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerConfig {
    /// Lowercase the input (default true).
    pub do_lower_case: bool,
    /// Run the BasicTokenizer before WordPiece (default true; standalone path only).
    pub do_basic_tokenize: bool,
    /// Whitespace tokens kept whole by the BasicTokenizer (standalone path only).
    pub never_split: Vec<String>,
    /// Unknown-token string (default `[UNK]`).
    pub unk_token: String,
    /// Separator string (default `[SEP]`).
    pub sep_token: String,
    /// Padding string (default `[PAD]`).
    pub pad_token: String,
    /// Classifier string (default `[CLS]`).
    pub cls_token: String,
    /// Mask string (default `[MASK]`).
    pub mask_token: String,
    /// Put spaces around CJK ideographs (default true).
    pub tokenize_chinese_chars: bool,
    /// Strip accents; `None` follows `do_lower_case`.
    pub strip_accents: Option<bool>,
    /// Longer words become a single `[UNK]` (default 100 characters).
    pub max_input_chars_per_word: usize,
    /// Default `max_length` for truncation and padding; `None` = unbounded (HF's 1e30).
    pub model_max_length: Option<usize>,
    /// Default of `clean_up_tokenization_spaces` in decode (true for BERT in v4).
    pub clean_up_tokenization_spaces: bool,
    /// Special tokens beyond the five (`additional_special_tokens`), e.g. `<ent>`.
    pub additional_special_tokens: Vec<String>,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            do_lower_case: true,
            do_basic_tokenize: true,
            never_split: Vec::new(),
            unk_token: "[UNK]".into(),
            sep_token: "[SEP]".into(),
            pad_token: "[PAD]".into(),
            cls_token: "[CLS]".into(),
            mask_token: "[MASK]".into(),
            tokenize_chinese_chars: true,
            strip_accents: None,
            max_input_chars_per_word: 100,
            model_max_length: None,
            clean_up_tokenization_spaces: true,
            additional_special_tokens: Vec::new(),
        }
    }
}

impl TokenizerConfig {
    /// Whether accents are stripped (`strip_accents`, or `do_lower_case` when unset).
    pub(crate) fn strips_accents(&self) -> bool {
        self.strip_accents.unwrap_or(self.do_lower_case)
    }

    /// HF's `all_special_tokens`: the five, then `additional_special_tokens`.
    pub(crate) fn all_special_tokens(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.special_tokens().to_vec();
        out.extend(self.additional_special_tokens.iter().map(String::as_str));
        out
    }

    /// The five special tokens in HF's `all_special_tokens` order.
    pub(crate) fn special_tokens(&self) -> [&str; 5] {
        [
            &self.unk_token,
            &self.sep_token,
            &self.pad_token,
            &self.cls_token,
            &self.mask_token,
        ]
    }
}
