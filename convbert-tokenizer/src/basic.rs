//! The standalone pipeline: BasicTokenizer and WordPiece fused into one pass over the text.
//!
//! Mirrors `BasicTokenizer.tokenize` + `WordpieceTokenizer.tokenize` of transformers 4.57.6
//! (models/bert/tokenization_bert.py). A byte-class table drives an ASCII fast path; other text is
//! cut into NFC-safe segments (a starter plus what may combine with it), so normalising segment
//! by segment equals Python's whole-string NFC. Offsets are only tracked when asked for.

use crate::unicode::{self, CJK, DELETE, NFC_START, PUNCT, SPACE};
use crate::wordpiece::WordPiece;
use std::collections::HashMap;

pub(crate) const A_DELETE: u8 = 0;
pub(crate) const A_SPACE: u8 = 1;
pub(crate) const A_PUNCT: u8 = 2;
pub(crate) const A_WORD: u8 = 3;

/// Resolved options and models of the standalone path.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    pub(crate) wordpiece: WordPiece,
    pub(crate) lower: bool,
    pub(crate) strip: bool,
    pub(crate) cjk: bool,
    pub(crate) basic: bool,
    /// never_split tokens and their ids (None = not in the vocabulary).
    pub(crate) never_split: HashMap<String, Option<u32>>,
    pub(crate) unk_id: u32,
    pub(crate) ascii: [u8; 128],
}

/// Reusable buffers and the output of one encode; one per thread.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) ids: Vec<u32>,
    pub(crate) offsets: Vec<(usize, usize)>,
    pub(crate) want_offsets: bool,
    pub(crate) word: String,
    pub(crate) word_chars: usize,
    /// Source character range of each byte of `word` (only with offsets).
    pub(crate) word_align: Vec<(usize, usize)>,
    pub(crate) spans: Vec<(usize, usize)>,
    pub(crate) seg: String,
    pub(crate) seg_range: (usize, usize),
    /// Source char index of each char of `seg` (only with offsets).
    pub(crate) seg_pos: Vec<usize>,
    /// Normalised chars with the index of the `seg` char they come from (only with offsets).
    pub(crate) per_char: Vec<(char, usize)>,
    pub(crate) buf_a: String,
    pub(crate) buf_b: String,
    /// Whitespace token being built, for never_split: text, start char, end char, first output index.
    pub(crate) chunk: Option<(String, usize, usize, usize)>,
}

impl State {
    /// Clears the outputs for the next text.
    pub(crate) fn reset(&mut self, want_offsets: bool) {
        self.ids.clear();
        self.offsets.clear();
        self.want_offsets = want_offsets;
    }
}

impl Pipeline {
    pub(crate) fn ascii_classes() -> [u8; 128] {
        let mut t = [A_WORD; 128];
        for (b, slot) in t.iter_mut().enumerate() {
            let f = unicode::flags(b as u8 as char);
            *slot = if f & DELETE != 0 {
                A_DELETE
            } else if f & SPACE != 0 {
                A_SPACE
            } else if f & PUNCT != 0 {
                A_PUNCT
            } else {
                A_WORD
            };
        }
        t
    }

