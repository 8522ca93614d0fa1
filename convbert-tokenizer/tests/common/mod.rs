//! Shared helpers of the golden tests: fixture paths, tokenizer configs, equal/total reports.
#![allow(dead_code)]

use convbert_tokenizer::{ConvBertTokenizer, ConvBertTokenizerFast, TokenizerConfig, Vocab};
use serde_json::Value;
use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

pub fn read_jsonl(name: &str) -> Vec<Value> {
    let path = fixtures().join("tokenizer").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// The configurations of fixtures/gen_tokenizer.py `configs()`.
pub fn config(name: &str) -> (Vocab, TokenizerConfig) {
    let big = fixtures().join("data/bert-base-uncased-vocab.txt");
    let small = fixtures().join("tokenizer/small-vocab.txt");
    let mut c = TokenizerConfig::default();
    let path = match name {
        "uncased" => big,
        "cased" => {
            c.do_lower_case = false;
            big
        }
        "small" => small,
        "small_cased" => {
            c.do_lower_case = false;
            small
        }
        "small_keep_accents" => {
            c.strip_accents = Some(false);
            small
        }
        "small_strip_cased" => {
            c.do_lower_case = false;
            c.strip_accents = Some(true);
            small
        }
        "small_no_cjk" => {
            c.tokenize_chinese_chars = false;
            small
        }
        "small_never_split" => {
            c.do_lower_case = false;
            c.never_split = vec!["Hello!".into(), "[FOO]".into(), "café".into()];
            small
        }
        "small_no_basic" => {
            c.do_basic_tokenize = false;
            small
        }
        other => panic!("unknown config {other}"),
    };
    (Vocab::from_file(path).expect("vocab"), c)
}

pub fn tokenizers(name: &str) -> (ConvBertTokenizer, ConvBertTokenizerFast) {
    let (vocab, c) = config(name);
    (
        ConvBertTokenizer::new(vocab.clone(), c.clone()).expect("slow"),
        ConvBertTokenizerFast::new(vocab, c).expect("fast"),
    )
}

/// Counts equal cases and keeps the first differences.
#[derive(Default)]
pub struct Report {
    pub equal: usize,
    pub total: usize,
    pub diffs: Vec<String>,
}

impl Report {
    pub fn check(&mut self, ok: bool, describe: impl FnOnce() -> String) {
        self.total += 1;
        if ok {
            self.equal += 1;
        } else if self.diffs.len() < 8 {
            self.diffs.push(describe());
        }
    }

    pub fn finish(&self, what: &str) {
        eprintln!("{what}: {}/{} equal", self.equal, self.total);
        assert!(self.total > 0, "{what}: no cases");
        assert!(
            self.diffs.is_empty(),
            "{what}: {}/{} equal; first differences:\n{}",
            self.equal,
            self.total,
            self.diffs.join("\n")
        );
    }
}

pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

pub fn pairs(v: &Value) -> Vec<(usize, usize)> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|p| {
            (
                p[0].as_u64().expect("int") as usize,
                p[1].as_u64().expect("int") as usize,
            )
        })
        .collect()
}
