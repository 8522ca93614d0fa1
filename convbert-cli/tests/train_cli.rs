//! End-to-end `convbert train`: the built binary trains a tiny classifier from a config on a
//! generated task for a few steps; the output directory holds a model `convbert classify` loads,
//! the JSONL log, a well-formed SVG curve and only the newest checkpoints; bad input exits 1 with
//! one line on stderr, bad usage (a non-empty output directory included) exits 2; a closed stdout
//! ends the command quietly; a resumed run logs what an uninterrupted one does.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::stderr;
use serde_json::Value;

const WORDS: [&str; 12] = [
    "the", "a", "cat", "dog", "sat", "on", "mat", "ran", "to", "house", "big", "small",
];
const KEYS: [&str; 3] = ["apple", "banana", "cherry"];

fn convbert(args: &[&str], stdin: &str) -> Output {
    common::convbert(args, stdin.as_bytes())
}

/// A fresh directory with a vocab, a tiny config and generated train/eval files.
fn setup(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("convbert-train-cli-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clean");
    }
    std::fs::create_dir_all(&dir).expect("dir");
    let vocab: Vec<&str> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .into_iter()
        .chain(WORDS)
        .chain(KEYS)
        .collect();
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").expect("vocab");
    let config = serde_json::json!({
        "vocab_size": vocab.len(), "hidden_size": 32, "embedding_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "max_position_embeddings": 64, "type_vocab_size": 2, "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
    let mut state = 12345u64;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    for (file, n) in [("train.jsonl", 48), ("eval.jsonl", 16)] {
        let lines: Vec<String> = (0..n)
            .map(|_| {
                let k = next(KEYS.len());
                let mut words: Vec<&str> = (0..5).map(|_| WORDS[next(WORDS.len())]).collect();
                words.insert(next(6), KEYS[k]);
                serde_json::json!({"text": words.join(" "), "label": KEYS[k]}).to_string()
            })
            .collect();
        std::fs::write(dir.join(file), lines.join("\n") + "\n").expect("data");
    }
    dir
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Tags balance and the root element is `<svg>`: enough to tell a complete SVG document.
fn assert_well_formed_svg(svg: &str) {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    let mut roots = 0;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let name = |t: &str| {
            t.split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches('/')
                .to_string()
        };
        if let Some(end) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(end.trim()), "mismatched </{end}>");
        } else if !tag.ends_with('/') {
            if stack.is_empty() {
                roots += 1;
                assert_eq!(name(tag), "svg", "root element");
            }
            stack.push(tag.split_whitespace().next().unwrap_or(""));
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    assert_eq!(roots, 1);
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("<polyline"), "no curve drawn");
}