    /// Tokenizes `text` (no special tokens inside) whose first char has index `ci`; returns the
    /// char index after it.
    pub(crate) fn run(&self, st: &mut State, text: &str, mut ci: usize) -> usize {
        if !self.basic {
            return self.run_whitespace_only(st, text, ci);
        }
        let bytes = text.as_bytes();
        let track_chunk = !self.never_split.is_empty();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let next_ascii = bytes.get(i + 1).is_none_or(|&n| n < 0x80);
            if b < 0x80 && next_ascii && !st.seg.is_empty() && self.ascii[b as usize] != A_DELETE {
                // An ASCII starter ends the pending segment; back to the fast path.
                self.flush_segment(st);
            }
            if b < 0x80 && st.seg.is_empty() && next_ascii {
                match self.ascii[b as usize] {
                    A_DELETE => {}
                    A_SPACE => {
                        self.end_word(st);
                        self.end_chunk(st);
                    }
                    class => {
                        let c = if self.lower {
                            b.to_ascii_lowercase()
                        } else {
                            b
                        } as char;
                        if track_chunk {
                            self.chunk_push(st, ci, c);
                        }
                        if class == A_PUNCT {
                            self.end_word(st);
                            self.push_word_char(st, c, (ci, ci + 1));
                            self.end_word(st);
                        } else {
                            self.push_word_char(st, c, (ci, ci + 1));
                        }
                    }
                }
                i += 1;
                ci += 1;
                continue;
            }
            let Some(c) = text[i..].chars().next() else {
                break;
            };
            let f = unicode::flags(c);
            if f & DELETE != 0 {
                // Removed before NFC: it neither splits words nor blocks composition.
            } else if f & SPACE != 0 {
                self.flush_segment(st);
                self.end_word(st);
                self.end_chunk(st);
            } else if self.cjk && f & CJK != 0 {
                self.flush_segment(st);
                self.end_word(st);
                self.end_chunk(st);
                self.start_segment(st, c, ci);
                self.flush_segment(st);
                self.end_word(st);
                self.end_chunk(st);
            } else if f & NFC_START != 0 || st.seg.is_empty() {
                self.flush_segment(st);
                self.start_segment(st, c, ci);
            } else {
                st.seg.push(c);
                st.seg_range.1 = ci + 1;
                if st.want_offsets {
                    st.seg_pos.push(ci);
                }
            }
            i += c.len_utf8();
            ci += 1;
        }
        self.flush_segment(st);
        self.end_word(st);
        self.end_chunk(st);
        ci
    }

    fn start_segment(&self, st: &mut State, c: char, ci: usize) {
        st.seg.push(c);
        st.seg_range = (ci, ci + 1);
        if st.want_offsets {
            st.seg_pos.clear();
            st.seg_pos.push(ci);
        }
        if !self.never_split.is_empty() && st.chunk.is_none() {
            st.chunk = Some((String::new(), ci, ci, st.ids.len()));
        }
    }

    /// `do_basic_tokenize=False`: split on Python whitespace only (no cleaning, no lowercasing).
    fn run_whitespace_only(&self, st: &mut State, text: &str, mut ci: usize) -> usize {
        for c in text.chars() {
            if unicode::flags(c) & SPACE != 0 {
                self.end_word(st);
            } else {
                self.push_word_char(st, c, (ci, ci + 1));
            }
            ci += 1;
        }
        self.end_word(st);
        ci
    }

    fn chunk_push(&self, st: &mut State, ci: usize, c: char) {
        let mark = st.ids.len();
        let chunk = st
            .chunk
            .get_or_insert_with(|| (String::new(), ci, ci, mark));
        chunk.0.push(c);
        chunk.2 = ci + 1;
    }

    /// Adds one normalised character to the current word (or emits it alone if punctuation).
    #[inline]
    pub(crate) fn emit(&self, st: &mut State, c: char, range: (usize, usize)) {
        let f = unicode::flags(c);
        if f & PUNCT != 0 {
            self.end_word(st);
            self.push_word_char(st, c, range);
            self.end_word(st);
        } else if f & SPACE != 0 {
            self.end_word(st);
        } else {
            self.push_word_char(st, c, range);
        }
    }

    #[inline]
    fn push_word_char(&self, st: &mut State, c: char, range: (usize, usize)) {
        st.word.push(c);
        st.word_chars += 1;
        if st.want_offsets {
            for _ in 0..c.len_utf8() {
                st.word_align.push(range);
            }
        }
    }

    /// Runs WordPiece on the pending word.
    pub(crate) fn end_word(&self, st: &mut State) {
        if st.word.is_empty() {
            return;
        }
        if st.want_offsets {
            st.spans.clear();
            self.wordpiece
                .tokenize(&st.word, st.word_chars, &mut st.ids, Some(&mut st.spans));
            for &(s, e) in &st.spans {
                st.offsets
                    .push((st.word_align[s].0, st.word_align[e - 1].1));
            }
            st.word_align.clear();
        } else {
            self.wordpiece
                .tokenize(&st.word, st.word_chars, &mut st.ids, None);
        }
        st.word.clear();
        st.word_chars = 0;
    }

    /// Ends a whitespace token: a never_split token replaces the pieces produced for it.
    fn end_chunk(&self, st: &mut State) {
        let Some((text, start, end, mark)) = st.chunk.take() else {
            return;
        };
        if let Some(id) = self.never_split.get(&text) {
            st.ids.truncate(mark);
            st.ids.push(id.unwrap_or(self.unk_id));
            if st.want_offsets {
                st.offsets.truncate(mark);
                st.offsets.push((start, end));
            }
        }
    }
}
