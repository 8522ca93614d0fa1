//! `--truncation` / `--max-length` / `--truncation-side` of `convbert fill-mask`, `classify`, `ner` and `embed`, run
//! through the real binary: results equal HF's truncated pipelines (fixtures/pipelines/
//! truncation.json), a too long line without the flag is an error row naming it, a `--max-length`
//! below the special tokens is a usage error (exit 2), and `--stride` refuses truncation.

use serde_json::Value;
use tch::Tensor;

mod common;
use common::{convbert, fixture, jsonl, stderr, tmp};

const TOL: f64 = 1e-4;

/// The golden cases of `task` in fixtures/pipelines/truncation.json.
fn golden(task: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture("pipelines/truncation.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["task"] == task)
        .cloned()
        .collect()
}

/// More than the 512 positions of every fixture model, the [MASK] first.
fn long_text() -> String {
    format!(
        "[MASK] is here . {}",
        "the river is near the small house . ".repeat(70)
    )
}

/// `--max-length` of a golden case, or `--truncation` for the default length.
fn truncation_args(case: &Value) -> Vec<String> {
    match case["args"]["max_length"].as_u64() {
        Some(n) => vec!["--max-length".into(), n.to_string()],
        None => vec!["--truncation".into()],
    }
}

#[test]
fn fill_mask_truncation_matches_hf() {
    let model = fixture("pipelines/models/mlm");
    for case in golden("fill-mask") {
        let texts: Vec<&str> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut args = vec!["fill-mask", "--model", &model, "--top-k", "3"];
        let trunc = truncation_args(&case);
        args.extend(trunc.iter().map(String::as_str));
        let o = convbert(&args, texts.join("\n").as_bytes());
        assert!(o.status.success(), "{}", stderr(&o));
        let lines = jsonl(&o);
        assert_eq!(lines.len(), texts.len());
        for (i, line) in lines.iter().enumerate() {
            // One [MASK] per golden text: the CLI prints its candidates, HF's golden a list per mask.
            let hf = &case["outputs"][i][0];
            convbert_testing::assert_json_close(line, hf, TOL, &format!("fill line {}", i + 1));
        }
    }
}

#[test]
fn classify_truncation_matches_hf_for_texts_and_pairs() {
    let model = fixture("pipelines/models/seqcls");
    let cases = golden("text-classification");
    // HF's truncation_side "right" (the default) and "left" (`--truncation-side left`).
    assert_eq!(cases.len(), 8);
    for case in &cases {
        let stdin: Vec<String> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| match x {
                Value::String(s) => serde_json::json!({ "text": s }).to_string(),
                pair => pair.to_string(),
            })
            .collect();
        let mut args = vec!["classify", "--model", &model, "--jsonl", "--all"];
        let trunc = truncation_args(case);
        args.extend(trunc.iter().map(String::as_str));
        if case["args"]["side"] == "left" {
            args.extend(["--truncation-side", "left"]);
        }
        let o = convbert(&args, stdin.join("\n").as_bytes());
        assert!(o.status.success(), "{}", stderr(&o));
        let lines = Value::Array(jsonl(&o));
        convbert_testing::assert_json_close(&lines, &case["outputs"], TOL, "classify");
    }
}

#[test]
fn ner_max_length_matches_hf() {
    let model = fixture("pipelines/models/tokcls");
    for case in golden("token-classification") {
        let texts: Vec<&str> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let strategy = case["args"]["aggregation_strategy"].as_str().unwrap();
        let mut args = vec!["ner", "--model", &model, "--aggregation", strategy];
        let trunc = truncation_args(&case);
        args.extend(trunc.iter().map(String::as_str));
        let o = convbert(&args, texts.join("\n").as_bytes());
        assert!(o.status.success(), "{}", stderr(&o));
        let lines = Value::Array(jsonl(&o));
        convbert_testing::assert_json_close(&lines, &case["outputs"], TOL, "ner");
    }
}