#[test]
fn trains_a_tiny_classifier_end_to_end() {
    let dir = setup("ok");
    let out_dir = dir.join("out");
    let train_args = |out_dir: &Path| -> Vec<String> {
        [
            "train",
            "--task",
            "text-classification",
            "--config",
            p(&dir.join("config.json")),
            "--tokenizer",
            p(&dir.join("vocab.txt")),
            "--train",
            p(&dir.join("train.jsonl")),
            "--eval",
            p(&dir.join("eval.jsonl")),
            "--output",
            p(out_dir),
            "--max-steps",
            "6",
            "--batch-size",
            "8",
            "--learning-rate",
            "2e-3",
            "--logging-steps",
            "1",
            "--save-steps",
            "2",
            "--save-total-limit",
            "2",
            "--max-length",
            "16",
            "--threads",
            "1",
            "--no-progress",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |out_dir: &Path| {
        let args = train_args(out_dir);
        convbert(&args.iter().map(String::as_str).collect::<Vec<_>>(), "")
    };
    let out = run(&out_dir);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        stderr(&out)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("one JSON summary");
    assert_eq!(summary["global_step"], 6);
    assert_eq!(summary["train_examples"], 48);
    assert!(summary["train_loss"].as_f64().is_some_and(f64::is_finite));
    let accuracy = summary["eval_metrics"]["accuracy"]
        .as_f64()
        .expect("accuracy");
    assert!((0.0..=1.0).contains(&accuracy));

    // The log: one line per step, the last with the final evaluation.
    let log = std::fs::read_to_string(out_dir.join("train_log.jsonl")).expect("log");
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("log line"))
        .collect();
    let steps: Vec<_> = entries
        .iter()
        .map(|e| e["step"].as_u64().expect("step"))
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);
    assert!(entries
        .iter()
        .all(|e| e["loss"].as_f64().is_some_and(f64::is_finite)));
    assert_eq!(entries[5]["eval_accuracy"].as_f64(), Some(accuracy));

    let svg = std::fs::read_to_string(out_dir.join("loss_curve.svg")).expect("svg");
    assert_well_formed_svg(&svg);

    // Checkpoints every 2 steps, the newest 2 kept.
    let mut checkpoints: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("out dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("checkpoint-") || n.starts_with(".tmp"))
        .collect();
    checkpoints.sort();
    assert_eq!(checkpoints, ["checkpoint-4", "checkpoint-6"]);
    for f in [
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(
            out_dir.join("checkpoint-6").join(f).is_file(),
            "checkpoint-6/{f}"
        );
    }

    // The same seed gives the same weights (initialisation, shuffling and dropout are seeded).
    let again = run(&dir.join("again"));
    assert!(again.status.success(), "{}", stderr(&again));
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).expect("weights");
    assert!(
        weights(&out_dir) == weights(&dir.join("again")),
        "a rerun trained other weights"
    );

    // The final model (with its vocab.txt and label names) serves `convbert classify`.
    let classify = convbert(
        &["classify", "--model", p(&out_dir)],
        "the cat ate an apple\nbanana on the mat\n",
    );
    assert!(classify.status.success(), "classify: {}", stderr(&classify));
    let lines: Vec<Value> = String::from_utf8_lossy(&classify.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("classify line"))
        .collect();
    assert_eq!(lines.len(), 2);
    let text = classify.stdout.clone();
    let text = String::from_utf8_lossy(&text);
    assert!(
        KEYS.iter().any(|k| text.contains(&format!("\"{k}\""))),
        "labels by name: {text}"
    );
}

#[test]
fn bad_input_exits_1_with_one_line_and_bad_usage_exits_2() {
    let dir = setup("bad");
    let base = |train: &Path| -> Vec<String> {
        [
            "train",
            "--task",
            "text-classification",
            "--config",
            p(&dir.join("config.json")),
            "--tokenizer",
            p(&dir.join("vocab.txt")),
            "--train",
            p(train),
            "--output",
            p(&dir.join("out")),
            "--max-steps",
            "1",
            "--no-progress",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        convbert(&refs, "")
    };
    let one_line = |out: &Output, code: i32, needle: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
        assert!(out.stdout.is_empty());
    };

    let missing = dir.join("missing.jsonl");
    one_line(&run(base(&missing)), 1, "missing.jsonl");
    // An output where nothing can be created fails before the data is read (the missing
    // training file is never reached).
    #[cfg(target_os = "linux")]
    {
        let mut unwritable = base(&missing);
        let at = unwritable
            .iter()
            .position(|a| a == "--output")
            .expect("--output");
        unwritable[at + 1] = "/proc/convbert-train-out/run".into();
        let out = run(unwritable);
        one_line(&out, 1, "cannot write /proc/convbert-train-out/run: ");
        assert!(!stderr(&out).contains("missing.jsonl"), "{}", stderr(&out));
    }
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\": \"the cat\", \"label\": \"apple\"}\n{\"text\": oops}\n",
    )
    .expect("bad");
    one_line(&run(base(&bad)), 1, "bad.jsonl:2:");
    let train = dir.join("train.jsonl");
    let eval = dir.join("unknown_label.jsonl");
    std::fs::write(&eval, "{\"text\": \"the cat\", \"label\": \"durian\"}\n").expect("eval");
    let mut unknown = base(&train);
    unknown.extend(["--eval".to_string(), p(&eval).to_string()]);
    one_line(
        &run(unknown),
        1,
        "unknown_label.jsonl:1: label \"durian\" is not one of",
    );
    let mut nan = base(&train);
    nan.push("--learning-rate=NaN".into());
    one_line(
        &run(nan),
        2,
        "--learning-rate: NaN is not a finite number >= 0",
    );
    let mut negative = base(&train);
    negative.push("--learning-rate=-0.1".into());
    one_line(&run(negative), 2, "--learning-rate");
    let mut task = base(&train);
    task[2] = "summarization".into();
    let out = run(task);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid value 'summarization' for '--task <TASK>'"),
        "{}",
        stderr(&out)
    );
    let mut fp16 = base(&train);
    fp16.push("--fp16".into());
    one_line(&run(fp16), 2, "fp16 mixed precision needs a CUDA device");
    assert!(!dir.join("out").exists(), "nothing is written on bad input");

    let mut flag = base(&train);
    flag.push("--no-such-flag".into());
    let out = run(flag);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--no-such-flag"));
}

