//! WordPiece vocabulary: `vocab.txt` read and written exactly like transformers' `load_vocab` and
//! `BertTokenizer.save_vocabulary` (models/bert/tokenization_bert.py, v4.57.6).

use crate::error::{Result, TokenizerError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The bert-base-uncased `vocab.txt` (30522 lines), compiled into the crate.
#[cfg(feature = "embedded-vocab")]
pub(crate) static BERT_BASE_UNCASED: &[u8] = include_bytes!("../data/bert-base-uncased-vocab.txt");

/// Token <-> id maps. A token listed twice keeps its last line, so ids may have holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    token_to_id: HashMap<String, u32>,
    id_to_token: Vec<Option<String>>,
}

impl Vocab {
    /// Parses `vocab.txt` bytes: one token per line, id = line number. Like Python's text mode,
    /// `\n`, `\r\n` and a lone `\r` end a line; nothing else is stripped.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let text =
            std::str::from_utf8(bytes).map_err(|e| TokenizerError::InvalidUtf8(e.valid_up_to()))?;
        let mut lines = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['\n', '\r']) {
                Some(i) => {
                    lines.push(&rest[..i]);
                    let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                    rest = &rest[i + skip..];
                }
                None => {
                    lines.push(rest);
                    rest = "";
                }
            }
        }
        Self::from_pairs(
            lines
                .into_iter()
                .enumerate()
                .map(|(i, t)| (t.to_string(), i as u32)),
        )
    }

    /// Reads a `vocab.txt` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
        Self::from_bytes(&bytes)
    }

    /// Builds a vocabulary from (token, id) pairs; a later pair for the same token wins.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, u32)>) -> Result<Self> {
        let pairs = pairs.into_iter();
        // Sized up front: growing rehashes 30 k strings a dozen times (start-up of every CLI run).
        let mut token_to_id = HashMap::with_capacity(pairs.size_hint().0);
        for (token, id) in pairs {
            token_to_id.insert(token, id);
        }
        let size = token_to_id
            .values()
            .map(|&id| id as usize + 1)
            .max()
            .unwrap_or(0);
        if size > (u32::MAX as usize) / 2 || size > 16 * token_to_id.len() + 1024 {
            return Err(TokenizerError::Json(format!(
                "vocabulary ids up to {size} are too sparse"
            )));
        }
        let mut id_to_token = vec![None; size];
        for (token, &id) in &token_to_id {
            id_to_token[id as usize] = Some(token.clone());
        }
        Ok(Self {
            token_to_id,
            id_to_token,
        })
    }

    /// The embedded bert-base-uncased vocabulary (cargo feature `embedded-vocab`, on by default).
    #[cfg(feature = "embedded-vocab")]
    pub fn bert_base_uncased() -> Result<Self> {
        Self::from_bytes(BERT_BASE_UNCASED)
    }

    /// Number of distinct tokens (Python's `vocab_size`).
    pub fn len(&self) -> usize {
        self.token_to_id.len()
    }

    /// True when the vocabulary has no token.
    pub fn is_empty(&self) -> bool {
        self.token_to_id.is_empty()
    }

    /// The id of `token`, if present.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.token_to_id.get(token).copied()
    }

    /// The token of `id`, if present.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.id_to_token.get(id as usize).and_then(|t| t.as_deref())
    }

    /// (token, id) pairs in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.id_to_token
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_deref().map(|t| (t, i as u32)))
    }

    /// Writes `vocab.txt` in id order like `save_vocabulary`: into `<dir>/<prefix->vocab.txt` when
    /// `target` is a directory, else to `<prefix->target`. Returns the path and whether the ids
    /// had holes (Python then warns "vocabulary indices are not consecutive").
    pub fn save(&self, target: impl AsRef<Path>, prefix: Option<&str>) -> Result<(PathBuf, bool)> {
        let target = target.as_ref();
        let prefix = prefix.map(|p| format!("{p}-")).unwrap_or_default();
        let path = if target.is_dir() {
            target.join(format!("{prefix}vocab.txt"))
        } else {
            PathBuf::from(format!("{prefix}{}", target.display()))
        };
        let mut text = String::new();
        let mut holes = false;
        let mut expected = 0u32;
        for (token, id) in self.iter() {
            holes |= id != expected;
            expected = id + 1;
            text.push_str(token);
            text.push('\n');
        }
        std::fs::write(&path, text).map_err(|e| TokenizerError::io(&path, e))?;
        Ok((path, holes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_line_rules() -> Result<()> {
        let v = Vocab::from_bytes(b"a\r\nb\rc \n\nb\nd")?;
        assert_eq!(v.token_to_id("a"), Some(0));
        assert_eq!(v.token_to_id("b"), Some(4)); // last occurrence wins
        assert_eq!(v.token_to_id("c "), Some(2));
        assert_eq!(v.token_to_id(""), Some(3));
        assert_eq!(v.token_to_id("d"), Some(5));
        assert_eq!(v.id_to_token(1), None); // the hole left by the duplicate
        assert!(matches!(
            Vocab::from_bytes(b"a\n\xff\n"),
            Err(TokenizerError::InvalidUtf8(2))
        ));
        Ok(())
    }

    #[cfg(feature = "embedded-vocab")]
    #[test]
    fn embedded_vocab() -> Result<()> {
        let v = Vocab::bert_base_uncased()?;
        assert_eq!(
            (v.len(), v.token_to_id("[UNK]"), v.token_to_id("hello")),
            (30522, Some(100), Some(7592))
        );
        Ok(())
    }
}
