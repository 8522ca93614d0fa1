//! The five readers on the hand-written files of fixtures/train/data, against what the pinned HF
//! fast tokenizer and HF's preprocessing make of them (fixtures/train/data/golden.json, written by
//! fixtures/gen_train.py): sequence classification (JSONL and CSV), token classification with
//! first-piece label alignment (`tokenize_and_align_labels`), SQuAD v1/v2 windows with their answer
//! positions (`prepare_train_features`), multiple choice and MLM text lines.

use std::path::PathBuf;

use convbert_tokenizer::ConvBertTokenizer;
use convbert_train::data::{read_dataset, DataOptions, Dataset, Target, Task};
use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/train/data")
}

fn golden() -> Value {
    let text = std::fs::read_to_string(data_dir().join("golden.json")).expect("golden.json");
    serde_json::from_str(&text).expect("json")
}

fn setting(g: &Value, name: &str) -> usize {
    g["settings"][name].as_u64().expect("setting") as usize
}

fn ids(v: &Value) -> Vec<i64> {
    serde_json::from_value(v.clone()).expect("ids")
}

fn read(task: Task, file: &str, options: &DataOptions) -> Dataset {
    let tok = ConvBertTokenizer::bert_base_uncased().expect("tokenizer");
    read_dataset(task, &data_dir().join(file), &tok, options).expect("dataset")
}

fn with_max_length(max_length: usize) -> DataOptions {
    DataOptions {
        max_length,
        ..DataOptions::default()
    }
}

#[test]
fn text_classification_jsonl_matches_hf_encoding_and_sorted_labels() {
    let g = golden();
    let data = read(
        Task::TextClassification,
        "cls.jsonl",
        &with_max_length(setting(&g, "cls_max_length")),
    );
    assert_eq!(data.label_names, ["negative", "neutral", "positive"]);
    let got: Vec<_> = data
        .examples
        .iter()
        .map(|e| e.inputs[0].input_ids.clone())
        .collect();
    let want: Vec<_> = g["cls"].as_array().expect("cls").iter().map(ids).collect();
    assert_eq!(
        got, want,
        "the blank line is skipped, the pair is truncated longest-first"
    );
    let targets: Vec<_> = data.examples.iter().map(|e| e.target.clone()).collect();
    let classes = [2, 0, 1, 2, 0].map(Target::Class);
    assert_eq!(targets, classes);
    // The pair's second segment has type 1.
    let pair = &data.examples[2].inputs[0];
    assert_eq!(pair.token_type_ids.last(), Some(&1));
    assert_eq!(pair.token_type_ids[0], 0);
}

#[test]
fn text_classification_csv_matches_hf_encoding() {
    let g = golden();
    let data = read(
        Task::TextClassification,
        "cls.csv",
        &with_max_length(setting(&g, "cls_max_length")),
    );
    let got: Vec<_> = data
        .examples
        .iter()
        .map(|e| e.inputs[0].input_ids.clone())
        .collect();
    let want: Vec<_> = g["csv"]["input_ids"]
        .as_array()
        .expect("csv")
        .iter()
        .map(ids)
        .collect();
    assert_eq!(got, want, "quoted fields, an empty text_pair, a pair");
    let labels: Vec<_> = data
        .examples
        .iter()
        .map(|e| match e.target {
            Target::Class(c) => data.label_names[c as usize].clone(),
            _ => panic!("not a class"),
        })
        .collect();
    assert_eq!(labels, ["positive", "negative", "neutral"]);
    assert_eq!(g["csv"]["labels"], serde_json::json!(labels));
}

#[test]
fn integer_labels_keep_their_numeric_order() {
    let data = read(
        Task::TextClassification,
        "cls_int.jsonl",
        &DataOptions::default(),
    );
    assert_eq!(data.label_names, ["0", "1", "2", "10", "11"]);
    let targets: Vec<_> = data.examples.iter().map(|e| e.target.clone()).collect();
    assert_eq!(targets, [0, 2, 3, 1, 4].map(Target::Class));
}

#[test]
fn token_classification_labels_first_word_piece_like_hf() {
    let g = golden();
    let data = read(
        Task::TokenClassification,
        "ner.jsonl",
        &with_max_length(setting(&g, "ner_max_length")),
    );
    let names: Vec<String> =
        serde_json::from_value(g["ner"]["label_names"].clone()).expect("names");
    assert_eq!(data.label_names, names);
    for (i, e) in data.examples.iter().enumerate() {
        assert_eq!(
            e.inputs[0].input_ids,
            ids(&g["ner"]["input_ids"][i]),
            "line {}",
            i + 1
        );
        assert_eq!(
            e.target,
            Target::Tags(ids(&g["ner"]["labels"][i])),
            "line {}",
            i + 1
        );
    }
    // Line 3 is cut at 16 tokens; line 1 splits "washingtonian" and "são" into several pieces.
    assert_eq!(data.examples[2].inputs[0].input_ids.len(), 16);
    let Target::Tags(tags) = &data.examples[0].target else {
        panic!("tags")
    };
    assert!(tags.iter().filter(|&&t| t == -100).count() > 2);
}

