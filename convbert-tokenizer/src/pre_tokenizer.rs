//! Top level of the standalone path (`PreTrainedTokenizer.tokenize`): special tokens are cut out
//! first, case-sensitively on the raw text, leftmost and longest match first (the added-tokens
//! trie); the text between them goes through the BasicTokenizer + WordPiece pipeline.

use crate::basic::{Pipeline, State};

/// The added (special) tokens and their ids, longest first.
#[derive(Debug, Clone)]
pub(crate) struct AddedTokens {
    tokens: Vec<(String, u32)>,
    first_bytes: [bool; 256],
}

impl AddedTokens {
    pub(crate) fn new(mut tokens: Vec<(String, u32)>) -> Self {
        tokens.retain(|(t, _)| !t.is_empty());
        tokens.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        tokens.dedup_by(|a, b| a.0 == b.0);
        let mut first_bytes = [false; 256];
        for (t, _) in &tokens {
            first_bytes[t.as_bytes()[0] as usize] = true;
        }
        Self {
            tokens,
            first_bytes,
        }
    }

    /// The leftmost special token at or after byte `from`: (start, end, id).
    fn find(&self, text: &str, from: usize) -> Option<(usize, usize, u32)> {
        let bytes = text.as_bytes();
        let mut i = from;
        while i < bytes.len() {
            if self.first_bytes[bytes[i] as usize] {
                for (t, id) in &self.tokens {
                    if bytes[i..].starts_with(t.as_bytes()) {
                        return Some((i, i + t.len(), *id));
                    }
                }
            }
            i += 1;
        }
        None
    }

    /// Tokenizes `text` into `st.ids` (and `st.offsets` when `st.want_offsets`).
    pub(crate) fn tokenize(&self, pipeline: &Pipeline, st: &mut State, text: &str) {
        let mut pos = 0;
        let mut ci = 0;
        while let Some((start, end, id)) = self.find(text, pos) {
            ci = pipeline.run(st, &text[pos..start], ci);
            let n = text[start..end].chars().count();
            st.ids.push(id);
            if st.want_offsets {
                st.offsets.push((ci, ci + n));
            }
            ci += n;
            pos = end;
        }
        pipeline.run(st, &text[pos..], ci);
    }
}
