//! The output directory: a new run refuses one that holds files, `overwrite_output_dir` clears the
//! earlier run's outputs first, a resumed run may use it; temporaries of a killed run (a
//! checkpoint being written, one being pruned) are removed at start, and pruning never leaves a
//! `checkpoint-N` without its optimizer state.

mod common;

use std::path::Path;

use common::{classification_data, collator, temp_dir, tiny_config};
use convbert_train::data::{Dataset, Task};
use convbert_train::{check_output_dir, checkpoints, train, TaskModel, TrainError, TrainingArgs};
use tch::Device;

fn args(out: &Path, max_steps: usize) -> TrainingArgs {
    TrainingArgs {
        output_dir: out.into(),
        max_steps: Some(max_steps),
        train_batch_size: 8,
        save_steps: Some(2),
        logging_steps: 1,
        progress: false,
        ..TrainingArgs::default()
    }
}

fn model() -> TaskModel {
    let config = tiny_config(r#", "num_labels": 3"#);
    TaskModel::from_config(Task::TextClassification, config, Device::Cpu).expect("model")
}

fn run(data: &Dataset, a: &TrainingArgs) -> convbert_train::Result<convbert_train::TrainOutput> {
    train(&model(), data, None, &collator(false), a)
}

/// Every entry of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

fn names(dirs: &[std::path::PathBuf]) -> Vec<String> {
    dirs.iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_new_run_refuses_a_non_empty_output_directory_unless_it_overwrites() {
    let dir = temp_dir("outdir");
    let data = classification_data(&dir, "train.jsonl", 32, 3, None);
    let out = dir.join("run");
    run(&data, &args(&out, 4)).expect("first run");
    std::fs::write(out.join("notes.txt"), "mine").expect("notes");
    let before = entries(&out);
    let log = std::fs::read(out.join("train_log.jsonl")).expect("log");

    let refused = run(&data, &args(&out, 2));
    match &refused {
        Err(e @ TrainError::OutputDirNotEmpty(p)) => {
            assert_eq!(p, &out);
            assert!(e.to_string().contains(&out.display().to_string()), "{e}");
        }
        other => panic!("expected OutputDirNotEmpty, got {other:?}"),
    }
    assert!(matches!(
        check_output_dir(&args(&out, 2)),
        Err(TrainError::OutputDirNotEmpty(_))
    ));
    assert_eq!(entries(&out), before, "a refused run changed the directory");
    assert_eq!(
        std::fs::read(out.join("train_log.jsonl")).expect("log"),
        log
    );

    // An empty or absent directory is fine.
    std::fs::create_dir_all(dir.join("empty")).expect("empty");
    check_output_dir(&args(&dir.join("empty"), 2)).expect("empty dir");
    check_output_dir(&args(&dir.join("absent"), 2)).expect("absent dir");

    // Overwriting and resuming at once is refused: the clearing would remove the checkpoint.
    let both = TrainingArgs {
        overwrite_output_dir: true,
        resume_from: Some(out.join("checkpoint-2")),
        ..args(&out, 4)
    };
    match run(&data, &both) {
        Err(TrainError::Argument { name, .. }) => assert_eq!(name, "overwrite_output_dir"),
        other => panic!("expected an argument error, got {other:?}"),
    }

    // Overwriting: the earlier run's checkpoints, log and model go; the user's file stays.
    let overwrite = TrainingArgs {
        overwrite_output_dir: true,
        save_steps: Some(3),
        ..args(&out, 3)
    };
    run(&data, &overwrite).expect("overwriting run");
    assert_eq!(names(&checkpoints(&out).expect("list")), ["checkpoint-3"]);
    let log = std::fs::read_to_string(out.join("train_log.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 3, "{log}");
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).expect("notes"),
        "mine"
    );
}

#[test]
fn stale_temporaries_go_and_pruning_never_leaves_a_half_checkpoint() {
    let dir = temp_dir("stale");
    let data = classification_data(&dir, "train.jsonl", 32, 3, None);
    let out = dir.join("run");
    run(&data, &args(&out, 6)).expect("first run");
    assert_eq!(
        names(&checkpoints(&out).expect("list")),
        ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    );
    // A run killed twice: while writing checkpoint-6 (its temporary stays) and while pruning
    // checkpoint-2 (renamed away, its optimizer state already removed).
    std::fs::rename(out.join("checkpoint-6"), out.join(".tmp-checkpoint-6")).expect("tmp");
    let pruned = out.join(".deleting-checkpoint-2");
    std::fs::rename(out.join("checkpoint-2"), &pruned).expect("deleting");
    std::fs::remove_file(pruned.join("optimizer.safetensors")).expect("half pruned");
    std::fs::create_dir_all(out.join(".tmp-final")).expect("tmp final");
    // And while replacing the log and the curve (files are written beside, then renamed).
    std::fs::write(out.join(".tmp-train_log.jsonl"), "{\"step\": 1").expect("tmp log");
    std::fs::write(out.join(".tmp-loss_curve.svg"), "<svg").expect("tmp svg");
    // The half-pruned checkpoint is not a checkpoint.
    assert_eq!(names(&checkpoints(&out).expect("list")), ["checkpoint-4"]);

    let resume = TrainingArgs {
        resume_from: Some(out.join("checkpoint-4")),
        save_total_limit: Some(1),
        ..args(&out, 6)
    };
    let done = run(&data, &resume).expect("resumed run");
    assert_eq!(done.global_step, 6);
    let stray: Vec<String> = entries(&out)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "temporaries left: {stray:?}");
    // The log and the curve were replaced whole: every log line parses, the SVG is closed.
    let log = std::fs::read_to_string(out.join("train_log.jsonl")).expect("log");
    assert!(log.ends_with('\n') && !log.is_empty(), "{log}");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a whole log line");
    }
    let svg = std::fs::read_to_string(out.join("loss_curve.svg")).expect("svg");
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    // Pruned to the newest, which is complete.
    assert_eq!(names(&checkpoints(&out).expect("list")), ["checkpoint-6"]);
    for f in [
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(
            out.join("checkpoint-6").join(f).is_file(),
            "checkpoint-6/{f}"
        );
    }
}
