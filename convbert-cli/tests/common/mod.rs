//! What the CLI test binaries share: running `convbert` and reading what it wrote.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// The path of `p` under the repository's fixtures/.
pub fn fixture(p: &str) -> String {
    format!("{}/../fixtures/{p}", env!("CARGO_MANIFEST_DIR"))
}

/// `convbert args` with piped stdin, stdout and stderr.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_convbert"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn convbert")
}

/// `convbert args` fed `stdin`, run to the end.
pub fn convbert(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn(args);
    let mut input = child.stdin.take().expect("stdin");
    // The command may fail before reading its input: a closed pipe is fine here.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Stdout as JSON Lines.
pub fn jsonl(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// `name` in a directory of this test process's own.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convbert-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join(name)
}

/// docs/finetune/README.md's training command (with `--threads 1 --no-progress`), writing to `out`.
pub fn documented_finetune_args(out: &Path) -> Vec<String> {
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/finetune");
    let file = |name: &str| docs.join(name).to_string_lossy().into_owned();
    let mut args: Vec<String> = ["train", "--task", "text-classification", "--config"]
        .map(String::from)
        .into();
    args.push(file("config.json"));
    args.push("--train".into());
    args.push(file("train.jsonl"));
    args.push("--eval".into());
    args.push(file("eval.jsonl"));
    args.push("--output".into());
    args.push(out.to_string_lossy().into_owned());
    let rest = [
        "--epochs",
        "12",
        "--batch-size",
        "16",
        "--learning-rate",
        "3e-3",
        "--warmup-ratio",
        "0.1",
        "--logging-steps",
        "4",
        "--eval-steps",
        "8",
        "--save-total-limit",
        "1",
        "--seed",
        "42",
        "--threads",
        "1",
        "--no-progress",
    ];
    args.extend(rest.map(String::from));
    args
}