/// The fine-tuning example of docs/finetune/README.md, as documented: it reaches the accuracy
/// shown there, in fp32 and with `--bf16` mixed precision.
#[test]
fn the_documented_fine_tuning_example_reaches_full_accuracy() {
    for precision in [None, Some("--bf16")] {
        documented_example(precision);
    }
}

fn documented_example(precision: Option<&str>) {
    let out_dir = std::env::temp_dir().join(format!(
        "convbert-train-cli-docs-{}-{}",
        std::process::id(),
        precision.unwrap_or("fp32").trim_start_matches('-')
    ));
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir).expect("clean");
    }
    let mut args = common::documented_finetune_args(&out_dir);
    args.extend(precision.map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = convbert(&args, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["global_step"], 96);
    assert_eq!(summary["train_examples"], 120);
    assert_eq!(
        summary["eval_metrics"]["accuracy"], 1.0,
        "{precision:?}: {summary}"
    );
    assert!(
        summary["eval_loss"].as_f64().is_some_and(|l| l < 0.01),
        "{precision:?}: {summary}"
    );
    let checkpoints: Vec<_> = std::fs::read_dir(&out_dir)
        .expect("out")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    assert_eq!(checkpoints, ["checkpoint-96"]);
}

/// A short run of the tiny classifier of `setup(dir)` into `out`: `steps` steps, a checkpoint
/// every 2, a log line every step.
fn tiny_run(dir: &Path, out: &Path, steps: &str) -> Vec<String> {
    let files = ["config.json", "vocab.txt", "train.jsonl"].map(|f| p(&dir.join(f)).to_string());
    let [config, vocab, train] = files;
    [
        "train",
        "--task",
        "text-classification",
        "--config",
        &config,
        "--tokenizer",
        &vocab,
        "--train",
        &train,
        "--output",
        p(out),
        "--max-steps",
        steps,
        "--save-steps",
        "2",
        "--logging-steps",
        "1",
        "--max-length",
        "16",
        "--threads",
        "1",
        "--no-progress",
    ]
    .map(String::from)
    .to_vec()
}

fn run_args(args: &[String]) -> Output {
    convbert(&args.iter().map(String::as_str).collect::<Vec<_>>(), "")
}

fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[test]
fn a_closed_stdout_ends_quietly_after_saving() {
    let dir = setup("pipe");
    let out_dir = dir.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_convbert"))
        .args(tiny_run(&dir, &out_dir, "2"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn convbert");
    // The reader goes away long before the summary is printed, after training (`| true`).
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = stderr(&out);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert!(err.is_empty(), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    for f in [
        "model.safetensors",
        "config.json",
        "vocab.txt",
        "train_log.jsonl",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} not saved");
    }
    // Every file was written beside and renamed into place: no temporary is left.
    let stray: Vec<String> = sorted_entries(&out_dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "temporaries left: {stray:?}");
}

#[test]
fn a_new_run_refuses_a_non_empty_output_directory() {
    let dir = setup("nonempty");
    let out_dir = dir.join("out");
    let first = run_args(&tiny_run(&dir, &out_dir, "4"));
    assert!(first.status.success(), "{}", stderr(&first));
    let before = sorted_entries(&out_dir);
    let log = std::fs::read(out_dir.join("train_log.jsonl")).expect("log");

    let again = run_args(&tiny_run(&dir, &out_dir, "3"));
    let err = stderr(&again);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: --output ") && err.contains(p(&out_dir)),
        "{err}"
    );
    assert!(err.contains("--overwrite-output-dir"), "{err}");
    assert!(again.stdout.is_empty());
    assert_eq!(
        sorted_entries(&out_dir),
        before,
        "a refused run changed the directory"
    );
    assert_eq!(
        std::fs::read(out_dir.join("train_log.jsonl")).expect("log"),
        log
    );

    let mut both = tiny_run(&dir, &out_dir, "4");
    both.extend(["--overwrite-output-dir", "--resume-from"].map(String::from));
    both.push(p(&out_dir.join("checkpoint-2")).into());
    let refused = run_args(&both);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert_eq!(sorted_entries(&out_dir), before);

    // Overwriting: the earlier run's checkpoint-4 and log lines are gone, not mixed in.
    let mut overwrite = tiny_run(&dir, &out_dir, "3");
    overwrite.push("--overwrite-output-dir".into());
    let out = run_args(&overwrite);
    assert!(out.status.success(), "{}", stderr(&out));
    let checkpoints: Vec<String> = sorted_entries(&out_dir)
        .into_iter()
        .filter(|n| n.starts_with("checkpoint-") || n.starts_with('.'))
        .collect();
    assert_eq!(checkpoints, ["checkpoint-2", "checkpoint-3"]);
    let log = std::fs::read_to_string(out_dir.join("train_log.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 3, "{log}");
}

/// The tiny fine-tuning config of docs/finetune: 8 steps straight, and 4 steps then a resume
/// from checkpoint-4 into the same directory, log the same lines, to the last digit (the
/// wall-clock examples_per_second aside).
#[test]
fn a_resumed_run_logs_what_an_uninterrupted_run_logs() {
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/finetune");
    let out_dir = setup("resume-log").join("out");
    let (config, train, eval) = (
        docs.join("config.json"),
        docs.join("train.jsonl"),
        docs.join("eval.jsonl"),
    );
    let args = [
        "train",
        "--task",
        "text-classification",
        "--config",
        p(&config),
        "--train",
        p(&train),
        "--eval",
        p(&eval),
        "--output",
        p(&out_dir),
        "--max-steps",
        "8",
        "--batch-size",
        "16",
        "--learning-rate",
        "3e-3",
        "--warmup-ratio",
        "0.1",
        // Log lines at 3, 6 and 8, evaluations at 4 and 8: the resume at 4 falls between logs.
        "--logging-steps",
        "3",
        "--eval-steps",
        "4",
        "--save-steps",
        "4",
        "--seed",
        "42",
        "--threads",
        "1",
        "--no-progress",
    ];
    let straight = convbert(&args, "");
    assert!(straight.status.success(), "{}", stderr(&straight));
    let log = || {
        let text = std::fs::read_to_string(out_dir.join("train_log.jsonl")).expect("log");
        text.lines()
            .map(|l| {
                let mut entry: Value = serde_json::from_str(l).expect("log line");
                entry
                    .as_object_mut()
                    .expect("object")
                    .remove("examples_per_second");
                entry.to_string()
            })
            .collect::<Vec<_>>()
    };
    let expected = log();
    let steps: Vec<_> = expected
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["step"].clone())
        .collect();
    assert_eq!(steps, [3, 4, 6, 8]);

    // Interrupted after step 4: its later checkpoint and final model never happened.
    std::fs::remove_dir_all(out_dir.join("checkpoint-8")).expect("rm checkpoint-8");
    std::fs::remove_file(out_dir.join("model.safetensors")).expect("rm model");
    let mut resume = args.to_vec();
    let from = out_dir.join("checkpoint-4");
    resume.extend(["--resume-from", p(&from)]);
    let resumed = convbert(&resume, "");
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let summary: Value = serde_json::from_slice(&resumed.stdout).expect("summary");
    assert_eq!(summary["global_step"], 8);
    assert_eq!(log(), expected);
}
