//! Property tests: no panics, offset invariants, standalone == fast on text outside the documented
//! differences (SPEC.md §5.4), and save -> load identities.
mod common;

use convbert_tokenizer::{
    ConvBertTokenizer, ConvBertTokenizerFast, EncodeOptions, PaddingStrategy, Side,
    TokenizerConfig, TruncationStrategy, Vocab,
};
use proptest::prelude::*;
use std::sync::OnceLock;

fn uncased() -> &'static (ConvBertTokenizer, ConvBertTokenizerFast) {
    static T: OnceLock<(ConvBertTokenizer, ConvBertTokenizerFast)> = OnceLock::new();
    T.get_or_init(|| common::tokenizers("uncased"))
}

fn cased() -> &'static (ConvBertTokenizer, ConvBertTokenizerFast) {
    static T: OnceLock<(ConvBertTokenizer, ConvBertTokenizerFast)> = OnceLock::new();
    T.get_or_init(|| common::tokenizers("cased"))
}

/// Assigned characters both references classify alike: scripts stable since Unicode 6, no NFC
/// singletons, no U+2B820 block, no code point unassigned in Unicode 14 (SPEC.md §5.4).
fn stable_char(with_marks: bool) -> impl Strategy<Value = char> {
    let mut ranges = vec![
        (0x20u32, 0x7E),
        (0x20, 0x7E),
        (0x20, 0x7E),
        (0xA0, 0x17F),
        (0x391, 0x3A1),
        (0x3A3, 0x3CE),
        (0x400, 0x45F),
        (0x621, 0x64A),
        (0x3041, 0x3096),
        (0x4E00, 0x4E80),
        (0xAC00, 0xAC80),
        (0x2010, 0x2027),
        (0x1F600, 0x1F64F),
    ];
    if with_marks {
        ranges.push((0x300, 0x36F));
    }
    prop::sample::select(ranges)
        .prop_flat_map(|(lo, hi)| (lo..=hi).prop_map(|cp| char::from_u32(cp).unwrap_or(' ')))
}

fn stable_text(with_marks: bool) -> impl Strategy<Value = String> {
    prop::collection::vec(stable_char(with_marks), 0..80).prop_map(|v| v.into_iter().collect())
}

fn options() -> impl Strategy<Value = EncodeOptions> {
    (
        any::<bool>(),
        0..4u8,
        prop::option::of(0..40usize),
        0..6usize,
        0..3u8,
        prop::option::of(1..9usize),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(special, t, max_length, stride, p, multiple, left, overflow, offsets)| {
                EncodeOptions {
                    add_special_tokens: special,
                    truncation: [
                        TruncationStrategy::DoNotTruncate,
                        TruncationStrategy::LongestFirst,
                        TruncationStrategy::OnlyFirst,
                        TruncationStrategy::OnlySecond,
                    ][t as usize],
                    max_length,
                    stride,
                    padding: [
                        PaddingStrategy::DoNotPad,
                        PaddingStrategy::Longest,
                        PaddingStrategy::MaxLength,
                    ][p as usize],
                    pad_to_multiple_of: multiple,
                    padding_side: if left { Side::Left } else { Side::Right },
                    truncation_side: if left { Side::Right } else { Side::Left },
                    return_offsets: offsets,
                    return_overflowing_tokens: overflow,
                }
            },
        )
}

fn check_offsets(text: &str, offsets: &[(usize, usize)]) -> Result<(), TestCaseError> {
    let n = text.chars().count();
    let mut last = 0;
    for &(s, e) in offsets.iter().filter(|o| **o != (0, 0)) {
        prop_assert!(s <= e && e <= n, "offset ({s}, {e}) out of 0..{n}");
        prop_assert!(s >= last, "offsets decrease: {s} after {last}");
        last = s;
        // Character offsets convert to byte offsets on char boundaries.
        let byte = text
            .char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(text.len()))
            .nth(e);
        prop_assert!(byte.is_some_and(|b| text.is_char_boundary(b)));
    }
    Ok(())
}

