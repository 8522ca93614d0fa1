//! `AddedToken`: a token added on top of the WordPiece vocabulary (`tokenizers.AddedToken`), with
//! the flags Hugging Face stores in `tokenizer_config.json` (`added_tokens_decoder`) and
//! `tokenizer.json` (`added_tokens`).

use serde::{Deserialize, Serialize};

/// A user-added or special token and how it is matched in the text.
///
/// Defaults follow `tokenizers.AddedToken(content)`: no stripping, not single-word, and
/// `normalized = !special` (matched after lowercasing in an uncased tokenizer).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddedToken {
    /// The token string.
    pub content: String,
    /// Only match as a whole word (never inside a word).
    #[serde(default)]
    pub single_word: bool,
    /// Swallow the whitespace on its left.
    #[serde(default)]
    pub lstrip: bool,
    /// Swallow the whitespace on its right.
    #[serde(default)]
    pub rstrip: bool,
    /// Match on the normalised (lowercased) text rather than the raw text.
    #[serde(default = "yes")]
    pub normalized: bool,
    /// A special token: never split, dropped by `decode` with `skip_special_tokens`.
    #[serde(default)]
    pub special: bool,
}

fn yes() -> bool {
    true
}

impl AddedToken {
    /// A normal (non-special) token with HF's defaults: `normalized = true`, no stripping.
    pub fn new(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: true,
            special: false,
        }
    }

    /// A special token as `add_special_tokens` creates it from a string: `normalized = false`.
    pub fn special(content: impl Into<String>) -> Self {
        Self {
            normalized: false,
            special: true,
            ..Self::new(content)
        }
    }

    /// Sets `single_word`.
    pub fn single_word(mut self, on: bool) -> Self {
        self.single_word = on;
        self
    }

    /// Sets `lstrip`.
    pub fn lstrip(mut self, on: bool) -> Self {
        self.lstrip = on;
        self
    }

    /// Sets `rstrip`.
    pub fn rstrip(mut self, on: bool) -> Self {
        self.rstrip = on;
        self
    }

    /// Sets `normalized`.
    pub fn normalized(mut self, on: bool) -> Self {
        self.normalized = on;
        self
    }

    pub(crate) fn to_backend(&self) -> tokenizers::AddedToken {
        tokenizers::AddedToken::from(self.content.clone(), self.special)
            .single_word(self.single_word)
            .lstrip(self.lstrip)
            .rstrip(self.rstrip)
            .normalized(self.normalized)
    }

    pub(crate) fn from_backend(t: &tokenizers::AddedToken) -> Self {
        Self {
            content: t.content.clone(),
            single_word: t.single_word,
            lstrip: t.lstrip,
            rstrip: t.rstrip,
            normalized: t.normalized,
            special: t.special,
        }
    }
}

impl From<&str> for AddedToken {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for AddedToken {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&String> for AddedToken {
    fn from(s: &String) -> Self {
        Self::new(s.clone())
    }
}
