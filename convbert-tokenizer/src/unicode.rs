//! Character classes of Python 3.11's BasicTokenizer (Unicode 14.0), one flag byte per character.
//!
//! The BMP is served from a 64 KiB table built once; other planes binary-search the generated
//! range tables of `unicode_tables.rs`. See `_is_control`, `_is_whitespace`, `_is_punctuation` and
//! `_is_chinese_char` in transformers/models/bert/tokenization_bert.py (v4.57.6).

use crate::unicode_tables as t;
use std::sync::OnceLock;
use unicode_normalization::{is_nfc_quick, IsNormalized};

/// Removed by text cleaning: NUL, U+FFFD and categories C* except `\t \n \r`.
pub(crate) const DELETE: u8 = 1;
/// Becomes a word boundary: Zs, `\t \n \r`, and Python `str.isspace()` characters.
pub(crate) const SPACE: u8 = 2;
/// Punctuation: ASCII 33-47, 58-64, 91-96, 123-126 or category P*.
pub(crate) const PUNCT: u8 = 4;
/// Category Mn (dropped by accent stripping).
pub(crate) const MARK: u8 = 8;
/// `chr(c).lower() != c` in Python.
pub(crate) const LOWER: u8 = 16;
/// Canonical decomposition differs from the character.
pub(crate) const DECOMPOSES: u8 = 32;
/// NFC never combines this character with what precedes it (ccc 0 and NFC_QC=Yes).
pub(crate) const NFC_START: u8 = 64;
/// A CJK ideograph that the slow tokenizer surrounds with spaces.
pub(crate) const CJK: u8 = 128;

fn in_ranges(table: &[(u32, u32)], cp: u32) -> bool {
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Python's `_is_chinese_char` ranges (the slow tokenizer's list, with U+2B820..U+2CEAF).
pub(crate) fn is_cjk(cp: u32) -> bool {
    matches!(cp, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn compute_flags(c: char) -> u8 {
    let cp = c as u32;
    let mut f = 0;
    let control = in_ranges(t::CONTROL, cp) && !matches!(c, '\t' | '\n' | '\r');
    if cp == 0 || cp == 0xFFFD || control {
        f |= DELETE;
    }
    if matches!(c, ' ' | '\t' | '\n' | '\r')
        || in_ranges(t::SPACE_SEPARATOR, cp)
        || in_ranges(t::PY_WHITESPACE, cp)
    {
        f |= SPACE;
    }
    if matches!(cp, 33..=47 | 58..=64 | 91..=96 | 123..=126) || in_ranges(t::PUNCTUATION, cp) {
        f |= PUNCT;
    }
    if in_ranges(t::NONSPACING_MARK, cp) {
        f |= MARK;
    }
    if lower_entry(cp).is_some() {
        f |= LOWER;
    }
    let mut decomposes = false;
    unicode_normalization::char::decompose_canonical(c, |d| decomposes |= d != c);
    if decomposes {
        f |= DECOMPOSES;
    }
    if unicode_normalization::char::canonical_combining_class(c) == 0
        && is_nfc_quick(std::iter::once(c)) == IsNormalized::Yes
    {
        f |= NFC_START;
    }
    if is_cjk(cp) {
        f |= CJK;
    }
    f
}

/// The flags of the Basic Multilingual Plane, computed a 256-code-point page at a time when a
/// text first reaches it: a process that tokenizes one line pays for a page or two, not 64 K.
fn bmp_page(page: usize) -> &'static [u8; 256] {
    static PAGES: [OnceLock<Box<[u8; 256]>>; 256] = [const { OnceLock::new() }; 256];
    PAGES[page].get_or_init(|| {
        let mut flags = Box::new([0u8; 256]);
        for (i, f) in flags.iter_mut().enumerate() {
            let cp = ((page << 8) | i) as u32;
            *f = char::from_u32(cp).map_or(DELETE, compute_flags);
        }
        flags
    })
}

/// The flag byte of `c`.
#[inline]
pub(crate) fn flags(c: char) -> u8 {
    let cp = c as usize;
    if cp < 0x10000 {
        bmp_page(cp >> 8)[cp & 0xFF]
    } else {
        compute_flags(c)
    }
}

enum Lower {
    One(u32),
    Many(&'static str),
}

fn lower_entry(cp: u32) -> Option<Lower> {
    if let Ok(i) = t::LOWER_SINGLE.binary_search_by_key(&cp, |&(k, _)| k) {
        return Some(Lower::One(t::LOWER_SINGLE[i].1));
    }
    t::LOWER_MULTI
        .binary_search_by_key(&cp, |&(k, _)| k)
        .ok()
        .map(|i| Lower::Many(t::LOWER_MULTI[i].1))
}

/// Python's `s.lower()`, char by char (without the final-sigma context rule).
pub(crate) fn py_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_lower(c, &mut out);
    }
    out
}

/// Appends Python's `chr(c).lower()` to `out`.
#[inline]
pub(crate) fn push_lower(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    match lower_entry(c as u32) {
        Some(Lower::One(l)) => out.push(char::from_u32(l).unwrap_or(c)),
        Some(Lower::Many(s)) => out.push_str(s),
        None => out.push(c),
    }
}

/// Python's `chr(c).lower()` when it is a single character.
#[inline]
pub(crate) fn lower_single(c: char) -> Option<char> {
    match lower_entry(c as u32) {
        Some(Lower::One(l)) => char::from_u32(l),
        Some(Lower::Many(_)) => None,
        None => Some(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_python() {
        assert_eq!(flags('\u{200B}') & DELETE, DELETE); // Cf
        assert_eq!(flags('\u{00A0}') & SPACE, SPACE); // Zs
        assert_eq!(flags('\u{2028}') & (SPACE | DELETE), SPACE); // Zl: kept, split by str.split()
        assert_eq!(flags('$') & PUNCT, PUNCT); // ASCII symbol counts as punctuation
        assert_eq!(flags('\u{0301}') & MARK, MARK);
        assert_eq!(flags('\u{0378}') & DELETE, DELETE); // unassigned in Unicode 14
        assert_eq!(flags('\u{4E2D}') & CJK, CJK);
        assert_eq!(flags('\u{F900}') & (CJK | NFC_START), CJK); // singleton decomposition
        let mut s = String::new();
        push_lower('\u{130}', &mut s);
        push_lower('Σ', &mut s);
        assert_eq!(s, "i\u{307}σ");
    }
}