fn check_squad(file: &str, key: &str) {
    let g = golden();
    let options = DataOptions {
        max_length: setting(&g, "qa_max_length"),
        doc_stride: setting(&g, "qa_doc_stride"),
        label_names: None,
    };
    let data = read(Task::QuestionAnswering, file, &options);
    let want = g[key].as_array().expect("features");
    assert_eq!(data.len(), want.len(), "number of windows");
    assert_eq!(data.squad.len(), want.len());
    for (i, (e, w)) in data.examples.iter().zip(want).enumerate() {
        let id = w["id"].as_str().expect("id");
        assert_eq!(data.squad[i].id, id, "window {i}");
        assert_eq!(
            e.inputs[0].input_ids,
            ids(&w["input_ids"]),
            "window {i} ({id})"
        );
        assert_eq!(
            e.inputs[0].token_type_ids,
            ids(&w["token_type_ids"]),
            "window {i} ({id})"
        );
        let span = Target::Span {
            start: w["start"].as_i64().expect("start"),
            end: w["end"].as_i64().expect("end"),
        };
        assert_eq!(e.target, span, "window {i} ({id})");
    }
}

#[test]
fn squad_v1_windows_and_positions_match_prepare_train_features() {
    check_squad("squad_v1.json", "squad_v1");
}

#[test]
fn squad_v2_impossible_answers_point_at_cls() {
    check_squad("squad_v2.json", "squad_v2");
    let g = golden();
    let options = DataOptions {
        max_length: setting(&g, "qa_max_length"),
        ..DataOptions::default()
    };
    let data = read(Task::QuestionAnswering, "squad_v2.json", &options);
    let w2 = data.squad.iter().position(|f| f.id == "w2").expect("w2");
    assert!(data.squad[w2].answers.is_empty());
    assert_eq!(data.examples[w2].target, Target::Span { start: 0, end: 0 });
    // The answer text is recovered from the character offsets of a non-ASCII context.
    let w1 = data.squad.iter().position(|f| f.id == "w1").expect("w1");
    let f = &data.squad[w1];
    let Target::Span { start, .. } = data.examples[w1].target else {
        panic!("span")
    };
    let (s, e) = f.offsets[start as usize].expect("context token");
    let text: String = f.context.chars().skip(s).take(e - s).collect();
    assert_eq!(text, "Zürich");
}

#[test]
fn multiple_choice_pairs_context_with_each_choice() {
    let g = golden();
    let data = read(Task::MultipleChoice, "mc.jsonl", &DataOptions::default());
    for (i, e) in data.examples.iter().enumerate() {
        let got: Vec<_> = e.inputs.iter().map(|x| x.input_ids.clone()).collect();
        let want: Vec<_> = g["mc"][i].as_array().expect("mc").iter().map(ids).collect();
        assert_eq!(got, want, "line {}", i + 1);
    }
    let targets: Vec<_> = data.examples.iter().map(|e| e.target.clone()).collect();
    assert_eq!(targets, [Target::Choice(0), Target::Choice(1)]);
}

#[test]
fn masked_lm_reads_non_blank_lines_with_word_starts() {
    let g = golden();
    let data = read(Task::MaskedLm, "mlm.txt", &DataOptions::default());
    let got: Vec<_> = data
        .examples
        .iter()
        .map(|e| e.inputs[0].input_ids.clone())
        .collect();
    let want: Vec<_> = g["mlm"].as_array().expect("mlm").iter().map(ids).collect();
    assert_eq!(got, want);
    assert!(data.examples.iter().all(|e| e.target == Target::Masked));
    // "unbelievably" is several pieces: only the first starts a word.
    let tok = ConvBertTokenizer::bert_base_uncased().expect("tokenizer");
    let pieces = tok.tokenize("unbelievably").expect("tokenize").len();
    assert!(pieces > 1);
    let starts = &data.examples[1].inputs[0].word_start;
    assert_eq!(
        &starts[1..=pieces],
        &[vec![true], vec![false; pieces - 1]].concat()[..]
    );
}
