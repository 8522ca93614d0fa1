//! The shared trait: one generic function runs on the slow and the fast tokenizer and gives the
//! same answers; `from_pretrained` errors name the file.

mod common;

use common::fixtures;
use convbert_tokenizer::{
    ConvBertTokenizer, ConvBertTokenizerFast, DecodeOptions, EncodeOptions,
    PreTrainedTokenizerBase, SpecialTokens, TokenizerConfig, TokenizerError,
};

/// Everything observable through the trait on a few texts, as one comparable value.
fn summary<T: PreTrainedTokenizerBase>(tok: &mut T) -> Vec<String> {
    let mut out = vec![format!("{} {}", tok.vocab_size(), tok.len())];
    let texts = [
        "Hello, world! unaffable",
        "The lazy dog",
        "newword [MASK] <ent>.",
    ];
    let opts = EncodeOptions::default();
    for round in 0..2 {
        for text in texts {
            let enc = tok.encode(text, &opts).expect("encode");
            out.push(format!("{:?}", enc.ids));
            out.push(format!("{:?}", tok.tokenize(text).expect("tokenize")));
            out.push(format!("{:?}", tok.tokenize_ids(text).expect("ids")));
            out.push(
                tok.decode(&enc.ids, &DecodeOptions::default())
                    .expect("decode"),
            );
            out.push(
                tok.decode(&enc.ids, &DecodeOptions::skip_special_tokens())
                    .expect("decode"),
            );
            out.push(format!(
                "{:?}",
                tok.convert_ids_to_tokens(&enc.ids, SpecialTokens::Skip)
            ));
            out.push(format!(
                "{:?}",
                tok.get_special_tokens_mask(&enc.ids, None, true)
                    .expect("mask")
            ));
        }
        let pair = tok.encode_pair("hello", "world", &opts).expect("pair");
        let batch = tok.encode_batch(&["a", "b c"], None, &opts).expect("batch");
        out.push(format!(
            "{:?} {:?} {}",
            pair.ids,
            pair.type_ids,
            batch.len()
        ));
        out.push(format!(
            "{:?} {:?} {:?}",
            tok.build_inputs_with_special_tokens(&[7], Some(&[8])),
            tok.create_token_type_ids_from_sequences(&[7], Some(&[8])),
            tok.convert_tokens_to_ids(&["hello", "nope", "[CLS]"]),
        ));
        if round == 0 {
            out.push(format!("{}", tok.add_tokens(["newword"])));
            out.push(format!("{}", tok.add_special_tokens(["<ent>"])));
            out.push(format!("{} {}", tok.vocab_size(), tok.len()));
        }
    }
    out
}

#[test]
fn generic_code_runs_on_both_and_agrees() {
    let vocab = fixtures().join("tokenizer/small-vocab.txt");
    let mut slow =
        ConvBertTokenizer::from_vocab_file(&vocab, TokenizerConfig::default()).expect("slow");
    let mut fast =
        ConvBertTokenizerFast::from_vocab_file(&vocab, TokenizerConfig::default()).expect("fast");
    let (s, f) = (summary(&mut slow), summary(&mut fast));
    // Known difference (SPEC.md §5.4 item 6): the fast decoder always cleans up " ." and " ,".
    for (a, b) in s.iter().zip(&f) {
        assert_eq!(
            a.replace(" .", ".").replace(" ,", ","),
            b.replace(" .", ".").replace(" ,", ",")
        );
    }
    assert_eq!(s.len(), f.len());
}

#[test]
fn decode_options_default_follows_the_config() {
    let vocab = fixtures().join("tokenizer/small-vocab.txt");
    let config = TokenizerConfig {
        clean_up_tokenization_spaces: false,
        ..TokenizerConfig::default()
    };
    let slow = ConvBertTokenizer::from_vocab_file(&vocab, config).expect("slow");
    let ids = slow.tokenize_ids("hello , world").expect("ids");
    assert_eq!(
        slow.decode(&ids, &DecodeOptions::default())
            .expect("decode"),
        "hello , world"
    );
    let clean = DecodeOptions {
        clean_up_tokenization_spaces: Some(true),
        ..DecodeOptions::default()
    };
    assert_eq!(slow.decode(&ids, &clean).expect("decode"), "hello, world");
}