/// Every call on `text` (and the pair) returns without panicking; token offsets are in bounds, on
/// character boundaries and non-decreasing.
fn never_panics(text: &str, pair: &str, opts: &EncodeOptions) -> Result<(), TestCaseError> {
    let (slow, fast) = uncased();
    for enc in [slow.encode(text, opts), slow.encode_pair(text, pair, opts)]
        .into_iter()
        .flatten()
    {
        prop_assert_eq!(enc.ids.len(), enc.attention_mask.len());
    }
    for enc in [fast.encode(text, opts), fast.encode_pair(text, pair, opts)]
        .into_iter()
        .flatten()
    {
        prop_assert_eq!(enc.ids.len(), enc.attention_mask.len());
    }
    let (ids, offs) = slow.tokenize_with_offsets(text);
    prop_assert_eq!(ids.len(), offs.len());
    check_offsets(text, &offs)?;
    let (fids, foffs) = fast
        .tokenize_with_offsets(text)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(fids.len(), foffs.len());
    check_offsets(text, &foffs)?;
    let _ = slow.decode(
        &ids,
        &convbert_tokenizer::DecodeOptions {
            skip_special_tokens: true,
            clean_up_tokenization_spaces: Some(true),
        },
    );
    let _ = fast.decode(
        &fids,
        &convbert_tokenizer::DecodeOptions {
            skip_special_tokens: true,
            clean_up_tokenization_spaces: Some(true),
        },
    );
    Ok(())
}

/// Arbitrary bytes as a reader of untrusted input sees them: lossy UTF-8 (U+FFFD for bad bytes).
fn lossy_bytes(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..max)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Text of any Unicode scalar values, with whitespace and punctuation dense enough to make words.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<char>(),
            prop::sample::select(vec![' ', '.', '\u{301}', '\u{200b}', 'a'])
        ],
        0..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_offsets_hold(text in any::<String>(), pair in any::<String>(), opts in options()) {
        never_panics(&text, &pair, &opts)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in lossy_bytes(200), pair in lossy_bytes(200), opts in options()) {
        never_panics(&text, &pair, &opts)?;
    }

    #[test]
    fn standalone_equals_fast_uncased(text in stable_text(true)) {
        let (slow, fast) = uncased();
        let (ids, offs) = slow.tokenize_with_offsets(&text);
        let (fids, foffs) = fast.tokenize_with_offsets(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&ids, &fids, "{:?}", text);
        prop_assert_eq!(offs, foffs, "{:?}", text);
    }

    #[test]
    fn standalone_equals_fast_cased_without_combining_marks(text in stable_text(false)) {
        // Cased keeps accents, so only NFC-stable input is comparable (SPEC.md §5.4 item 1).
        let (slow, fast) = cased();
        let fids = fast.tokenize_ids(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(slow.tokenize_ids(&text).map_err(|e| TestCaseError::fail(e.to_string()))?, fids, "{:?}", text);
    }

    #[test]
    fn batch_equals_sequential(texts in prop::collection::vec(stable_text(true), 0..12)) {
        let (slow, _) = uncased();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let opts = EncodeOptions { padding: PaddingStrategy::Longest, ..EncodeOptions::default() };
        let batch = slow.encode_batch(&refs, None, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (t, e) in refs.iter().zip(&batch) {
            let single = slow.encode(t, &EncodeOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&e.ids[..single.ids.len()], &single.ids[..]);
        }
    }

    #[test]
    fn vocab_and_tokenizer_json_round_trip(tokens in prop::collection::btree_set("[a-z#]{1,6}|[^\r\n]{1,4}", 0..40)) {
        let mut lines: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
        let extra: Vec<String> = tokens.into_iter().filter(|t| !lines.contains(t)).collect();
        lines.extend(extra);
        let vocab = Vocab::from_bytes(format!("{}\n", lines.join("\n")).as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let dir = std::env::temp_dir().join(format!("convbert-prop-{}-{}", std::process::id(), lines.len()));
        std::fs::create_dir_all(&dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (path, holes) = vocab.save(&dir, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!holes);
        prop_assert_eq!(&Vocab::from_file(&path).map_err(|e| TestCaseError::fail(e.to_string()))?, &vocab);
        let tok = ConvBertTokenizer::new(vocab.clone(), TokenizerConfig::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let json = dir.join("tokenizer.json");
        tok.save_tokenizer_json(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = ConvBertTokenizer::from_tokenizer_json(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.vocab(), &vocab);
        prop_assert_eq!(back.config(), tok.config());
        let fast = ConvBertTokenizerFast::from_tokenizer_json(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = fast.to_json_string().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, std::fs::read_to_string(&json).map_err(|e| TestCaseError::fail(e.to_string()))?);
        std::fs::remove_dir_all(&dir).ok();
    }
}

proptest! {
    // The long run: `cargo test --release -p convbert-tokenizer --test properties -- --ignored`.
    #![proptest_config(ProptestConfig { cases: 50_000, ..ProptestConfig::default() })]

    #[test]
    #[ignore = "long fuzzing run (minutes); run with --ignored"]
    fn fuzz_long_never_panics(
        text in prop_oneof![any_text(400), lossy_bytes(400)],
        pair in prop_oneof![any_text(400), lossy_bytes(400)],
        opts in options(),
    ) {
        never_panics(&text, &pair, &opts)?;
    }
}
