//! End-to-end tests of `convbert tokenize` (the built binary).

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn convbert(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_convbert"))
        .arg("tokenize")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn convbert");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn fixture(rel: &str) -> String {
    format!("{}/../fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn arguments_with_embedded_vocab() {
    let o = convbert(&["Hello, world!", "UNwant\u{e9}d,running"], b"");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "101 7592 1010 2088 999 102\n101 18162 1010 2770 102\n"
    );
}

#[test]
fn stdin_lines_split_on_newline_only() {
    let o = convbert(
        &["--format", "tokens", "--no-special-tokens"],
        b"Hello [MASK] x\n\nsecond\rline\n",
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "hello [MASK] x\n\nsecond line\n");
}

#[test]
fn fast_and_standalone_agree() {
    let input = "The quick brown fox.\nCaf\u{e9} \u{4e2d}\u{6587} \u{41f}\u{440}\u{438}\u{432}\u{435}\u{442}\n";
    let slow = convbert(&["--format", "json"], input.as_bytes());
    let fast = convbert(&["--format", "json", "--fast"], input.as_bytes());
    assert_eq!(slow.status.code(), Some(0));
    assert_eq!(stdout(&slow), stdout(&fast));
    let first: serde_json::Value =
        serde_json::from_str(stdout(&slow).lines().next().expect("line")).expect("json");
    assert_eq!(first["offsets"][1], serde_json::json!([0, 3]));
    assert_eq!(first["tokens"][1], "the");
}

#[test]
fn pair_truncation_and_threads() {
    let dir = std::env::temp_dir().join(format!("convbert-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let a = dir.join("a.txt");
    let b = dir.join("b.txt");
    std::fs::write(&a, "one two three four five\nshort\n").expect("write");
    std::fs::write(&b, "six seven eight nine ten\nalso short\n").expect("write");
    let args = [
        "--input",
        a.to_str().expect("path"),
        "--pair-with",
        b.to_str().expect("path"),
        "--max-length",
        "8",
        "--threads",
        "2",
    ];
    let o = convbert(&args, b"");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    // longest_first on a tie removes from the second sequence first (slow semantics): 3 + 2.
    assert_eq!(lines[0], "101 2028 2048 2093 102 2416 2698 102");
    assert_eq!(lines[1], "101 2460 102 2036 2460 102");
    std::fs::write(&b, "only one line\n").expect("write");
    let o = convbert(&args, b"");
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn vocab_and_tokenizer_json_files() {
    let o = convbert(
        &[
            "--vocab",
            &fixture("tokenizer/small-vocab.txt"),
            "--format",
            "tokens",
            "unaffable",
        ],
        b"",
    );
    assert_eq!(stdout(&o), "[CLS] un ##aff ##able [SEP]\n");
    let o = convbert(
        &[
            "--tokenizer",
            &fixture("tokenizer/small-tokenizer.json"),
            "--fast",
            "--format",
            "ids",
            "hello world",
        ],
        b"",
    );
    assert_eq!(stdout(&o), "2 16 17 3\n");
}

#[test]
fn errors_have_exit_codes_and_one_line() {
    let o = convbert(&["--no-such-flag"], b"");
    assert_eq!(o.status.code(), Some(2));
    let o = convbert(&["--format", "xml", "x"], b"");
    assert_eq!(o.status.code(), Some(2));
    let o = convbert(&[], b"ok\n\xff\xfe\n");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("invalid UTF-8 on line 2"), "{err}");
    let o = convbert(&["--vocab", "/nonexistent/vocab.txt", "x"], b"");
    assert_eq!(o.status.code(), Some(1));
    let o = convbert(&["--threads", "0", "x"], b"");
    assert_eq!(o.status.code(), Some(2));
}
