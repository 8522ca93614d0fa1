//! Normalisation of one NFC-safe segment, in Python's order: per-character `lower()` (done by
//! `PreTrainedTokenizer.tokenize` before anything else), NFC, the BasicTokenizer's `lower()`, then
//! accent stripping (NFD, drop Mn). Python's final-sigma rule never applies here: the first
//! per-character pass already turned every `Σ` into `σ`.

use crate::basic::{Pipeline, State};
use crate::unicode::{self, DECOMPOSES, LOWER, MARK, NFC_START};
use unicode_normalization::UnicodeNormalization;

impl Pipeline {
    /// Normalises the pending segment and feeds its characters to the word builder.
    pub(crate) fn flush_segment(&self, st: &mut State) {
        if st.seg.is_empty() {
            return;
        }
        let seg = std::mem::take(&mut st.seg);
        let range = st.seg_range;
        let mut chars = seg.chars();
        let single = match (chars.next(), chars.next()) {
            (Some(c), None) => self.single_char(st, c, range),
            _ => false,
        };
        if !single {
            self.full_segment(st, &seg, range);
        }
        st.seg = seg;
        st.seg.clear();
    }

    /// Fast path for a lone character; false when it needs the general path.
    #[inline]
    fn single_char(&self, st: &mut State, c: char, range: (usize, usize)) -> bool {
        let mut f = unicode::flags(c);
        let mut c1 = c;
        if self.lower && f & LOWER != 0 {
            match unicode::lower_single(c) {
                Some(l) => {
                    c1 = l;
                    f = unicode::flags(l);
                }
                None => return false,
            }
        }
        if f & NFC_START == 0 {
            return false;
        }
        if let Some(chunk) = st.chunk.as_mut() {
            chunk.0.push(c1);
            chunk.2 = range.1;
        }
        if !self.strip {
            self.emit(st, c1, range);
        } else if f & DECOMPOSES != 0 {
            let mut parts = ['\0'; 8];
            let mut n = 0;
            unicode_normalization::char::decompose_canonical(c1, |d| {
                if n < parts.len() {
                    parts[n] = d;
                    n += 1;
                }
            });
            for &d in &parts[..n] {
                if unicode::flags(d) & MARK == 0 {
                    self.emit(st, d, range);
                }
            }
        } else if f & MARK == 0 {
            self.emit(st, c1, range);
        }
        true
    }

    fn full_segment(&self, st: &mut State, seg: &str, range: (usize, usize)) {
        let mut a = std::mem::take(&mut st.buf_a);
        let mut b = std::mem::take(&mut st.buf_b);
        a.clear();
        b.clear();
        for c in seg.chars() {
            if self.lower {
                unicode::push_lower(c, &mut a);
            } else {
                a.push(c);
            }
        }
        b.extend(a.nfc());
        if let Some(chunk) = st.chunk.as_mut() {
            chunk.0.push_str(&b);
            chunk.2 = range.1;
        }
        a.clear();
        for c in b.chars() {
            if self.lower {
                unicode::push_lower(c, &mut a);
            } else {
                a.push(c);
            }
        }
        b.clear();
        if self.strip {
            b.extend(a.nfd().filter(|&c| unicode::flags(c) & MARK == 0));
        } else {
            b.push_str(&a);
        }
        if st.want_offsets && self.per_char_alignment(st, seg, &b) {
            let per_char = std::mem::take(&mut st.per_char);
            for &(c, k) in &per_char {
                let pos = st.seg_pos.get(k).copied().unwrap_or(range.0);
                self.emit(st, c, (pos, pos + 1));
            }
            st.per_char = per_char;
        } else {
            for c in b.chars() {
                self.emit(st, c, range);
            }
        }
        st.buf_a = a;
        st.buf_b = b;
    }

    /// Offsets only: normalises `seg` char by char (as the fast tokenizer aligns); true when that
    /// gives the same characters as the exact result, so each char can keep its own source char.
    fn per_char_alignment(&self, st: &mut State, seg: &str, exact: &str) -> bool {
        st.per_char.clear();
        let mut tmp = String::new();
        for (k, c) in seg.chars().enumerate() {
            tmp.clear();
            if self.lower {
                unicode::push_lower(c, &mut tmp);
            } else {
                tmp.push(c);
            }
            let normalized: String = tmp.nfc().collect();
            for d in normalized.chars() {
                if self.strip {
                    let mut parts = String::new();
                    parts.extend(std::iter::once(d).nfd());
                    st.per_char.extend(
                        parts
                            .chars()
                            .filter(|&p| unicode::flags(p) & MARK == 0)
                            .map(|p| (p, k)),
                    );
                } else {
                    st.per_char.push((d, k));
                }
            }
        }
        st.per_char.iter().map(|p| p.0).eq(exact.chars())
    }
}