#[test]
fn from_pretrained_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("convbert-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    match ConvBertTokenizer::from_pretrained(&dir) {
        Err(TokenizerError::MissingVocab(p)) => assert_eq!(p, dir),
        other => panic!("expected MissingVocab, got {other:?}"),
    }
    assert!(matches!(
        ConvBertTokenizerFast::from_pretrained(&dir),
        Err(TokenizerError::MissingVocab(_))
    ));
    std::fs::copy(
        fixtures().join("tokenizer/small-vocab.txt"),
        dir.join("vocab.txt"),
    )
    .expect("copy");
    std::fs::write(dir.join("tokenizer_config.json"), "{\"do_lower_case\": tru").expect("write");
    for err in [
        ConvBertTokenizer::from_pretrained(&dir).err(),
        ConvBertTokenizerFast::from_pretrained(&dir).err(),
    ] {
        match err {
            Some(TokenizerError::File { path, .. }) => {
                assert!(path.ends_with("tokenizer_config.json"))
            }
            other => panic!("expected a File error, got {other:?}"),
        }
    }
    std::fs::write(
        dir.join("tokenizer_config.json"),
        "{\"do_lower_case\": \"yes\"}",
    )
    .expect("write");
    let err = ConvBertTokenizer::from_pretrained(&dir).expect_err("bad type");
    assert!(err.to_string().contains("do_lower_case"), "{err}");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        "{\"do_lower_case\": false, \"model_max_length\": 16}",
    )
    .expect("write");
    let tok = ConvBertTokenizer::from_pretrained(&dir).expect("load");
    assert!(!tok.config().do_lower_case);
    assert_eq!(tok.config().model_max_length, Some(16));
    std::fs::remove_dir_all(&dir).ok();
}

/// Other layouts `from_pretrained` reads: `tokenizer.json` alone (slow takes its vocabulary,
/// normaliser and added tokens), a legacy `added_tokens.json` without `added_tokens_decoder`, and
/// tokenizer_config.json options winning over `tokenizer.json` in the fast tokenizer (as HF's
/// `__init__` rebuilds the normaliser).
#[test]
fn from_pretrained_other_layouts() {
    let hf = fixtures().join("tokenizer/added/fast-uncased-basic");
    let dir = std::env::temp_dir().join(format!("convbert-api-layouts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::copy(hf.join("tokenizer.json"), dir.join("tokenizer.json")).expect("copy");
    let text = "Hello newword <ent> hello world";
    let slow = ConvBertTokenizer::from_pretrained(&dir).expect("slow from tokenizer.json");
    let fast = ConvBertTokenizerFast::from_pretrained(&dir).expect("fast");
    // [CLS] hello newword <ent> hello world [SEP]
    let want = [2, 16, 75, 78, 77, 3];
    assert_eq!(
        slow.encode(text, &EncodeOptions::default())
            .expect("encode")
            .ids,
        want
    );
    assert_eq!(
        fast.encode(text, &EncodeOptions::default())
            .expect("encode")
            .ids,
        want
    );
    assert_eq!((slow.len(), fast.len()), (79, 79));

    // vocab.txt + added_tokens.json + special_tokens_map.json (no tokenizer_config.json).
    std::fs::remove_file(dir.join("tokenizer.json")).expect("rm");
    for f in ["vocab.txt", "added_tokens.json", "special_tokens_map.json"] {
        std::fs::copy(hf.join(f), dir.join(f)).expect("copy");
    }
    let slow = ConvBertTokenizer::from_pretrained(&dir).expect("slow legacy");
    let fast = ConvBertTokenizerFast::from_pretrained(&dir).expect("fast legacy");
    for ids in [
        slow.encode(text, &EncodeOptions::default())
            .expect("encode")
            .ids,
        fast.encode(text, &EncodeOptions::default())
            .expect("encode")
            .ids,
    ] {
        assert_eq!(ids, want);
    }
    assert_eq!(
        slow.decode(&want, &DecodeOptions::skip_special_tokens())
            .expect("decode"),
        "hello newword hello world"
    );

    // A cased tokenizer_config.json over an uncased tokenizer.json: the config wins.
    std::fs::copy(hf.join("tokenizer.json"), dir.join("tokenizer.json")).expect("copy");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        "{\"do_lower_case\": false}",
    )
    .expect("write");
    let fast = ConvBertTokenizerFast::from_pretrained(&dir).expect("fast cased");
    assert_eq!(
        fast.tokenize("Hello hello").expect("tokenize"),
        ["Hello", "hello"]
    );
    std::fs::remove_dir_all(&dir).ok();
}
