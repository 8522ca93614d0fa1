//! Greedy longest-match-first WordPiece (`WordpieceTokenizer.tokenize` in tokenization_bert.py),
//! on two byte tries: one for word-initial pieces, one for `##` continuations (prefix removed).
//! Each step walks the trie once from the current position and keeps the last token seen, which
//! is the longest vocabulary match; no string is built while matching.

use crate::trie::Trie;
use crate::vocab::Vocab;

/// The tries of the embedded bert-base-uncased vocabulary, built by build.rs.
#[cfg(feature = "embedded-vocab")]
static EMBEDDED_TRIES: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/bert-base-uncased-tries.bin"));

/// The precomputed (start, continuation) tries when `vocab` is the embedded one.
fn embedded_tries(vocab: &Vocab) -> Option<(Trie, Trie)> {
    #[cfg(feature = "embedded-vocab")]
    if vocab.is_bert_base_uncased() {
        let (start, rest) = Trie::decode(EMBEDDED_TRIES)?;
        let (cont, _) = Trie::decode(rest)?;
        return Some((start, cont));
    }
    let _ = vocab;
    None
}

/// WordPiece model: the tries, `[UNK]` id and the per-word character limit.
#[derive(Debug, Clone)]
pub(crate) struct WordPiece {
    start: Trie,
    cont: Trie,
    unk_id: u32,
    max_chars: usize,
}

impl WordPiece {
    pub(crate) fn new(vocab: &Vocab, unk_id: u32, max_chars: usize) -> Self {
        let (start, cont) = match embedded_tries(vocab) {
            Some(tries) => tries,
            None => (
                Trie::build(vocab.iter().map(|(t, id)| (t.as_bytes(), id))),
                Trie::build(
                    vocab
                        .iter()
                        .filter_map(|(t, id)| t.strip_prefix("##").map(|s| (s.as_bytes(), id))),
                ),
            ),
        };
        Self {
            start,
            cont,
            unk_id,
            max_chars,
        }
    }

    /// Appends the pieces of `word` (`n_chars` characters) to `ids`, and to `spans` their byte
    /// ranges in `word` when asked. A word with an unmatchable position becomes one `[UNK]`.
    #[inline]
    pub(crate) fn tokenize(
        &self,
        word: &str,
        n_chars: usize,
        ids: &mut Vec<u32>,
        spans: Option<&mut Vec<(usize, usize)>>,
    ) {
        let bytes = word.as_bytes();
        let mark = ids.len();
        if n_chars > self.max_chars {
            ids.push(self.unk_id);
            if let Some(spans) = spans {
                spans.push((0, bytes.len()));
            }
            return;
        }
        let mut start = 0;
        let mut local_spans = spans;
        let span_mark = local_spans.as_ref().map_or(0, |s| s.len());
        while start < bytes.len() {
            let trie = if start == 0 { &self.start } else { &self.cont };
            match trie.longest(&bytes[start..]) {
                Some((len, id)) => {
                    ids.push(id);
                    if let Some(s) = local_spans.as_deref_mut() {
                        s.push((start, start + len));
                    }
                    start += len;
                }
                None => {
                    ids.truncate(mark);
                    ids.push(self.unk_id);
                    if let Some(s) = local_spans.as_deref_mut() {
                        s.truncate(span_mark);
                        s.push((0, bytes.len()));
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_longest_match() -> crate::Result<()> {
        let vocab = Vocab::from_bytes("[UNK]\nun\n##aff\n##able\nu\n##a\n".as_bytes())?;
        let wp = WordPiece::new(&vocab, 0, 100);
        let mut ids = Vec::new();
        let mut spans = Vec::new();
        wp.tokenize("unaffable", 9, &mut ids, Some(&mut spans));
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(spans, [(0, 2), (2, 5), (5, 9)]);
        ids.clear();
        wp.tokenize("unaffablex", 10, &mut ids, None);
        assert_eq!(ids, [0]);
        Ok(())
    }

    #[cfg(feature = "embedded-vocab")]
    #[test]
    fn precomputed_tries_equal_built_ones() -> crate::Result<()> {
        let vocab = Vocab::bert_base_uncased()?;
        let (start, cont) = embedded_tries(&vocab).ok_or(crate::TokenizerError::Json(
            "no precomputed tries for the embedded vocabulary".into(),
        ))?;
        let built = Vocab::from_pairs(vocab.iter().map(|(t, id)| (t.to_string(), id)))?;
        assert!(embedded_tries(&built).is_none());
        let fresh = WordPiece::new(&built, 100, 100);
        assert!(start == fresh.start && cont == fresh.cont);
        Ok(())
    }
}
