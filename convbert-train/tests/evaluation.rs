//! `evaluate` on the committed data files with heads whose output layers are zeroed, so every
//! logit is 0 and the expected loss and metrics follow by hand: cross-entropy ln(K) over K equal
//! logits, perplexity exp(ln V) = V, argmax ties resolved to index 0, and the SQuAD answer of the
//! first context token, recovered through character offsets.

use std::path::PathBuf;

use convbert_model::ConvBertConfig;
use convbert_tokenizer::ConvBertTokenizer;
use convbert_train::data::{read_dataset, DataOptions, Dataset, Task};
use convbert_train::{evaluate, Collator, EvalResult, MlmMasking, TaskModel};
use tch::Device;

const VOCAB: i64 = 30522;

fn dataset(task: Task, file: &str, options: &DataOptions) -> Dataset {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/train/data")
        .join(file);
    let tok = ConvBertTokenizer::bert_base_uncased().expect("tokenizer");
    read_dataset(task, &path, &tok, options).expect("dataset")
}

/// A tiny model whose task layers (everything outside the encoder) are zero.
fn zero_head_model(task: Task, labels: usize) -> TaskModel {
    let json = format!(
        r#"{{"vocab_size": {VOCAB}, "hidden_size": 32, "embedding_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 128,
            "type_vocab_size": 2, "pad_token_id": 0, "num_labels": {labels}}}"#
    );
    let config = ConvBertConfig::from_json_str(&json).expect("config");
    tch::manual_seed(1);
    let model = TaskModel::from_config(task, config, Device::Cpu).expect("model");
    let mut zeroed = 0;
    tch::no_grad(|| {
        for (name, mut var) in model.var_store().variables() {
            if !name.starts_with("convbert.") {
                let _ = var.zero_();
                zeroed += 1;
            }
        }
    });
    assert!(zeroed >= 2, "no head weights found");
    model
}

fn run(model: &TaskModel, data: &Dataset, mlm: bool) -> EvalResult {
    let collator = Collator {
        pad_id: 0,
        mlm: mlm.then_some(MlmMasking {
            probability: 0.15,
            whole_word: false,
            mask_id: 103,
            vocab_size: VOCAB,
        }),
    };
    evaluate(model, data, &collator, 4, Device::Cpu).expect("evaluate")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5 * b.abs().max(1.0)
}

#[test]
fn text_classification_accuracy_and_macro_f1() {
    let data = dataset(
        Task::TextClassification,
        "cls.jsonl",
        &DataOptions::default(),
    );
    let r = run(&zero_head_model(Task::TextClassification, 3), &data, false);
    // Labels [2, 0, 1, 2, 0], every prediction 0: accuracy 2/5; F1 of class 0 is 2*2/(2*2+3) = 4/7,
    // classes 1 and 2 score 0: macro 4/21.
    assert!(close(r.loss, 3f64.ln()), "loss {}", r.loss);
    assert!(close(r.metrics["accuracy"], 0.4));
    assert!(close(r.metrics["macro_f1"], 4.0 / 21.0));
    assert_eq!(
        r.main_metric(Task::TextClassification),
        Some(("accuracy", 0.4))
    );
}

#[test]
fn multiple_choice_accuracy() {
    let data = dataset(Task::MultipleChoice, "mc.jsonl", &DataOptions::default());
    let r = run(&zero_head_model(Task::MultipleChoice, 2), &data, false);
    // Three equal choices: loss ln 3; choice 0 is picked, right on the first line only.
    assert!(close(r.loss, 3f64.ln()), "loss {}", r.loss);
    assert_eq!(r.metrics["accuracy"], 0.5);
}

#[test]
fn masked_lm_loss_and_perplexity() {
    let data = dataset(Task::MaskedLm, "mlm.txt", &DataOptions::default());
    let r = run(&zero_head_model(Task::MaskedLm, 2), &data, true);
    // Uniform over the vocabulary: loss ln V, perplexity exp(loss) = V.
    assert!(close(r.loss, (VOCAB as f64).ln()), "loss {}", r.loss);
    assert!(
        close(r.metrics["perplexity"], VOCAB as f64),
        "{:?}",
        r.metrics
    );
    assert!(close(r.metrics["perplexity"], r.loss.exp()));
}

#[test]
fn token_classification_entity_scores() {
    let data = dataset(
        Task::TokenClassification,
        "ner.jsonl",
        &DataOptions::default(),
    );
    let k = data.label_names.len();
    let misc = data
        .label_names
        .iter()
        .position(|n| n == "B-MISC")
        .expect("B-MISC");
    let model = zero_head_model(Task::TokenClassification, k);
    tch::no_grad(|| {
        let vars = model.var_store().variables();
        let _ = vars["classifier.bias"].get(misc as i64).fill_(1.0);
    });
    let r = run(&model, &data, false);
    // Every word is predicted B-MISC: 40 one-word MISC entities, two of them gold ("German",
    // "British") among 6 gold entities: precision 2/40, recall 2/6, F1 2*2/(40+6) = 2/23.
    // The loss over the 40 labelled words: ln(7 + e) - 1 for the 2 B-MISC words, ln(7 + e) else.
    let loss = (7.0 + 1f64.exp()).ln() - 2.0 / 40.0;
    assert!(close(r.loss, loss), "loss {}", r.loss);
    assert!(close(r.metrics["precision"], 0.05), "{:?}", r.metrics);
    assert!(close(r.metrics["recall"], 1.0 / 3.0));
    assert!(close(r.metrics["f1"], 2.0 / 23.0));
}

#[test]
fn squad_v2_exact_match_and_f1_from_the_first_context_token() {
    let options = DataOptions {
        max_length: 48,
        doc_stride: 16,
        label_names: None,
    };
    let data = dataset(Task::QuestionAnswering, "squad_v2.json", &options);
    let r = run(&zero_head_model(Task::QuestionAnswering, 2), &data, false);
    // All scores tie at 0 and the null answer wins only when strictly better, so every question is
    // answered with the first context token, "Zürich" (its "'s" are separate tokens): right for
    // w1, wrong for the unanswerable w2 and for w3 ("café culture").
    assert!(
        close(r.metrics["exact_match"], 1.0 / 3.0),
        "{:?}",
        r.metrics
    );
    assert!(close(r.metrics["f1"], 1.0 / 3.0), "{:?}", r.metrics);
    let v1 = dataset(Task::QuestionAnswering, "squad_v1.json", &options);
    let r = run(&zero_head_model(Task::QuestionAnswering, 2), &v1, false);
    // "super" and "Zürich" match none of the six answers.
    assert_eq!((r.metrics["exact_match"], r.metrics["f1"]), (0.0, 0.0));
}