#[test]
fn a_too_long_line_names_the_flag_and_the_others_are_answered() {
    let long = long_text();
    let stdin = format!("{long}\nthe [MASK] is short.\n");
    for command in ["fill-mask", "classify", "ner"] {
        let o = convbert(&[command], stdin.as_bytes());
        assert_eq!(o.status.code(), Some(1), "{command}: {}", stderr(&o));
        let lines = jsonl(&o);
        assert_eq!(lines.len(), 2, "{command}");
        let error = lines[0]["error"].as_str().unwrap();
        assert!(
            error.contains("exceeds max_position_embeddings = 512 (use --truncation)"),
            "{command}: {error}"
        );
        assert!(stderr(&o).contains("line 1:"), "{command}");
        assert!(lines[1].get("error").is_none(), "{command}: {}", lines[1]);

        let o = convbert(&[command, "--truncation"], stdin.as_bytes());
        assert!(o.status.success(), "{command}: {}", stderr(&o));
        assert!(
            jsonl(&o).iter().all(|l| l.get("error").is_none()),
            "{command}"
        );
    }
}

#[test]
fn embed_truncates_to_max_length() {
    let out = tmp("embed.safetensors");
    let out_s = out.to_str().unwrap();
    let long = long_text();
    let o = convbert(&["embed", "-o", out_s, &long, "short"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("line 1: sequence of"), "{}", stderr(&o));
    assert!(stderr(&o).contains("(use --truncation)"), "{}", stderr(&o));

    let args = ["embed", "--pooling", "none", "-o", out_s, &long, "short"];
    let o = convbert(&[&args[..], &["--max-length", "9"]].concat(), b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let tensors = Tensor::read_safetensors(&out).unwrap();
    let shape = |name: &str| {
        let (_, t) = tensors.iter().find(|(n, _)| n == name).unwrap();
        t.size()
    };
    assert_eq!(shape("last_hidden_state.0")[0], 9);
    assert_eq!(shape("last_hidden_state.1")[0], 3); // [CLS] short [SEP]: not padded

    let o = convbert(&[&args[..], &["--truncation"]].concat(), b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let tensors = Tensor::read_safetensors(&out).unwrap();
    let (_, t) = tensors
        .iter()
        .find(|(n, _)| n == "last_hidden_state.0")
        .unwrap();
    assert_eq!(t.size()[0], 512);
}

#[test]
fn max_length_below_the_special_tokens_is_a_usage_error() {
    let out = tmp("unused.safetensors");
    for args in [
        vec!["fill-mask", "--max-length", "1", "a [MASK]"],
        vec!["classify", "--max-length", "1", "a"],
        vec!["ner", "--max-length", "0", "a"],
        vec![
            "embed",
            "--max-length",
            "1",
            "-o",
            out.to_str().unwrap(),
            "a",
        ],
    ] {
        let o = convbert(&args, b"");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("--max-length"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    assert!(!out.exists());

    // A pair needs 3 ([CLS] a [SEP] b [SEP]): that line fails, the single text is answered.
    let stdin = "{\"text\": \"a b\", \"text_pair\": \"c\"}\n{\"text\": \"a b\"}\n";
    let o = convbert(
        &["classify", "--jsonl", "--max-length", "2"],
        stdin.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines = jsonl(&o);
    let error = lines[0]["error"].as_str().unwrap();
    assert!(
        error.contains("--max-length 2 is less than the 3 special tokens"),
        "{error}"
    );
    assert!(lines[1].get("error").is_none());
}

#[test]
fn stride_and_truncation_are_exclusive() {
    for flag in [&["--truncation"][..], &["--max-length", "8"][..]] {
        let args = [
            &["ner", "--aggregation", "simple", "--stride", "4"][..],
            flag,
            &["hi"],
        ]
        .concat();
        let o = convbert(&args, b"");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    }
}

#[test]
fn help_documents_the_flags() {
    for command in ["fill-mask", "classify", "ner", "embed"] {
        let o = convbert(&[command, "--help"], b"");
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(help.contains("--truncation"), "{command}");
        assert!(help.contains("--max-length <N>"), "{command}");
        assert!(help.contains("implies --truncation"), "{command}");
        assert!(help.contains("--truncation-side <SIDE>"), "{command}");
    }
}
