//! Top level of the standalone path (`PreTrainedTokenizer.tokenize`, transformers 4.57.6
//! tokenization_utils.py): added tokens (special and user-added) are cut out first, leftmost and
//! longest match first (the added-tokens trie); the text between them goes through the
//! BasicTokenizer + WordPiece pipeline.
//!
//! Python quirks kept on purpose:
//! * with `do_lower_case`, the whole text is lowercased char by char before the trie runs, except
//!   exact occurrences of special tokens (and of normalised added tokens), so a special token
//!   spelled in lowercase (`<ent>`) also matches `<ENT>`, and an added token with
//!   `normalized=false` and capitals (`Keep`) never matches;
//! * `lstrip` / `rstrip` eat the whitespace next to a token; `single_word` glues the token back to
//!   a neighbour that does not end / start with a plain space (`" "` only), and the glued text
//!   goes through WordPiece.

use crate::added_token::AddedToken;
use crate::basic::{Pipeline, State};
use crate::unicode::{self, SPACE};

/// One added token and its id.
#[derive(Debug, Clone)]
struct Entry {
    token: AddedToken,
    id: u32,
}

/// The added tokens (HF's `_added_tokens_decoder`), longest first for matching.
#[derive(Debug, Clone)]
pub(crate) struct AddedTokens {
    entries: Vec<Entry>,
    first_bytes: [bool; 256],
    /// Match on the per-char lowercased text (Python's `do_lower_case` pre-pass).
    lower_view: bool,
    /// Whether any token strips or is single-word (the plain splitter suffices otherwise).
    flags: bool,
}

/// A piece of the text after the trie split: original byte ranges, and the entry when it is an
/// added token. A piece glued by `single_word` after a strip may have two ranges.
#[derive(Debug, Clone)]
struct Piece {
    ranges: Vec<(usize, usize)>,
    entry: Option<usize>,
}

fn is_py_space(c: char) -> bool {
    unicode::flags(c) & SPACE != 0
}

impl Piece {
    fn is_empty(&self) -> bool {
        self.ranges.iter().all(|(s, e)| s == e)
    }
}

impl AddedTokens {
    /// `tokens`: (token, id); `lower`: the tokenizer lowercases (`do_lower_case`).
    pub(crate) fn new(tokens: Vec<(AddedToken, u32)>, lower: bool) -> Self {
        let mut entries: Vec<Entry> = tokens
            .into_iter()
            .filter(|(t, _)| !t.content.is_empty())
            .map(|(token, id)| Entry { token, id })
            .collect();
        entries.sort_by(|a, b| {
            b.token
                .content
                .len()
                .cmp(&a.token.content.len())
                .then_with(|| a.token.content.cmp(&b.token.content))
        });
        entries.dedup_by(|a, b| a.token.content == b.token.content);
        let mut first_bytes = [false; 256];
        for e in &entries {
            first_bytes[e.token.content.as_bytes()[0] as usize] = true;
        }
        // Lowercasing can only create a match for a token that is its own lowercase, or hide one
        // that is not protected; without such tokens the raw text gives the same split.
        let lower_view = lower
            && entries.iter().any(|e| {
                e.token.content.to_lowercase() == e.token.content
                    || !(e.token.special || e.token.normalized)
            });
        let flags = entries
            .iter()
            .any(|e| e.token.lstrip || e.token.rstrip || e.token.single_word);
        Self {
            entries,
            first_bytes,
            lower_view,
            flags,
        }
    }

    /// The leftmost added token at or after byte `from` of `text`: (start, end, entry index).
    fn find(&self, text: &str, from: usize) -> Option<(usize, usize, usize)> {
        let bytes = text.as_bytes();
        let mut i = from;
        while i < bytes.len() {
            if self.first_bytes[bytes[i] as usize] {
                for (k, e) in self.entries.iter().enumerate() {
                    if bytes[i..].starts_with(e.token.content.as_bytes()) {
                        return Some((i, i + e.token.content.len(), k));
                    }
                }
            }
            i += 1;
        }
        None
    }

    /// Tokenizes `text` into `st.ids` (and `st.offsets` when `st.want_offsets`).
    pub(crate) fn tokenize(&self, pipeline: &Pipeline, st: &mut State, text: &str) {
        if self.lower_view || self.flags {
            return self.tokenize_general(pipeline, st, text);
        }
        let mut pos = 0;
        let mut ci = 0;
        while let Some((start, end, k)) = self.find(text, pos) {
            ci = pipeline.run(st, &text[pos..start], ci);
            let n = text[start..end].chars().count();
            st.ids.push(self.entries[k].id);
            if st.want_offsets {
                st.offsets.push((ci, ci + n));
            }
            ci += n;
            pos = end;
        }
        pipeline.run(st, &text[pos..], ci);
    }

