//! Unreadable files name their path and line: invalid UTF-8 in the data of every reader kind
//! (JSONL, CSV, raw text, SQuAD JSON), and a corrupt or non-UTF-8 `trainer_state.json` or a
//! truncated optimizer state when resuming.

mod common;

use std::path::{Path, PathBuf};

use common::{classification_data, collator, temp_dir, tiny_config, tokenizer};
use convbert_train::data::{read_dataset, DataOptions, Dataset, Task};
use convbert_train::{train, TaskModel, TrainError, TrainingArgs};
use tch::Device;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn read(task: Task, path: &Path) -> Result<Dataset, TrainError> {
    read_dataset(task, path, &tokenizer(), &DataOptions::default())
}

/// Asserts a `Data` error whose message is `path:line: ...needle...`.
fn assert_at(r: Result<impl std::fmt::Debug, TrainError>, path: &Path, line: usize, needle: &str) {
    match r {
        Err(e @ TrainError::Data { .. }) => {
            let message = e.to_string();
            let prefix = format!("{}:{line}: ", path.display());
            assert!(message.starts_with(&prefix), "{message}");
            assert!(message.contains(needle), "{message}");
        }
        other => panic!(
            "expected an error at {}:{line}, got {other:?}",
            path.display()
        ),
    }
}

/// Latin-1 "café": the byte 0xE9 alone is not UTF-8.
const CAFE: &[u8] = b"caf\xe9";

#[test]
fn invalid_utf8_in_data_names_the_file_and_line() {
    let dir = temp_dir("utf8");
    let invalid = "invalid UTF-8 at byte";
    let line = |text: &str| text.as_bytes().to_vec();
    let mut jsonl = line("{\"text\": \"the cat\", \"label\": \"x\"}\n\n{\"text\": \"");
    jsonl.extend(CAFE);
    jsonl.extend(line("\", \"label\": \"y\"}\n"));
    let path = write(&dir, "c.jsonl", &jsonl);
    assert_at(read(Task::TextClassification, &path), &path, 3, invalid);

    let mut csv = line("text,label\nthe cat,x\n");
    csv.extend(CAFE);
    csv.extend(line(",y\n"));
    let path = write(&dir, "c.csv", &csv);
    assert_at(read(Task::TextClassification, &path), &path, 3, invalid);

    let mut text = line("the cat sat\n");
    text.extend(CAFE);
    text.extend(line(" on the mat\n"));
    let path = write(&dir, "t.txt", &text);
    // The column: the byte after "caf".
    assert_at(
        read(Task::MaskedLm, &path),
        &path,
        2,
        "invalid UTF-8 at byte 4 ",
    );

    let mut squad = line("{\"data\": [{\"paragraphs\": [\n{\"context\": \"the ");
    squad.extend(CAFE);
    squad.extend(line("\", \"qas\": []}]}]}\n"));
    let path = write(&dir, "s.json", &squad);
    assert_at(read(Task::QuestionAnswering, &path), &path, 2, invalid);

    let mut ner = line("{\"tokens\": [\"");
    ner.extend(CAFE);
    ner.extend(line("\"], \"tags\": [\"O\"]}\n"));
    let path = write(&dir, "n.jsonl", &ner);
    assert_at(read(Task::TokenClassification, &path), &path, 1, invalid);
}

fn args(out: &Path) -> TrainingArgs {
    TrainingArgs {
        output_dir: out.into(),
        max_steps: Some(2),
        train_batch_size: 8,
        save_steps: Some(1),
        logging_steps: 1,
        progress: false,
        ..TrainingArgs::default()
    }
}

fn model() -> TaskModel {
    let config = tiny_config(r#", "num_labels": 3"#);
    TaskModel::from_config(Task::TextClassification, config, Device::Cpu).expect("model")
}

#[test]
fn a_corrupt_checkpoint_names_the_file_it_cannot_resume_from() {
    let dir = temp_dir("corrupt-state");
    let data = classification_data(&dir, "train.jsonl", 16, 3, None);
    let out = dir.join("run");
    train(&model(), &data, None, &collator(false), &args(&out)).expect("first run");
    let resume = |from: &str| {
        let a = TrainingArgs {
            resume_from: Some(out.join(from)),
            ..args(&out)
        };
        train(&model(), &data, None, &collator(false), &a)
    };

    // Truncated JSON: the line where it ends.
    let state = out.join("checkpoint-1/trainer_state.json");
    let text = std::fs::read_to_string(&state).expect("state");
    let lines = text.lines().count();
    assert!(lines > 3, "pretty-printed: {text}");
    let cut = text.rfind("\"log_history\"").expect("log_history");
    std::fs::write(&state, &text[..cut + 20]).expect("truncate");
    let cut_line = text[..cut + 20].lines().count();
    assert_at(resume("checkpoint-1"), &state, cut_line, "EOF");

    // Invalid UTF-8 on line 2.
    let state = out.join("checkpoint-2/trainer_state.json");
    let mut bytes = b"{\n  \"global_step\": 2, \"x\": \"".to_vec();
    bytes.extend(CAFE);
    std::fs::write(&state, bytes).expect("write");
    assert_at(resume("checkpoint-2"), &state, 2, "invalid UTF-8 at byte");

    // A truncated optimizer state: the resume error names that file.
    train(
        &model(),
        &data,
        None,
        &collator(false),
        &args(&dir.join("b")),
    )
    .expect("second run");
    let optimizer = dir.join("b/checkpoint-2/optimizer.safetensors");
    let bytes = std::fs::read(&optimizer).expect("optimizer");
    std::fs::write(&optimizer, &bytes[..bytes.len() / 2]).expect("truncate");
    let a = TrainingArgs {
        resume_from: Some(dir.join("b/checkpoint-2")),
        ..args(&dir.join("b"))
    };
    match train(&model(), &data, None, &collator(false), &a) {
        Err(e @ TrainError::Resume { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains(&optimizer.display().to_string()),
                "{message}"
            )
        }
        other => panic!("expected a resume error, got {other:?}"),
    }
}
