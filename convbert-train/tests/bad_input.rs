//! Bad input gives typed errors: malformed records name their file and line, an unknown label is
//! reported, an empty dataset and classification data with a single label are refused, a NaN/negative learning rate is rejected before anything
//! is written, and a NaN loss (here in a run resumed from a poisoned checkpoint) or gradient stops
//! training before any weight changes, leaving the checkpoints already written untouched.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{collator, temp_dir, tiny_config, tokenizer, write_classification};
use convbert_train::data::{read_dataset, DataOptions, Dataset, Task};
use convbert_train::{
    checkpoints, optimizer_step, train, AdamW, AdamWConfig, TaskModel, TrainError, TrainingArgs,
    Warmup,
};
use tch::{nn::VarStore, Device, Tensor};

/// `train` seeds libtorch's global generator: the training tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn read(task: Task, path: &Path, options: &DataOptions) -> Result<Dataset, TrainError> {
    read_dataset(task, path, &tokenizer(), options)
}

/// Asserts a `Data` error at `path:line` whose reason contains `needle`; the message says both.
fn assert_data_error(r: Result<Dataset, TrainError>, path: &Path, line: usize, needle: &str) {
    match r {
        Err(e @ TrainError::Data { .. }) => {
            let message = e.to_string();
            let TrainError::Data {
                path: p,
                line: l,
                reason,
            } = e
            else {
                unreachable!()
            };
            assert_eq!((p.as_path(), l), (path, line), "{message}");
            assert!(reason.contains(needle), "{message}");
            assert!(
                message.starts_with(&format!("{}:{line}: ", path.display())),
                "{message}"
            );
        }
        other => panic!(
            "expected a data error at {}:{line}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn malformed_records_name_file_and_line() {
    let dir = temp_dir("malformed");
    let o = DataOptions::default();
    let jsonl = write(
        &dir,
        "a.jsonl",
        "{\"text\": \"the cat\", \"label\": \"x\"}\n\n{\"text\": \"the dog\", \"label\": \n",
    );
    assert_data_error(read(Task::TextClassification, &jsonl, &o), &jsonl, 3, "EOF");
    let float = write(&dir, "f.jsonl", "{\"text\": \"the cat\", \"label\": 1.5}\n");
    let r = read(Task::TextClassification, &float, &o);
    assert_data_error(r, &float, 1, "string or an integer");
    let csv = write(
        &dir,
        "a.csv",
        "text,label\nthe cat,x\n\"two\nlines\",y\nthe,dog,z\n",
    );
    assert_data_error(read(Task::TextClassification, &csv, &o), &csv, 5, "fields");
    let header = write(&dir, "h.csv", "sentence,label\nthe cat,x\n");
    assert_data_error(
        read(Task::TextClassification, &header, &o),
        &header,
        1,
        "text",
    );
    let ner = write(&dir, "n.jsonl", "{\"tokens\": [\"the\"], \"tags\": [\"O\"]}\n{\"tokens\": [\"the\", \"cat\"], \"tags\": [\"O\"]}\n");
    assert_data_error(
        read(Task::TokenClassification, &ner, &o),
        &ner,
        2,
        "2 tokens but 1 tags",
    );
    let mc = "{\"context\": \"the cat\", \"choices\": [\"sat\", \"ran\"], \"label\": 0}\n";
    let width = write(
        &dir,
        "w.jsonl",
        &format!(
            "{mc}{{\"context\": \"a\", \"choices\": [\"sat\", \"ran\", \"saw\"], \"label\": 0}}\n"
        ),
    );
    assert_data_error(
        read(Task::MultipleChoice, &width, &o),
        &width,
        2,
        "3 choices",
    );
    let label = write(
        &dir,
        "l.jsonl",
        &format!("{mc}{mc}{{\"context\": \"a\", \"choices\": [\"sat\", \"ran\"], \"label\": 2}}\n"),
    );
    assert_data_error(read(Task::MultipleChoice, &label, &o), &label, 3, "label 2");
    let squad = write(
        &dir,
        "s.json",
        "{\"data\": [\n {\"paragraphs\": [\n  {\"context\": \"the cat\", \"qas\": 7}]}]}\n",
    );
    assert_data_error(
        read(Task::QuestionAnswering, &squad, &o),
        &squad,
        3,
        "invalid type",
    );
}

#[test]
fn a_label_outside_label2id_is_reported() {
    let dir = temp_dir("labels");
    let known = DataOptions {
        label_names: Some(vec!["neg".into(), "pos".into()]),
        ..DataOptions::default()
    };
    let cls = write(
        &dir,
        "c.jsonl",
        "{\"text\": \"the cat\", \"label\": \"pos\"}\n{\"text\": \"the dog\", \"label\": \"meh\"}\n",
    );
    match read(Task::TextClassification, &cls, &known) {
        Err(e @ TrainError::UnknownLabel { .. }) => {
            let message = e.to_string();
            let TrainError::UnknownLabel {
                path,
                line,
                label,
                known,
            } = e
            else {
                unreachable!()
            };
            assert_eq!((path, line, label.as_str()), (cls.clone(), 2, "meh"));
            assert_eq!(known, ["neg", "pos"]);
            let want = format!(
                "{}:2: label \"meh\" is not one of [\"neg\", \"pos\"]",
                cls.display()
            );
            assert_eq!(message, want);
        }
        other => panic!("expected an unknown label, got {other:?}"),
    }
    let tags = DataOptions {
        label_names: Some(vec!["O".into(), "B-PER".into()]),
        ..DataOptions::default()
    };
    let ner = write(
        &dir,
        "n.jsonl",
        "{\"tokens\": [\"the\", \"man\"], \"tags\": [\"O\", \"B-ORG\"]}\n",
    );
    match read(Task::TokenClassification, &ner, &tags) {
        Err(TrainError::UnknownLabel { line: 1, label, .. }) => assert_eq!(label, "B-ORG"),
        other => panic!("expected an unknown tag, got {other:?}"),
    }
}

#[test]
fn an_empty_dataset_is_refused() {
    let dir = temp_dir("empty");
    let o = DataOptions::default();
    let cases = [
        (Task::TextClassification, "c.jsonl", "\n  \n"),
        (Task::TextClassification, "c.csv", "text,label\n"),
        (Task::TokenClassification, "n.jsonl", ""),
        (Task::QuestionAnswering, "s.json", "{\"data\": []}"),
        (Task::MultipleChoice, "m.jsonl", "\n"),
        (Task::MaskedLm, "t.txt", "\n\n   \n"),
    ];
    for (task, name, text) in cases {
        let path = write(&dir, name, text);
        match read(task, &path, &o) {
            Err(e @ TrainError::EmptyDataset(_)) => {
                assert_eq!(
                    e.to_string(),
                    format!("{}: the dataset is empty", path.display())
                )
            }
            other => panic!("{name}: expected EmptyDataset, got {other:?}"),
        }
    }
}

#[test]
fn classification_data_with_a_single_label_is_refused_in_words() {
    let dir = temp_dir("single-label");
    let text = "{\"text\": \"a\", \"label\": \"pos\"}\n{\"text\": \"b\", \"label\": \"pos\"}\n";
    let path = write(&dir, "one.jsonl", text);
    match read(Task::TextClassification, &path, &DataOptions::default()) {
        Err(e @ TrainError::SingleLabel { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "{}: every example has the label \"pos\"; classification needs at least two \
                 distinct labels",
                path.display()
            )
        ),
        other => panic!("expected SingleLabel, got {other:?}"),
    }
}

fn classification_setup(dir: &Path) -> (Dataset, TaskModel) {
    write_classification(&dir.join("train.jsonl"), 24, 5);
    let opts = DataOptions {
        max_length: 16,
        ..DataOptions::default()
    };
    let data = read(Task::TextClassification, &dir.join("train.jsonl"), &opts).expect("data");
    tch::manual_seed(11);
    let config = tiny_config(r#", "num_labels": 3"#);
    let model =
        TaskModel::from_config(Task::TextClassification, config, Device::Cpu).expect("model");
    (data, model)
}

fn args(out: &Path, max_steps: usize) -> TrainingArgs {
    TrainingArgs {
        output_dir: out.into(),
        learning_rate: 1e-3,
        max_steps: Some(max_steps),
        train_batch_size: 8,
        save_steps: Some(1),
        logging_steps: 1,
        progress: false,
        ..TrainingArgs::default()
    }
}

#[test]
fn impossible_hyper_parameters_are_rejected_before_anything_is_written() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("args");
    let (data, model) = classification_setup(&dir);
    let out = dir.join("run");
    let bad = [
        (
            "learning_rate",
            TrainingArgs {
                learning_rate: f64::NAN,
                ..args(&out, 2)
            },
        ),
        (
            "learning_rate",
            TrainingArgs {
                learning_rate: -1e-3,
                ..args(&out, 2)
            },
        ),
        (
            "learning_rate",
            TrainingArgs {
                learning_rate: f64::INFINITY,
                ..args(&out, 2)
            },
        ),
        (
            "warmup_ratio",
            TrainingArgs {
                warmup: Warmup::Ratio(f64::NAN),
                ..args(&out, 2)
            },
        ),
        (
            "max_grad_norm",
            TrainingArgs {
                max_grad_norm: -1.0,
                ..args(&out, 2)
            },
        ),
        (
            "train_batch_size",
            TrainingArgs {
                train_batch_size: 0,
                ..args(&out, 2)
            },
        ),
        ("max_steps", args(&out, 0)),
    ];
    for (name, a) in bad {
        match train(&model, &data, None, &collator(false), &a) {
            Err(TrainError::Argument { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: expected an argument error, got {other:?}"),
        }
        assert!(!out.exists(), "{name}: the output directory was created");
    }
    let message = TrainingArgs {
        learning_rate: f64::NAN,
        ..args(&out, 2)
    }
    .validate()
    .expect_err("NaN")
    .to_string();
    assert_eq!(
        message,
        "argument `learning_rate`: NaN is not a finite number >= 0"
    );
}

fn snapshot(model: &TaskModel) -> Vec<(String, Tensor)> {
    let mut vars: Vec<_> = model.var_store().variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter().map(|(n, t)| (n, t.copy())).collect()
}

#[test]
fn a_nan_loss_stops_before_the_update_and_keeps_the_checkpoints() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("nan");
    let (data, model) = classification_setup(&dir);
    let out = dir.join("run");
    train(&model, &data, None, &collator(false), &args(&out, 4)).expect("first run");

    // A NaN classifier bias in checkpoint-2 makes every loss of a run resumed from it NaN.
    let weights_file = out.join("checkpoint-2/model.safetensors");
    let mut tensors = Tensor::read_safetensors(&weights_file).expect("read");
    let mut poisoned = Vec::new();
    for (name, t) in &mut tensors {
        if name.starts_with("classifier") && name.ends_with("bias") {
            *t = t.full_like(f64::NAN);
            poisoned.push(name.clone());
        }
    }
    assert!(!poisoned.is_empty());
    Tensor::write_safetensors(&tensors, &weights_file).expect("write");
    let files = [
        "checkpoint-2/model.safetensors",
        "checkpoint-2/optimizer.safetensors",
        "checkpoint-2/trainer_state.json",
        "checkpoint-4/model.safetensors",
        "model.safetensors",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(out.join(f)).expect(f))
        .collect();

    let resumed = model_for_resume();
    let resume = TrainingArgs {
        resume_from: Some(out.join("checkpoint-2")),
        ..args(&out, 4)
    };
    match train(&resumed, &data, None, &collator(false), &resume) {
        Err(e @ TrainError::NonFiniteLoss { step: 2, .. }) => {
            assert!(e.to_string().contains("NaN at step 2"), "{e}")
        }
        other => panic!("expected a non-finite loss at step 2, got {other:?}"),
    }
    // The weights are checkpoint-2's: nothing was updated.
    for (name, new) in snapshot(&resumed) {
        let old = tensors.iter().find(|(n, _)| *n == name).expect(&name);
        let same = if poisoned.contains(&name) {
            bool::try_from(new.isnan().all()).expect("bool")
        } else {
            old.1.equal(&new)
        };
        assert!(same, "{name} changed");
    }
    let after: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(out.join(f)).expect(f))
        .collect();
    assert!(before == after, "a checkpoint or the final model changed");
    let names: Vec<String> = checkpoints(&out)
        .expect("list")
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
        .collect();
    assert_eq!(
        names,
        [
            "checkpoint-1",
            "checkpoint-2",
            "checkpoint-3",
            "checkpoint-4"
        ]
    );
    let stray = std::fs::read_dir(&out)
        .expect("dir")
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with('.'));
    assert!(!stray, "a temporary directory was left behind");
}

/// A fresh model of `classification_setup`'s shape (its weights come from the checkpoint).
fn model_for_resume() -> TaskModel {
    let config = tiny_config(r#", "num_labels": 3"#);
    TaskModel::from_config(Task::TextClassification, config, Device::Cpu).expect("model")
}

/// On the per-parameter path and on the fused one (which skips the update on the device):
/// weights, moments and step counters stay as they were.
#[test]
fn a_nan_gradient_stops_before_the_update() {
    for fused in [Some(false), Some(true)] {
        let vs = VarStore::new(Device::Cpu);
        let p = vs.root().zeros("p", &[3]);
        let config = AdamWConfig {
            fused,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(&vs, config).expect("adamw");
        // d/dp sqrt(|p|) at 0 is NaN, while the loss itself is 0.
        let r = optimizer_step(&mut opt, 1e-3, 1, 1.0, 5, |_| {
            Ok(p.abs().sqrt().sum(tch::Kind::Float))
        });
        match r {
            Err(TrainError::NonFiniteGradient { step: 5, norm }) => assert!(norm.is_nan()),
            other => panic!("expected a non-finite gradient, got {other:?}"),
        }
        let zeros = Tensor::zeros([3], (tch::Kind::Float, Device::Cpu));
        assert!(p.equal(&zeros), "fused {fused:?}: {p}");
        for (name, t) in opt.state_tensors().expect("state") {
            assert_eq!(
                t.abs().sum(tch::Kind::Double).double_value(&[]),
                0.0,
                "{name}"
            );
        }
    }
}
