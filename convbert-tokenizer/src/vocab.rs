//! WordPiece vocabulary: `vocab.txt` read and written exactly like transformers' `load_vocab` and
//! `BertTokenizer.save_vocabulary` (models/bert/tokenization_bert.py, v4.57.6).

use crate::error::{Result, TokenizerError};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

/// The bert-base-uncased `vocab.txt` (30522 lines), compiled into the crate.
#[cfg(feature = "embedded-vocab")]
pub(crate) static BERT_BASE_UNCASED: &[u8] = include_bytes!("../data/bert-base-uncased-vocab.txt");

/// Token <-> id maps. A token listed twice keeps its last line, so ids may have holes.
///
/// All token texts share one buffer and the index holds entry numbers, not strings: building
/// it is the start-up of every `convbert tokenize`, and 60 k small allocations dominated that.
#[derive(Clone)]
pub struct Vocab {
    /// Every distinct token's text, concatenated.
    text: String,
    /// Per distinct token, in first-seen order: its byte range in `text` and its id.
    entries: Vec<(u32, u32, u32)>,
    /// Entry numbers, hashed by their token's text.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Per id, the entry holding it (NO_ENTRY for a hole).
    by_id: Vec<u32>,
    /// Parsed from the embedded bert-base-uncased bytes, whose tries build.rs precomputed.
    embedded: bool,
}

const NO_ENTRY: u32 = u32::MAX;

impl Vocab {
    /// Parses `vocab.txt` bytes: one token per line, id = line number. Like Python's text mode,
    /// `\n`, `\r\n` and a lone `\r` end a line; nothing else is stripped.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let text =
            std::str::from_utf8(bytes).map_err(|e| TokenizerError::InvalidUtf8(e.valid_up_to()))?;
        let mut builder = Builder::with_capacity(text.len(), text.len() / 8);
        let mut rest = text;
        let mut line = 0u32;
        while !rest.is_empty() {
            let (token, next) = match rest.find(['\n', '\r']) {
                Some(i) => {
                    let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                    (&rest[..i], &rest[i + skip..])
                }
                None => (rest, ""),
            };
            builder.push(token, line)?;
            line = line.checked_add(1).ok_or(TokenizerError::Json(
                "vocabulary has more than 2^32 lines".into(),
            ))?;
            rest = next;
        }
        let mut vocab = builder.finish()?;
        #[cfg(feature = "embedded-vocab")]
        {
            vocab.embedded = bytes == BERT_BASE_UNCASED;
        }
        Ok(vocab)
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
        let mut builder = Builder::with_capacity(0, pairs.size_hint().0);
        for (token, id) in pairs {
            builder.push(&token, id)?;
        }
        builder.finish()
    }

    /// The embedded bert-base-uncased vocabulary (cargo feature `embedded-vocab`, on by default).
    #[cfg(feature = "embedded-vocab")]
    pub fn bert_base_uncased() -> Result<Self> {
        Self::from_bytes(BERT_BASE_UNCASED)
    }

    /// True for the embedded bert-base-uncased vocabulary (or identical `vocab.txt` bytes).
    pub(crate) fn is_bert_base_uncased(&self) -> bool {
        self.embedded
    }

    /// Number of distinct tokens (Python's `vocab_size`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the vocabulary has no token.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The id of `token`, if present.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(token);
        self.index
            .find(hash, |&e| entry_text(&self.text, &self.entries, e) == token)
            .map(|&e| self.entries[e as usize].2)
    }

    /// The token of `id`, if present.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        match self.by_id.get(id as usize) {
            Some(&e) if e != NO_ENTRY => Some(entry_text(&self.text, &self.entries, e)),
            _ => None,
        }
    }

    /// (token, id) pairs in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.by_id
            .iter()
            .enumerate()
            .filter(|(_, &e)| e != NO_ENTRY)
            .map(|(id, &e)| (entry_text(&self.text, &self.entries, e), id as u32))
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

fn entry_text<'a>(text: &'a str, entries: &[(u32, u32, u32)], entry: u32) -> &'a str {
    let (start, end, _) = entries[entry as usize];
    &text[start as usize..end as usize]
}

/// Collects (token, id) pairs into a [`Vocab`].
struct Builder {
    vocab: Vocab,
}

impl Builder {
    fn with_capacity(text: usize, tokens: usize) -> Self {
        Self {
            vocab: Vocab {
                text: String::with_capacity(text),
                entries: Vec::with_capacity(tokens),
                index: HashTable::with_capacity(tokens),
                hasher: DefaultHashBuilder::default(),
                by_id: Vec::new(),
                embedded: false,
            },
        }
    }

    fn push(&mut self, token: &str, id: u32) -> Result<()> {
        let Vocab {
            text,
            entries,
            index,
            hasher,
            ..
        } = &mut self.vocab;
        let hash = hasher.hash_one(token);
        match index.entry(
            hash,
            |&e| entry_text(text, entries, e) == token,
            |&e| hasher.hash_one(entry_text(text, entries, e)),
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => entries[*e.get() as usize].2 = id,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let too_big = || TokenizerError::Json("vocabulary text over 4 GiB".into());
                let start = u32::try_from(text.len()).map_err(|_| too_big())?;
                text.push_str(token);
                let end = u32::try_from(text.len()).map_err(|_| too_big())?;
                let entry = u32::try_from(entries.len()).map_err(|_| too_big())?;
                entries.push((start, end, id));
                slot.insert(entry);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vocab> {
        let vocab = &mut self.vocab;
        let size = vocab
            .entries
            .iter()
            .map(|e| e.2 as usize + 1)
            .max()
            .unwrap_or(0);
        if size > (u32::MAX as usize) / 2 || size > 16 * vocab.entries.len() + 1024 {
            return Err(TokenizerError::Json(format!(
                "vocabulary ids up to {size} are too sparse"
            )));
        }
        // Two tokens sharing an id: the later one is that id's token.
        vocab.by_id = vec![NO_ENTRY; size];
        for (entry, &(_, _, id)) in vocab.entries.iter().enumerate() {
            vocab.by_id[id as usize] = entry as u32;
        }
        Ok(self.vocab)
    }
}

impl PartialEq for Vocab {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.iter().eq(other.iter())
            && self.entries.iter().all(|&(s, e, id)| {
                other.token_to_id(&self.text[s as usize..e as usize]) == Some(id)
            })
    }
}

impl Eq for Vocab {}

impl std::fmt::Debug for Vocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab")
            .field("len", &self.len())
            .finish_non_exhaustive()
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
