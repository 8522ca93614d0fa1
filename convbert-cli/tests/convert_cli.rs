//! `convbert convert` and TensorFlow checkpoints through the CLI: the shipped checkpoint becomes
//! a TensorFlow-only directory that every command runs on with the same results, converts back
//! to safetensors losslessly, and TF1 checkpoints convert too. Refusals write nothing.

mod common;

use std::path::Path;

use common::{convbert, fixture, jsonl, stderr, tmp};
use serde_json::Value;

fn run_ok(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let o = convbert(args, stdin);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `convbert convert --model MODEL --format FORMAT --output OUT`.
fn convert(model: &str, format: &str, out: &Path) -> std::process::Output {
    convbert(
        &[
            "convert",
            "--model",
            model,
            "--format",
            format,
            "--output",
            p(out),
        ],
        b"",
    )
}

/// [`convert`], which must succeed.
fn convert_ok(model: &str, format: &str, out: &Path) -> std::process::Output {
    let o = convert(model, format, out);
    assert!(o.status.success(), "convert {model}: {}", stderr(&o));
    o
}

#[test]
fn a_tensorflow_only_checkpoint_gives_the_same_results_as_the_original() {
    let tf = tmp("default-tf");
    let o = convert_ok(&fixture("default-model"), "tf", &tf);
    let summary = &jsonl(&o)[0];
    assert_eq!(summary["class"], "ConvBertForMaskedLM", "{summary}");
    assert_eq!(summary["weights"], "tf_model.h5");
    let mut files: Vec<String> = std::fs::read_dir(&tf)
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "config.json",
            "special_tokens_map.json",
            "tf_model.h5",
            "tokenizer_config.json",
            "vocab.txt"
        ]
    );

    let text = b"paris is the [MASK] of france.\nthe [MASK] sat on the mat.\n";
    let want = run_ok(&["fill-mask", "--model", &fixture("default-model")], text);
    let got = run_ok(&["fill-mask", "--model", p(&tf)], text);
    let (want, got) = (jsonl(&want), jsonl(&got));
    assert_eq!(want.len(), 2);
    for (w, g) in want.iter().zip(&got) {
        let tokens = |v: &Value| -> Vec<String> {
            v.as_array()
                .expect("list")
                .iter()
                .map(|c| c["token_str"].to_string())
                .collect()
        };
        assert_eq!(tokens(w), tokens(g), "{w} vs {g}");
        for (a, b) in w
            .as_array()
            .expect("list")
            .iter()
            .zip(g.as_array().expect("list"))
        {
            let (a, b) = (
                a["score"].as_f64().expect("score"),
                b["score"].as_f64().expect("score"),
            );
            // The original is fp16 on disk; both load it as the same fp32 numbers.
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }

    // The same directory as a model id of the local HF cache.
    let cache = tmp("hf-cache");
    let snapshot = cache.join("models--someone--convbert-tf/snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    std::fs::create_dir_all(cache.join("models--someone--convbert-tf/refs")).expect("refs");
    std::fs::write(
        cache.join("models--someone--convbert-tf/refs/main"),
        "0123abcd",
    )
    .expect("ref");
    for f in &files {
        std::fs::copy(tf.join(f), snapshot.join(f)).expect("copy");
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_convbert"))
        .args(["fill-mask", "--model", "someone/convbert-tf"])
        .env("HF_HUB_CACHE", &cache)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text).expect("stdin");
    let cached = child.wait_with_output().expect("wait");
    assert!(cached.status.success(), "{}", stderr(&cached));
    assert_eq!(jsonl(&cached), got);

    // Back to safetensors: the very same tensors as reading the TF file.
    let back = tmp("default-tf-back");
    convert_ok(p(&tf), "safetensors", &back);
    let again = run_ok(&["fill-mask", "--model", p(&back)], text);
    assert_eq!(jsonl(&again), got);
}

#[test]
fn a_tf1_checkpoint_converts_given_its_index_file() {
    let out = tmp("tf1-converted");
    let index = fixture("tf/tf1/checkpoint/model.ckpt-7.index");
    let o = convert_ok(&index, "safetensors", &out);
    let summary = &jsonl(&o)[0];
    assert_eq!(summary["class"], "ConvBertModel");
    assert!(
        summary["read"]
            .as_str()
            .expect("read")
            .ends_with("model.ckpt-7.index"),
        "{summary}"
    );
    assert!(
        summary["ignored"].as_u64().expect("ignored") > 0,
        "{summary}"
    );
    assert!(out.join("model.safetensors").is_file() && out.join("config.json").is_file());
}

#[test]
fn refusals_name_the_reason_and_write_nothing() {
    // A config TensorFlow cannot build (head_ratio 4 over 8 heads: TF heads 4 wide, PyTorch 8).
    let src = tmp("tf-incompatible");
    std::fs::create_dir_all(&src).expect("dir");
    let cfg = r#"{"model_type": "convbert", "vocab_size": 100, "hidden_size": 32, "embedding_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 8, "head_ratio": 4, "intermediate_size": 40,
        "max_position_embeddings": 64}"#;
    std::fs::write(src.join("config.json"), cfg).expect("config");
    let out = tmp("tf-incompatible-out");
    let o = convert(p(&src), "tf", &out);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("TensorFlow"), "{}", stderr(&o));
    assert!(!out.exists());

    // A non-empty output directory is never overwritten.
    let busy = tmp("busy-out");
    std::fs::create_dir_all(&busy).expect("dir");
    std::fs::write(busy.join("keep.txt"), "mine").expect("write");
    let o = convert(&fixture("default-model"), "tf", &busy);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(busy.join("keep.txt")).expect("kept"),
        "mine"
    );

    // A truncated tf_model.h5 is an error naming the file, and leaves no output.
    let broken = tmp("truncated-h5");
    std::fs::create_dir_all(&broken).expect("dir");
    let h5 = std::fs::read(fixture("tf/base/model/checkpoint/tf_model.h5")).expect("h5");
    std::fs::write(broken.join("tf_model.h5"), &h5[..h5.len() / 2]).expect("write");
    std::fs::copy(
        fixture("tf/base/model/checkpoint/config.json"),
        broken.join("config.json"),
    )
    .expect("config");
    let out = tmp("truncated-out");
    let o = convert(p(&broken), "safetensors", &out);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("tf_model.h5"), "{}", stderr(&o));
    assert!(!out.exists());
}
