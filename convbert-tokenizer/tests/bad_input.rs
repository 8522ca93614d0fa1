//! Hostile input: every case gets a typed error or the HF-equal result, never a panic.
mod common;

use convbert_tokenizer::{
    ConvBertTokenizer, ConvBertTokenizerFast, EncodeOptions, Side, TokenizerConfig, TokenizerError,
    TruncationStrategy, Vocab,
};
use std::time::Instant;

#[test]
fn invalid_utf8_vocab_is_typed() {
    assert!(matches!(
        Vocab::from_bytes(b"[UNK]\n\xc3\x28\n"),
        Err(TokenizerError::InvalidUtf8(6))
    ));
}

#[test]
fn vocab_without_unk_is_typed() {
    let vocab = Vocab::from_bytes(b"[PAD]\n[CLS]\n[SEP]\n[MASK]\na\n").expect("vocab");
    let err = ConvBertTokenizer::new(vocab.clone(), TokenizerConfig::default());
    assert!(matches!(err, Err(TokenizerError::MissingToken(t)) if t == "[UNK]"));
    assert!(matches!(
        ConvBertTokenizerFast::new(vocab, TokenizerConfig::default()),
        Err(TokenizerError::MissingToken(_))
    ));
}

#[test]
fn missing_file_is_typed() {
    assert!(matches!(
        Vocab::from_file("/nonexistent/vocab.txt"),
        Err(TokenizerError::Io { .. })
    ));
}

#[test]
fn malformed_tokenizer_json_is_typed() {
    let dir = std::env::temp_dir().join(format!("convbert-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cases = [
        "{",
        "[]",
        r#"{"model": {"type": "BPE", "vocab": {}}}"#,
        r#"{"model": {"type": "WordPiece", "vocab": {"a": -1}}}"#,
        r#"{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}}, "normalizer": {"type": "NFC"}}"#,
        r#"{"model": {"type": "WordPiece", "vocab": {"a": 0}}, "normalizer": {"type": "BertNormalizer"}}"#,
    ];
    for (i, case) in cases.iter().enumerate() {
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, case).expect("write");
        assert!(
            ConvBertTokenizer::from_tokenizer_json(&path).is_err(),
            "{case}"
        );
        assert!(
            ConvBertTokenizerFast::from_tokenizer_json(&path).is_err(),
            "{case}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn empty_and_whitespace_texts() {
    let (slow, fast) = common::tokenizers("uncased");
    for text in [
        "",
        " ",
        "\t\n\r ",
        "\u{3000}\u{a0}\u{2028}",
        "\u{200b}\u{0}\u{fffd}",
    ] {
        assert!(slow.tokenize_ids(text).expect("slow").is_empty());
        assert!(fast.tokenize_ids(text).expect("fast").is_empty());
        let enc = slow
            .encode(text, &EncodeOptions::default())
            .expect("encode");
        assert_eq!(enc.ids, [101, 102]);
    }
}

#[test]
fn ten_megabyte_line_is_linear() {
    let slow = ConvBertTokenizer::bert_base_uncased().expect("tokenizer");
    let unit = "The quick brown fox, naïve café 中文 Привет! ";
    let small: String = unit.repeat(1_000_000 / unit.len());
    let big: String = unit.repeat(10_000_000 / unit.len());
    let t0 = Instant::now();
    let n_small = slow.tokenize_ids(&small).expect("slow").len();
    let t_small = t0.elapsed();
    let t1 = Instant::now();
    let n_big = slow.tokenize_ids(&big).expect("slow").len();
    let t_big = t1.elapsed();
    assert!(n_big >= 9 * n_small);
    // Generous bound: quadratic behaviour would be ~100x, linear is ~10x.
    assert!(
        t_big < t_small * 40 + std::time::Duration::from_millis(200),
        "{t_small:?} vs {t_big:?}"
    );
    // One 10 MB word: a single [UNK] (longer than max_input_chars_per_word).
    let word = "a".repeat(10_000_000);
    assert_eq!(slow.tokenize_ids(&word).expect("slow"), [100]);
    assert_eq!(
        common::tokenizers("small")
            .1
            .tokenize_ids(&word[..200_000])
            .expect("fast"),
        [1]
    );
}

/// 800 words of plain English, about 1000 tokens.
fn long_text(seed: usize) -> String {
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while", "river", "banks",
        "flood",
    ];
    (0..800)
        .map(|i| words[(i * 7 + seed) % words.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn long_pair_truncation_is_bounded_and_fast_equals_slow() {
    let (slow, fast) = common::tokenizers("uncased");
    let (a, b) = (long_text(0), long_text(5));
    let t0 = Instant::now();
    // Even budgets (max_length - 3): on an odd one Python's slow and fast tokenizers differ by
    // one token between the sides (slow gives the tie's extra token to the first text).
    for max_length in [5, 9, 17, 129] {
        for truncation in [
            TruncationStrategy::LongestFirst,
            TruncationStrategy::OnlyFirst,
            TruncationStrategy::OnlySecond,
        ] {
            for side in [Side::Right, Side::Left] {
                let opts = EncodeOptions {
                    truncation,
                    max_length: Some(max_length),
                    truncation_side: side,
                    ..EncodeOptions::default()
                };
                let case = format!("{max_length} {truncation:?} {side:?}");
                // Where one side alone cannot absorb the cut, Python's fast tokenizer errors and
                // its slow one logs and keeps everything: only longest_first always compares.
                let f = match fast.encode_pair(&a, &b, &opts) {
                    Ok(f) => f,
                    Err(_) if truncation != TruncationStrategy::LongestFirst => continue,
                    Err(e) => panic!("{case}: {e}"),
                };
                let s = slow.encode_pair(&a, &b, &opts).expect("slow");
                assert_eq!(s.ids.len(), max_length, "{case}");
                assert_eq!(s.ids, f.ids, "{case}");
                assert_eq!(s.type_ids, f.type_ids, "{case}");
                assert!(f.overflowing.is_empty(), "{case}: overflow not asked for");
            }
        }
    }
    // The backend's pair merge would build ~250,000 windows of 5 tokens per call here.
    assert!(t0.elapsed().as_secs() < 10, "{:?}", t0.elapsed());
}

#[test]
fn long_pair_overflow_windows_are_refused_not_quadratic() {
    let (slow, fast) = common::tokenizers("uncased");
    let (a, b) = (long_text(0), long_text(5));
    let mut opts = EncodeOptions {
        truncation: TruncationStrategy::LongestFirst,
        max_length: Some(8),
        return_overflowing_tokens: true,
        ..EncodeOptions::default()
    };
    // Python's slow tokenizer refuses overflow of a pair truncated longest_first; the fast one
    // would return every window of one side with every window of the other.
    assert!(matches!(
        slow.encode_pair(&a, &b, &opts),
        Err(TokenizerError::Options(_))
    ));
    let t0 = Instant::now();
    assert!(matches!(
        fast.encode_pair(&a, &b, &opts),
        Err(TokenizerError::Options(m)) if m.contains("only_first or only_second")
    ));
    assert!(t0.elapsed().as_secs() < 5, "{:?}", t0.elapsed());
    // One side's windows stay linear: every window of the second text with the whole first one.
    opts.truncation = TruncationStrategy::OnlySecond;
    opts.max_length = Some(1100);
    let f = fast.encode_pair(&a, &b, &opts).expect("fast");
    assert!(!f.overflowing.is_empty() && f.overflowing.len() < 100);
}