    /// Python's lowercase pre-pass: each char lowercased, except exact occurrences of special or
    /// normalised added tokens. Returns the text and, per byte of it, the original byte offset.
    fn lowered(&self, text: &str) -> (String, Vec<usize>) {
        let mut out = String::with_capacity(text.len());
        let mut map = Vec::with_capacity(text.len() + 1);
        let mut i = 0;
        'outer: while i < text.len() {
            for e in &self.entries {
                let t = &e.token;
                if (t.special || t.normalized) && text[i..].starts_with(t.content.as_str()) {
                    out.push_str(&t.content);
                    map.extend(i..i + t.content.len());
                    i += t.content.len();
                    continue 'outer;
                }
            }
            let c = text[i..].chars().next().unwrap_or_default();
            let before = out.len();
            unicode::push_lower(c, &mut out);
            map.extend(std::iter::repeat_n(i, out.len() - before));
            i += c.len_utf8();
        }
        map.push(text.len());
        (out, map)
    }

    /// The general path: lowercase pre-pass, trie split, strip and single-word rules.
    fn tokenize_general(&self, pipeline: &Pipeline, st: &mut State, text: &str) {
        let (view, map) = if self.lower_view {
            self.lowered(text)
        } else {
            (text.to_string(), (0..=text.len()).collect())
        };
        // A match ending inside the expansion of one original char covers that whole char.
        let orig = |b: usize| -> usize {
            if b >= map.len() - 1 {
                return text.len();
            }
            let o = map[b];
            if b > 0 && map[b - 1] == o {
                text[o..].chars().next().map_or(o, |c| o + c.len_utf8())
            } else {
                o
            }
        };
        let mut pieces = Vec::new();
        let mut pos = 0;
        while let Some((start, end, k)) = self.find(&view, pos) {
            if start > pos {
                pieces.push(Piece {
                    ranges: vec![(orig(pos), orig(start))],
                    entry: None,
                });
            }
            pieces.push(Piece {
                ranges: vec![(orig(start), orig(end))],
                entry: Some(k),
            });
            pos = end;
        }
        if pos < view.len() {
            pieces.push(Piece {
                ranges: vec![(orig(pos), text.len())],
                entry: None,
            });
        }
        self.apply_flags(text, &mut pieces);
        let char_at = |b: usize| text[..b].chars().count();
        for p in pieces.iter().filter(|p| !p.is_empty()) {
            let start = char_at(p.ranges[0].0);
            match p.entry {
                Some(k) => {
                    let (s, e) = p.ranges[0];
                    st.ids.push(self.entries[k].id);
                    if st.want_offsets {
                        st.offsets.push((start, start + text[s..e].chars().count()));
                    }
                }
                None if p.ranges.len() == 1 => {
                    let (s, e) = p.ranges[0];
                    pipeline.run(st, &text[s..e], start);
                }
                None => {
                    // Glued across a stripped gap: offsets after the gap are approximate.
                    let joined: String = p.ranges.iter().map(|&(s, e)| &text[s..e]).collect();
                    pipeline.run(st, &joined, start);
                }
            }
        }
    }

    /// The `lstrip` / `rstrip` / `single_word` loop of `PreTrainedTokenizer.tokenize`.
    fn apply_flags(&self, text: &str, pieces: &mut [Piece]) {
        let piece_text =
            |p: &Piece| -> String { p.ranges.iter().map(|&(s, e)| &text[s..e]).collect() };
        for i in 0..pieces.len() {
            let Some(k) = pieces[i].entry else { continue };
            let t = &self.entries[k].token;
            // Python reads `left` / `right` once, before stripping them.
            let left = (i > 0)
                .then(|| piece_text(&pieces[i - 1]))
                .filter(|s| !s.is_empty());
            let right = (i + 1 < pieces.len())
                .then(|| piece_text(&pieces[i + 1]))
                .filter(|s| !s.is_empty());
            let (has_left, has_right) = (left.is_some(), right.is_some());
            if t.rstrip && has_right {
                let p = &mut pieces[i + 1];
                // `right.lstrip()`: drop leading whitespace range by range.
                for r in p.ranges.iter_mut() {
                    let s = &text[r.0..r.1];
                    let kept = s.trim_start_matches(is_py_space);
                    r.0 += s.len() - kept.len();
                    if !kept.is_empty() {
                        break;
                    }
                }
                // A stripped token piece is no longer the token (Python compares strings).
                if p.entry.is_some() && p.is_empty() {
                    p.entry = None;
                }
            }
            if t.lstrip && has_left {
                let p = &mut pieces[i - 1];
                for r in p.ranges.iter_mut().rev() {
                    let s = &text[r.0..r.1];
                    let kept = s.trim_end_matches(is_py_space);
                    r.1 = r.0 + kept.len();
                    if !kept.is_empty() {
                        break;
                    }
                }
            }
            if !t.single_word {
                continue;
            }
            let me = pieces[i].ranges.clone();
            if left.is_some_and(|l| !l.ends_with(' ')) {
                let l = &mut pieces[i - 1];
                l.ranges.extend(me);
                l.entry = None;
                merge_adjacent(&mut l.ranges);
                pieces[i].ranges = vec![(0, 0)];
                pieces[i].entry = None;
            } else if right.is_some_and(|r| !r.starts_with(' ')) {
                let r = &mut pieces[i + 1];
                let mut ranges = me;
                ranges.append(&mut r.ranges);
                r.ranges = ranges;
                r.entry = None;
                merge_adjacent(&mut r.ranges);
                pieces[i].ranges = vec![(0, 0)];
                pieces[i].entry = None;
            }
        }
    }
}

/// Joins touching byte ranges and drops empty ones.
fn merge_adjacent(ranges: &mut Vec<(usize, usize)>) {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter().filter(|(s, e)| s < e) {
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    if out.is_empty() {
        out.push((0, 0));
    }
    *ranges = out;
}
