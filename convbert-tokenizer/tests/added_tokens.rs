//! User-added tokens, `from_pretrained` and `save_pretrained` against Python's slow and fast
//! tokenizers (fixtures/tokenizer/added/, written by fixtures/gen_tokenizer.py `added_rows`):
//! each of our tokenizers is checked against its Python counterpart (slow vs slow, fast vs fast).

mod common;

use common::fixtures;
use convbert_tokenizer::{
    AddedToken, ConvBertTokenizer, ConvBertTokenizerFast, DecodeOptions, EncodeOptions,
    PreTrainedTokenizerBase, SpecialTokens, TokenizerConfig,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn cases() -> Vec<Value> {
    common::read_jsonl("added/cases.jsonl")
}

fn added_dir(name: &str) -> PathBuf {
    fixtures().join("tokenizer/added").join(name)
}

/// A fresh directory per call (tests run in parallel in one process).
fn temp_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("convbert-added-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The tokenizer of `row`, built from the small vocabulary and given the row's added tokens;
/// returns it and the counts `add_tokens` / `add_special_tokens` reported.
fn build<T: PreTrainedTokenizerBase>(
    row: &Value,
    new: impl Fn(TokenizerConfig) -> T,
) -> (T, usize, usize) {
    let config = TokenizerConfig {
        do_lower_case: row["config"]["do_lower_case"].as_bool().unwrap_or(true),
        ..TokenizerConfig::default()
    };
    let mut tok = new(config);
    let mut n_added = tok.add_tokens(["newword", "ConvBERT", "hello world"]);
    let n_special = tok.add_special_tokens(["<ent>"]);
    if row["name"].as_str().expect("name").ends_with("flags") {
        n_added += tok.add_tokens([
            AddedToken::new("<x>").lstrip(true).rstrip(true),
            AddedToken::new("mid").single_word(true),
            AddedToken::new("Keep").normalized(false),
            AddedToken::from("hello"),
        ]);
    }
    (tok, n_added, n_special)
}

fn small_vocab() -> PathBuf {
    fixtures().join("tokenizer/small-vocab.txt")
}

fn slow(config: TokenizerConfig) -> ConvBertTokenizer {
    ConvBertTokenizer::from_vocab_file(small_vocab(), config).expect("slow")
}

fn fast(config: TokenizerConfig) -> ConvBertTokenizerFast {
    ConvBertTokenizerFast::from_vocab_file(small_vocab(), config).expect("fast")
}

fn u32s(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).expect("ids")
}

/// Everything a row records, except what `add_tokens` returned.
fn check_row<T: PreTrainedTokenizerBase>(tok: &T, row: &Value, what: &str) {
    let name = format!("{what} {}", row["name"]);
    assert_eq!(json!(tok.len()), row["len"], "{name}: len");
    assert_eq!(
        json!(tok.vocab_size()),
        row["vocab_size"],
        "{name}: vocab_size"
    );
    let offsets = EncodeOptions {
        return_offsets: true,
        ..EncodeOptions::default()
    };
    for t in row["texts"].as_array().expect("texts") {
        let text = t["text"].as_str().expect("text");
        assert_eq!(
            json!(tok.tokenize(text).expect("tokenize")),
            t["tokens"],
            "{name}: tokens of {text:?}"
        );
        let enc = tok.encode(text, &offsets).expect("encode");
        assert_eq!(json!(enc.ids), t["ids"], "{name}: ids of {text:?}");
        assert_eq!(
            json!(enc.special_tokens_mask),
            t["special_tokens_mask"],
            "{name}: mask of {text:?}"
        );
        if let Some(want) = t.get("offsets") {
            let got: Vec<[usize; 2]> = enc.offsets.iter().map(|&(a, b)| [a, b]).collect();
            assert_eq!(json!(got), *want, "{name}: offsets of {text:?}");
        }
        for skip in [false, true] {
            for clean in [false, true] {
                let opts = DecodeOptions {
                    skip_special_tokens: skip,
                    clean_up_tokenization_spaces: Some(clean),
                };
                let key = format!("{}{}", u8::from(skip), u8::from(clean));
                assert_eq!(
                    json!(tok.decode(&enc.ids, &opts).expect("decode")),
                    t["decode"][&key],
                    "{name}: decode {key} of {text:?}"
                );
            }
        }
    }
    let [ids, keep, skip] = row["convert_ids_to_tokens"]
        .as_array()
        .expect("convert")
        .as_slice()
    else {
        panic!("convert_ids_to_tokens row");
    };
    let ids = u32s(ids);
    assert_eq!(
        json!(tok.convert_ids_to_tokens(&ids, SpecialTokens::Keep)),
        *keep,
        "{name}"
    );
    assert_eq!(
        json!(tok.convert_ids_to_tokens(&ids, SpecialTokens::Skip)),
        *skip,
        "{name}"
    );
    let decoded = &row["decode_ids"];
    assert_eq!(
        json!(tok.decode(&ids, &DecodeOptions::default()).expect("decode")),
        decoded[1],
        "{name}"
    );
    assert_eq!(
        json!(tok
            .decode(&ids, &DecodeOptions::skip_special_tokens())
            .expect("decode")),
        decoded[2],
        "{name}"
    );
    let tokens: Vec<&str> = keep
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        tok.convert_tokens_to_ids(&tokens),
        ids,
        "{name}: convert_tokens_to_ids"
    );
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

/// Our `save_pretrained` writes the files HF wrote, with the same JSON (and the same vocab.txt).
fn check_saved<T: PreTrainedTokenizerBase>(tok: &T, row: &Value) {
    let name = row["name"].as_str().expect("name");
    let dir = temp_dir(name);
    tok.save_pretrained(&dir).expect("save_pretrained");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(json!(files), row["files"], "{name}: files written");
    let hf = added_dir(name);
    for f in &files {
        if f.ends_with(".json") {
            assert_eq!(
                read_json(&dir.join(f)),
                read_json(&hf.join(f)),
                "{name}/{f}"
            );
        }
        // Byte for byte too: the layout of Python's json.dumps(indent=2, sort_keys=True), and
        // tokenizer.json as the tokenizers crate pretty-prints it.
        assert!(
            std::fs::read(dir.join(f)).ok() == std::fs::read(hf.join(f)).ok(),
            "{name}/{f} differs from what Python wrote"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn added_tokens_match_python() {
    let rows = cases();
    assert_eq!(rows.len(), 8);
    for row in &rows {
        let kind = row["kind"].as_str().expect("kind");
        if kind == "slow" {
            let (tok, n_added, n_special) = build(row, slow);
            assert_eq!(
                json!([n_added, n_special]),
                json!([row["n_added"], row["n_special"]])
            );
            check_row(&tok, row, "added");
            check_saved(&tok, row);
        } else {
            let (tok, n_added, n_special) = build(row, fast);
            assert_eq!(
                json!([n_added, n_special]),
                json!([row["n_added"], row["n_special"]])
            );
            check_row(&tok, row, "added");
            check_saved(&tok, row);
        }
    }
}

#[test]
fn from_pretrained_reads_what_python_saved() {
    for row in &cases() {
        let dir = added_dir(row["name"].as_str().expect("name"));
        if row["kind"] == "slow" {
            let tok = ConvBertTokenizer::from_pretrained(&dir).expect("slow from_pretrained");
            check_row(&tok, row, "loaded");
            check_saved(&tok, row);
        } else {
            let tok = ConvBertTokenizerFast::from_pretrained(&dir).expect("fast from_pretrained");
            check_row(&tok, row, "loaded");
            check_saved(&tok, row);
        }
    }
}

#[test]
fn save_then_load_round_trips() {
    for row in &cases() {
        let name = format!("rt-{}", row["name"].as_str().expect("name"));
        let dir = temp_dir(&name);
        if row["kind"] == "slow" {
            let (tok, _, _) = build(row, slow);
            tok.save_pretrained(&dir).expect("save");
            check_row(
                &ConvBertTokenizer::from_pretrained(&dir).expect("load"),
                row,
                "round trip",
            );
        } else {
            let (tok, _, _) = build(row, fast);
            tok.save_pretrained(&dir).expect("save");
            check_row(
                &ConvBertTokenizerFast::from_pretrained(&dir).expect("load"),
                row,
                "round trip",
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// With `CONVBERT_KEEP_SAVED=<dir>`, writes our save_pretrained output of every case there, for
/// a manual check that Python's `AutoTokenizer.from_pretrained` reads it (done once; see
/// fixtures/gen_tokenizer.py `check_rust_saved`).
#[test]
fn keep_saved_for_python() {
    let Some(root) = std::env::var_os("CONVBERT_KEEP_SAVED") else {
        return;
    };
    for row in &cases() {
        let dir = Path::new(&root).join(row["name"].as_str().expect("name"));
        if row["kind"] == "slow" {
            build(row, slow).0.save_pretrained(&dir).expect("save");
        } else {
            build(row, fast).0.save_pretrained(&dir).expect("save");
        }
    }
}
