//! Shared helpers of the training tests: a tiny word-level vocabulary and tokenizer, tiny model
//! configs, generated data files and temporary directories.
#![allow(dead_code)]

use std::path::PathBuf;

use convbert_model::ConvBertConfig;
use convbert_tokenizer::{ConvBertTokenizer, TokenizerConfig, Vocab};
use convbert_train::{Collator, MlmMasking};

pub const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
pub const FILLER: [&str; 24] = [
    "the", "a", "cat", "dog", "sat", "on", "mat", "ran", "to", "house", "big", "small", "tree",
    "under", "over", "near", "green", "old", "man", "woman", "saw", "park", "with", "and",
];
pub const KEYS: [&str; 3] = ["apple", "banana", "cherry"];

pub fn tokenizer() -> ConvBertTokenizer {
    let words = SPECIAL
        .iter()
        .chain(&FILLER)
        .chain(&KEYS)
        .chain(&["##s", "##ing"]);
    let vocab = Vocab::from_pairs(words.enumerate().map(|(i, w)| (w.to_string(), i as u32)))
        .expect("vocab");
    ConvBertTokenizer::new(vocab, TokenizerConfig::default()).expect("tokenizer")
}

pub fn vocab_size() -> i64 {
    (SPECIAL.len() + FILLER.len() + KEYS.len() + 2) as i64
}

pub fn tiny_config(extra: &str) -> ConvBertConfig {
    let json = format!(
        r#"{{"vocab_size": {}, "hidden_size": 32, "embedding_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64,
            "type_vocab_size": 2, "pad_token_id": 0 {extra}}}"#,
        vocab_size()
    );
    ConvBertConfig::from_json_str(&json).expect("config")
}

pub fn collator(mlm: bool) -> Collator {
    Collator {
        pad_id: 0,
        mlm: mlm.then_some(MlmMasking {
            probability: 0.15,
            whole_word: false,
            mask_id: 4,
            vocab_size: vocab_size(),
        }),
    }
}

/// Deterministic pseudo-random numbers (a 64-bit LCG), enough to generate data.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// A sentence of 4-9 filler words with `key` inserted at a random place.
pub fn sentence(rng: &mut Lcg, key: Option<&str>) -> String {
    let n = 4 + rng.below(6);
    let mut words: Vec<&str> = (0..n).map(|_| FILLER[rng.below(FILLER.len())]).collect();
    if let Some(k) = key {
        let at = rng.below(n + 1);
        words.insert(at, k);
    }
    words.join(" ")
}

pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "convbert-train-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes a text classification JSONL file: the label is the key word the sentence holds.
pub fn write_classification(path: &std::path::Path, n: usize, seed: u64) {
    let mut rng = Lcg(seed);
    let lines: Vec<String> = (0..n)
        .map(|_| {
            let k = rng.below(KEYS.len());
            serde_json::json!({"text": sentence(&mut rng, Some(KEYS[k])), "label": format!("class_{}", KEYS[k])}).to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

/// `n` generated classification examples (seed `seed`) written to `dir/name` and read back with
/// max_length 32; `label_names` fixes the label order (an eval set takes the train set's).
pub fn classification_data(
    dir: &std::path::Path,
    name: &str,
    n: usize,
    seed: u64,
    label_names: Option<&[String]>,
) -> convbert_train::data::Dataset {
    use convbert_train::data::{read_dataset, DataOptions, Task};
    let path = dir.join(name);
    write_classification(&path, n, seed);
    let opts = DataOptions {
        max_length: 32,
        label_names: label_names.map(<[String]>::to_vec),
        ..DataOptions::default()
    };
    read_dataset(Task::TextClassification, &path, &tokenizer(), &opts).expect("dataset")
}

/// Device of the tests that can run on a GPU: `CONVBERT_TEST_DEVICE=cuda` (or `cuda:N`).
pub fn test_device() -> tch::Device {
    let name = std::env::var("CONVBERT_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    convbert_model::parse_device(&name).expect("CONVBERT_TEST_DEVICE: cpu, cuda or cuda:N")
}

/// The training loss of golden micro-batch `k` (`in.<k>.{input_ids,attention_mask,
/// token_type_ids,labels}` of a fixtures/train or fixtures/ddp golden).
pub fn golden_micro_batch_loss(
    model: &convbert_heads::ConvBertForSequenceClassification,
    golden: &std::collections::BTreeMap<String, tch::Tensor>,
    k: usize,
) -> convbert_train::Result<tch::Tensor> {
    let t = |key: &str| &golden[&format!("in.{k}.{key}")];
    let inputs = convbert_model::ConvBertInputs {
        input_ids: Some(t("input_ids")),
        attention_mask: Some(t("attention_mask")),
        token_type_ids: Some(t("token_type_ids")),
        ..Default::default()
    };
    let out = model.forward_t(
        &inputs,
        Some(t("labels")),
        &convbert_model::ForwardOptions::default(),
        true,
    )?;
    Ok(out.loss.expect("loss"))
}
