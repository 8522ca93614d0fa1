//! `--dtype int8` as users run it: the docs/finetune sentiment classifier, trained as its README
//! says, labels the evaluation sentences as in fp32; every model command takes int8; int8 on
//! another device is a usage error (exit 2) before any model loads.

mod common;

use std::path::PathBuf;

use common::{convbert, documented_finetune_args, fixture, jsonl, stderr, tmp};
use serde_json::Value;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/finetune")
}

fn p(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// (text, gold label) of docs/finetune/eval.jsonl.
fn eval_rows() -> Vec<(String, String)> {
    std::fs::read_to_string(docs().join("eval.jsonl"))
        .expect("eval.jsonl")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON line");
            (
                v["text"].as_str().unwrap().into(),
                v["label"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn int8_classifier_labels_the_eval_set_as_fp32() {
    let out_dir = tmp("int8-sentiment");
    // docs/finetune/README.md's command.
    let mut args = documented_finetune_args(&out_dir);
    args.push("--overwrite-output-dir".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let trained = convbert(&args, b"");
    assert_eq!(trained.status.code(), Some(0), "{}", stderr(&trained));
    let rows = eval_rows();
    let input: String = rows.iter().map(|(t, _)| format!("{t}\n")).collect();
    let labels = |dtype: &str| -> Vec<String> {
        let out = convbert(
            &[
                "classify",
                "--model",
                p(&out_dir),
                "--dtype",
                dtype,
                "--threads",
                "2",
            ],
            input.as_bytes(),
        );
        assert_eq!(out.status.code(), Some(0), "{dtype}: {}", stderr(&out));
        jsonl(&out)
            .iter()
            .map(|v| v[0]["label"].as_str().expect("a label").to_owned())
            .collect()
    };
    let (fp32, int8) = (labels("f32"), labels("int8"));
    let accuracy = |labels: &[String]| {
        let right = labels
            .iter()
            .zip(&rows)
            .filter(|(l, (_, g))| *l == g)
            .count();
        right as f64 / rows.len() as f64
    };
    eprintln!(
        "eval accuracy: fp32 {}, int8 {}",
        accuracy(&fp32),
        accuracy(&int8)
    );
    assert_eq!(int8, fp32);
    assert!(accuracy(&fp32) >= 0.95, "the documented model reaches 1.0");
}

#[test]
fn every_model_command_takes_int8() {
    let mlm_in = tmp("int8-in.safetensors");
    let mlm_out = tmp("int8-out.safetensors");
    let tokenized = convbert(
        &[
            "tokenize",
            "--format",
            "safetensors",
            "-o",
            p(&mlm_in),
            "paris is the [MASK] .",
        ],
        b"",
    );
    assert_eq!(tokenized.status.code(), Some(0), "{}", stderr(&tokenized));
    let (seqcls, tokcls, qa) = (
        fixture("pipelines/models/seqcls"),
        fixture("pipelines/models/tokcls"),
        fixture("pipelines/models/qa"),
    );
    let runs: [&[&str]; 6] = [
        &["fill-mask", "paris is the [MASK] of france."],
        &["classify", "--model", seqcls.as_str(), "a fine day"],
        &[
            "ner",
            "--model",
            tokcls.as_str(),
            "John Smith lives in Paris.",
        ],
        &[
            "qa",
            "--model",
            qa.as_str(),
            "-q",
            "where?",
            "John lives in Paris.",
        ],
        &["embed", "a sentence"],
        &["forward", "--inputs", p(&mlm_in), "--output", p(&mlm_out)],
    ];
    for args in runs {
        let mut args = args.to_vec();
        args.extend(["--dtype", "int8"]);
        let out = convbert(&args, b"");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    assert!(mlm_out.is_file());
}

#[test]
fn int8_off_the_cpu_is_a_usage_error() {
    for args in [
        &[
            "classify",
            "--dtype",
            "int8",
            "--device",
            "cuda",
            "a fine day",
        ][..],
        &[
            "fill-mask",
            "--dtype",
            "int8",
            "--device",
            "cuda:0",
            "a [MASK] day",
        ],
        &[
            "serve", "--dtype", "int8", "--device", "cuda", "--port", "0",
        ],
    ] {
        let out = convbert(args, b"");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("int8") && err.contains("cpu"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
