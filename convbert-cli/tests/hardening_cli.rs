//! The `convbert` binary under hostile conditions: outputs replaced whole and checked before any
//! work, invalid UTF-8 lines failing alone, input read as a stream, a stdout closed early, and a
//! long text pair truncated in bounded time.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tch::Tensor;

mod common;
use common::{convbert, fixture, jsonl, spawn, stderr};

/// A fresh empty directory for one test.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("convbert-hardening-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// 1. Outputs: checked before the model loads, replaced whole, no temporary file left behind.

#[test]
fn unwritable_output_fails_before_the_model_loads() {
    let d = dir("unwritable");
    let missing = d.join("no-such-dir").join("out.safetensors");
    let not_a_dir = d.join("file");
    std::fs::write(&not_a_dir, "x").expect("write");
    let under_file = not_a_dir.join("out.jsonl");
    // A model that does not exist: had it been loaded first, its error would be the one shown.
    let model = d.join("no-such-model");
    let (m, missing, under_file, d_) = (s(&model), s(&missing), s(&under_file), s(&d));
    let cases: [(Vec<&str>, &str); 9] = [
        (vec!["embed", "--model", m, "-o", missing, "x"], missing),
        (
            vec!["embed", "--model", m, "-o", under_file, "x"],
            under_file,
        ),
        (vec!["embed", "--model", m, "-o", d_, "x"], d_),
        (
            vec!["forward", "--model", m, "--inputs", m, "--output", missing],
            missing,
        ),
        (vec!["fill-mask", "--model", m, "-o", missing, "x"], missing),
        (
            vec!["classify", "--model", m, "-o", under_file, "x"],
            under_file,
        ),
        (vec!["ner", "--model", m, "-o", missing, "x"], missing),
        (
            vec!["tokenize", "--format", "safetensors", "-o", under_file, "x"],
            under_file,
        ),
        (
            vec!["qa", "--model", m, "-q", "why?", "-o", missing, "x"],
            missing,
        ),
    ];
    for (args, out) in cases {
        let o = convbert(&args, b"");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("error: cannot write {out}: ")),
            "{args:?}: {err}"
        );
        assert!(!err.contains("no-such-model"), "{args:?}: {err}");
    }
    assert_eq!(entries(&d), ["file"]);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn existing_outputs_are_replaced_whole_without_temporary_files() {
    let d = dir("replace");
    let emb = d.join("emb.safetensors");
    let jl = d.join("out.jsonl");
    std::fs::write(&emb, "an old file, longer than nothing").expect("write");
    std::fs::write(&jl, "old\n".repeat(1000)).expect("write");
    let o = convbert(&["embed", "-o", s(&emb), "a", "b c"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let t = Tensor::read_safetensors(&emb).expect("a whole safetensors file");
    let rows = t
        .iter()
        .find(|(n, _)| n == "embeddings")
        .expect("embeddings");
    assert_eq!(rows.1.size()[0], 2);
    let o = convbert(&["fill-mask", "-o", s(&jl), "a [MASK] b"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let text = std::fs::read_to_string(&jl).expect("read");
    assert_eq!(text.lines().count(), 1, "{text}");
    serde_json::from_str::<Value>(text.trim()).expect("JSON");
    assert_eq!(entries(&d), ["emb.safetensors", "out.jsonl"]);

    // A run that fails after the output was opened leaves the old file as it was.
    let inputs = d.join("in.safetensors");
    Tensor::write_safetensors(&[("bogus", Tensor::from_slice(&[1i64]))], &inputs).expect("write");
    let before = std::fs::read(&emb).expect("read");
    let o = convbert(
        &["forward", "--inputs", s(&inputs), "--output", s(&emb)],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read(&emb).expect("read"), before);
    assert_eq!(
        entries(&d),
        ["emb.safetensors", "in.safetensors", "out.jsonl"]
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn killed_mid_run_leaves_the_old_output_whole() {
    let d = dir("kill");
    let out = d.join("out.jsonl");
    std::fs::write(&out, "{\"old\": true}\n").expect("write");
    let mut child = spawn(&["fill-mask", "-o", s(&out)]);
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all("a [MASK] b\n".repeat(300).as_bytes())
        .expect("write");
    // Results are being written to a temporary file while the input is still open.
    let t0 = Instant::now();
    let written = || {
        entries(&d)
            .iter()
            .filter(|n| n.ends_with(".tmp"))
            .any(|n| std::fs::metadata(d.join(n)).is_ok_and(|m| m.len() > 0))
    };
    while !written() {
        assert!(t0.elapsed() < Duration::from_secs(60), "no temporary file");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    drop(input);
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "{\"old\": true}\n"
    );
    std::fs::remove_dir_all(&d).ok();
}

// 2. Invalid UTF-8 fails its line only; a BOM is accepted; input is streamed.

const BAD: &[u8] =
    b"paris is the [MASK] of france.\n\xff\xfe [MASK]\n\xef\xbb\xbfthe [MASK] is blue.\n";

#[test]
fn invalid_utf8_fails_its_line_only_in_every_jsonl_subcommand() {
    let cases: [(&str, Vec<&str>); 5] = [
        ("fill-mask", vec![]),
        ("embed", vec![]),
        ("classify", vec!["--model", "pipelines/models/seqcls"]),
        ("ner", vec!["--model", "pipelines/models/tokcls"]),
        (
            "qa",
            vec!["--model", "pipelines/models/qa", "--question", "what?"],
        ),
    ];
    for (cmd, extra) in cases {
        let extra: Vec<String> = extra
            .iter()
            .map(|a| {
                if a.starts_with("pipelines/") {
                    fixture(a)
                } else {
                    a.to_string()
                }
            })
            .collect();
        let mut args = vec![cmd];
        args.extend(extra.iter().map(String::as_str));
        let o = convbert(&args, BAD);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        let rows = jsonl(&o);
        assert_eq!(rows.len(), 3, "{cmd}");
        assert_eq!(rows[1]["line"], 2, "{cmd}");
        assert!(rows[1]["error"]
            .as_str()
            .expect("error")
            .contains("invalid UTF-8"));
        assert!(rows[0].get("error").is_none() && rows[2].get("error").is_none());
        assert!(err.contains("line 2: stdin: invalid UTF-8"), "{cmd}: {err}");
    }
}

#[test]
fn invalid_utf8_fails_its_line_only_in_embed_and_tokenize() {
    let d = dir("utf8");
    let out = d.join("e.safetensors");
    let o = convbert(&["embed", "-o", s(&out)], BAD);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 2: stdin: invalid UTF-8"));
    let t = Tensor::read_safetensors(&out).expect("read");
    let numbers = &t
        .iter()
        .find(|(n, _)| n == "line_numbers")
        .expect("numbers")
        .1;
    assert_eq!(Vec::<i64>::try_from(numbers).expect("vec"), [1, 3]);
    std::fs::remove_dir_all(&d).ok();

    let o = convbert(&["tokenize", "--format", "json"], BAD);
    assert_eq!(o.status.code(), Some(1));
    let rows = jsonl(&o);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["line"], 2);
    assert!(rows[1]["error"]
        .as_str()
        .expect("error")
        .contains("invalid UTF-8"));
    // The BOM of line 1 would be stripped; on line 3 it is a zero-width character, dropped.
    assert_eq!(rows[2]["tokens"][1], "the");
    let o = convbert(&["tokenize"], BAD);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8(o.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    // Output line N stays input line N: the bad line is an empty line.
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1], "");
    assert!(lines[0].starts_with("101 ") && lines[2].starts_with("101 "));
}

#[test]
fn a_byte_order_mark_on_line_one_is_accepted() {
    // Character offsets do not count it.
    let plain = convbert(&["tokenize", "--format", "json"], b"hello world\n");
    let bom = convbert(
        &["tokenize", "--format", "json"],
        b"\xef\xbb\xbfhello world\n",
    );
    assert_eq!(bom.status.code(), Some(0));
    assert_eq!(bom.stdout, plain.stdout);
    // A JSON line after it parses.
    let line = br#"{"text": "paris is the [MASK] of france."}"#;
    let o = convbert(
        &["fill-mask", "--jsonl"],
        &[b"\xef\xbb\xbf", &line[..], b"\n"].concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let p = convbert(&["fill-mask", "--jsonl"], &[&line[..], b"\n"].concat());
    assert_eq!(o.stdout, p.stdout);
}

/// Reads one output line while stdin is still open: results stream out before the input ends.
fn first_line_before_eof(args: &[&str], line: &str, lines: usize) {
    let mut child = spawn(args);
    let mut input = child.stdin.take().expect("stdin");
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let text = line.repeat(lines);
    // A writer of its own: the child's output may fill its pipe before it reads all the input.
    let writer = std::thread::spawn(move || {
        input.write_all(text.as_bytes()).expect("write");
        input.flush().expect("flush");
        wait.recv().ok();
    });
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read");
    assert!(!first.trim().is_empty(), "{args:?}: no output before EOF");
    done.send(()).expect("send");
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read");
    writer.join().expect("writer");
    assert!(child.wait().expect("wait").success(), "{args:?}");
    assert_eq!(rest.lines().count() + 1, lines, "{args:?}");
}

#[test]
fn input_is_streamed() {
    first_line_before_eof(&["tokenize"], "hello world\n", 20_000);
    first_line_before_eof(&["fill-mask"], "a [MASK] b\n", 400);
}

// 3. A closed stdout ends quietly.

#[test]
fn closed_stdout_ends_quietly() {
    let d = dir("pipe");
    let input = d.join("in.txt");
    std::fs::write(&input, "paris is the [MASK] of france.\n".repeat(3000)).expect("write");
    let i = s(&input);
    let cases: Vec<Vec<&str>> = vec![
        vec!["tokenize", "--input", i],
        vec!["tokenize", "--format", "json", "--fast", "--input", i],
        vec!["fill-mask", "--input", i],
        vec!["embed", "--input", i],
        vec!["classify", "--input", i],
        vec!["ner", "--input", i],
        vec!["qa", "--question", "what?", "--input", i],
        vec![
            "bench",
            "--shape",
            "small",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--seq-len",
            "8",
            "--batch-size",
            "1",
        ],
    ];
    for args in cases {
        let mut child = spawn(&args);
        drop(child.stdin.take());
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        if args[0] != "bench" {
            // As `| head -1` does: read one line, then close the pipe (bench: before its output).
            let mut first = String::new();
            out.read_line(&mut first).expect("read");
        }
        drop(out);
        let o = child.wait_with_output().expect("wait");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("error") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn closed_pipe_of_stdout_and_stderr_ends_quietly() {
    // `2>&1 | head -1` with per-line errors: the messages go to the closed pipe too.
    let d = dir("pipe2");
    let input = d.join("in.txt");
    std::fs::write(&input, "no mask here\n".repeat(3000)).expect("write");
    let o = Command::new("bash")
        .args([
            "-c",
            r#""$0" fill-mask --input "$1" 2>&1 | head -1 >/dev/null; echo "${PIPESTATUS[0]}""#,
            env!("CARGO_BIN_EXE_convbert"),
            s(&input),
        ])
        .output()
        .expect("bash");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "0",
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&d).ok();
}

// 4. A long pair truncated: bounded time and memory, the slow tokenizer's result.

#[test]
fn fast_truncation_of_a_long_pair_is_bounded() {
    let d = dir("pair");
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
    ];
    let text = |k: usize| -> String {
        (0..800)
            .map(|i| words[(i * 3 + k) % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (a, b) = (d.join("a.txt"), d.join("b.txt"));
    std::fs::write(&a, format!("{}\n{}\n", text(0), text(1))).expect("write");
    std::fs::write(&b, format!("{}\n{}\n", text(2), text(5))).expect("write");
    // max_length 9: 6 tokens for the texts, an even split where slow and fast agree.
    let args = [
        "tokenize",
        "--input",
        s(&a),
        "--pair-with",
        s(&b),
        "--max-length",
        "9",
    ];
    let slow = convbert(&args, b"");
    let t0 = Instant::now();
    let mut fast_args = args.to_vec();
    fast_args.push("--fast");
    let fast = convbert(&fast_args, b"");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert_eq!(fast.status.code(), Some(0), "{}", stderr(&fast));
    assert_eq!(slow.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&fast.stdout),
        String::from_utf8_lossy(&slow.stdout)
    );
    for line in String::from_utf8_lossy(&fast.stdout).lines() {
        assert_eq!(line.split(' ').count(), 9, "{line}");
    }
    // JSON rows carry no overflow windows unless --stride asks for them.
    fast_args.extend(["--format", "json"]);
    let o = convbert(&fast_args, b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(jsonl(&o).iter().all(|r| r.get("overflowing").is_none()));
    std::fs::remove_dir_all(&d).ok();
}
