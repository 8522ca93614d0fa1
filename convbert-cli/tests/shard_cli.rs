//! Sharded batch inference: `--shard I/N` on every line-oriented command, merged back by
//! `convbert merge` into exactly the unsharded output; `--shard auto` from the Kubernetes and
//! Slurm variables; bad `--shard` values as usage errors; and the merge refusing shard sets
//! that are not whole.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::fixture;

/// The scheduler variables `--shard auto` reads: removed from every run (the tests may run under
/// Slurm), set only where a test says.
const SCHEDULER_VARS: [&str; 6] = [
    "JOB_COMPLETION_INDEX",
    "JOB_COMPLETIONS",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
];

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convbert"));
    cmd.args(args);
    for var in SCHEDULER_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .output()
        .expect("run convbert")
}

fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Lines for every command: masks for fill-mask, a line that is not UTF-8 (an error row), an
/// empty line, CRLF.
fn input(dir: &Path) -> PathBuf {
    let path = dir.join("in.txt");
    let mut bytes = Vec::new();
    for (i, line) in [
        "paris is the [MASK] of france.",
        "John Smith lives in Paris.",
        "the [MASK] sat on the mat.",
        "",
        "Grüße aus 東京, naïve café [MASK].",
        "a [MASK] and another [MASK] here.",
        "He works at the museum near the river.",
    ]
    .iter()
    .enumerate()
    {
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(if i == 1 { b"\r\n" } else { b"\n" });
        if i == 3 {
            bytes.extend_from_slice(b"bad \xff [MASK] line\n");
        }
    }
    std::fs::write(&path, bytes).expect("write input");
    path
}

/// The command's output file for `args` (its stdout, or its `-o` file when `out` says where).
fn output_of(args: &[&str], out: Option<&Path>) -> Vec<u8> {
    let o = run(args);
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "{args:?}: {}",
        err(&o)
    );
    match out {
        Some(p) => std::fs::read(p).expect("read output"),
        None => o.stdout,
    }
}

/// Runs `args` unsharded and as `count` shards (each to its own file), merges the shards (in
/// reverse order) and checks the merge is the unsharded output byte for byte.
fn check_merge(dir: &Path, name: &str, args: &[&str], count: usize, to_file: bool) {
    let file = |tag: &str| dir.join(format!("{name}-{tag}"));
    let with_out = |extra: &[&str], out: &Path| -> Vec<u8> {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(extra);
        if to_file {
            a.extend_from_slice(&["-o", s(out)]);
            output_of(&a, Some(out))
        } else {
            let bytes = output_of(&a, None);
            std::fs::write(out, &bytes).expect("write shard");
            bytes
        }
    };
    let whole = with_out(&[], &file("whole"));
    let mut shards = Vec::new();
    for i in (0..count).rev() {
        let path = file(&format!("{i}"));
        let spec = format!("{i}/{count}");
        with_out(&["--shard", &spec], &path);
        shards.push(path);
    }
    let merged = file("merged");
    let mut merge = vec!["merge", "-o", s(&merged)];
    merge.extend(shards.iter().map(|p| s(p)));
    let o = run(&merge);
    assert_eq!(o.status.code(), Some(0), "{name}: {}", err(&o));
    let merged = std::fs::read(&merged).expect("merged");
    assert!(!whole.is_empty(), "{name}");
    assert!(
        merged == whole,
        "{name}: merged shards differ from the unsharded run:\n{}\n---\n{}",
        String::from_utf8_lossy(&merged),
        String::from_utf8_lossy(&whole)
    );
}

// Model outputs depend on which lines share a batch (libtorch rounds differently for different
// batch shapes), so the byte-for-byte checks run one line per batch; see
// `embed_with_default_batches_agrees_to_rounding` for the default.
#[test]
fn every_command_merges_to_the_unsharded_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let inp = input(dir);
    let models = fixture("pipelines/models");
    let (seqcls, tokcls, qa) = (
        format!("{models}/seqcls"),
        format!("{models}/tokcls"),
        format!("{models}/qa"),
    );
    let i = s(&inp);
    let one = ["--batch-size", "1"];
    let cases: Vec<(&str, Vec<&str>, bool)> = vec![
        ("tokenize-ids", vec!["tokenize", "-i", i], false),
        (
            "tokenize-tokens",
            vec!["tokenize", "--format", "tokens", "--input", i],
            false,
        ),
        (
            "tokenize-json",
            vec!["tokenize", "--format", "json", "-i", i],
            false,
        ),
        (
            "tokenize-pairs",
            vec!["tokenize", "--format", "json", "-i", i, "--pair-with", i],
            false,
        ),
        (
            "tokenize-args",
            vec!["tokenize", "a b", "c", "d e f"],
            false,
        ),
        (
            "fill-mask",
            [&["fill-mask", "-i", i][..], &one].concat(),
            false,
        ),
        (
            "classify",
            [
                &["classify", "--model", &seqcls, "--all", "-i", i][..],
                &one,
            ]
            .concat(),
            true,
        ),
        (
            "ner",
            [
                &[
                    "ner",
                    "--model",
                    &tokcls,
                    "--aggregation",
                    "simple",
                    "-i",
                    i,
                ][..],
                &one,
            ]
            .concat(),
            false,
        ),
        (
            "qa",
            [&["qa", "--model", &qa, "-q", "where?", "-i", i][..], &one].concat(),
            false,
        ),
        (
            "embed-jsonl",
            [&["embed", "-i", i][..], &one].concat(),
            false,
        ),
        (
            "embed-safetensors",
            [&["embed", "-i", i][..], &one].concat(),
            true,
        ),
        (
            "embed-tokens",
            [&["embed", "--pooling", "none", "-i", i][..], &one].concat(),
            true,
        ),
        (
            "embed-stdout",
            [
                &[
                    "embed",
                    "--format",
                    "safetensors",
                    "--pooling",
                    "cls",
                    "-i",
                    i,
                ][..],
                &one,
            ]
            .concat(),
            false,
        ),
    ];
    for (name, args, to_file) in &cases {
        check_merge(dir, name, args, 3, *to_file);
    }
    // More shards than lines: the last ones hold only their footers.
    check_merge(dir, "tokenize-many", &["tokenize", "-i", i], 11, false);
    check_merge(
        dir,
        "embed-many",
        &["embed", "-i", i, "--batch-size", "1"],
        11,
        false,
    );
}

#[test]
fn shard_rows_keep_their_line_numbers() {
    let o = run(&["tokenize", "--shard", "1/2", "a", "b", "c", "d", "e"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "{\"line\":2,\"text\":\"101 1038 102\"}\n\
         {\"line\":4,\"text\":\"101 1040 102\"}\n\
         {\"shard\":1,\"shards\":2,\"lines\":5}\n"
    );
    let o = run(&["tokenize", "--format", "json", "--shard", "0/2", "a"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.starts_with("{\"line\":1,\"result\":{\"ids\":[101,1037,102]"),
        "{text}"
    );
    assert!(
        text.ends_with("}}\n{\"shard\":0,\"shards\":2,\"lines\":1}\n"),
        "{text}"
    );
    // Unsharded, nothing changes.
    let o = run(&["tokenize", "a", "b"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "101 1037 102\n101 1038 102\n"
    );
}

#[test]
fn embed_with_default_batches_agrees_to_rounding() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inp = input(tmp.path());
    let i = s(&inp);
    let whole = output_of(&["embed", "-i", i], None);
    let mut shards = Vec::new();
    for k in 0..2 {
        let path = tmp.path().join(format!("{k}.jsonl"));
        std::fs::write(
            &path,
            output_of(&["embed", "-i", i, "--shard", &format!("{k}/2")], None),
        )
        .expect("write");
        shards.push(path);
    }
    let o = run(&["merge", s(&shards[0]), s(&shards[1])]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let rows = |b: &[u8]| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(b)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    };
    let (merged, whole) = (rows(&o.stdout), rows(&whole));
    assert_eq!(merged.len(), whole.len());
    for (m, w) in merged.iter().zip(&whole) {
        match (m.as_array(), w.as_array()) {
            (Some(m), Some(w)) => {
                assert_eq!(m.len(), w.len());
                for (a, b) in m.iter().zip(w) {
                    let (a, b) = (a.as_f64().expect("f"), b.as_f64().expect("f"));
                    assert!((a - b).abs() < 1e-5, "{a} {b}");
                }
            }
            _ => assert_eq!(m, w),
        }
    }
}

#[test]
fn bad_shard_values_are_usage_errors() {
    for bad in ["2/2", "1/0", "x", "1", "-1/2", "1/2/3", "auto/0", ""] {
        for cmd in [&["tokenize", "a"][..], &["embed", "a"]] {
            let flag = format!("--shard={bad}");
            let mut args = cmd.to_vec();
            args.push(&flag);
            let o = run(&args);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
            assert!(err(&o).contains("--shard"), "{args:?}: {}", err(&o));
        }
    }
    // Its padded rows cannot be joined.
    let o = run(&[
        "tokenize",
        "--format",
        "safetensors",
        "-o",
        "/tmp/x.st",
        "--shard",
        "0/2",
        "a",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--format safetensors"), "{}", err(&o));
}

#[test]
fn auto_reads_the_scheduler_environment() {
    let lines = ["a", "b", "c", "d", "e", "f", "g"];
    let tokenize = |spec: &str, env: &[(&str, &str)]| {
        let mut args = vec!["tokenize", "--shard", spec];
        args.extend(lines);
        run_env(&args, env)
    };
    let expect = |spec: &str| tokenize(spec, &[]).stdout;
    for (spec, env, same_as) in [
        (
            "auto",
            &[("JOB_COMPLETION_INDEX", "1"), ("JOB_COMPLETIONS", "3")][..],
            "1/3",
        ),
        ("auto/4", &[("JOB_COMPLETION_INDEX", "3")], "3/4"),
        (
            "auto",
            &[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
            "2/3",
        ),
        (
            "auto",
            &[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
            "2/3",
        ),
        ("auto/2", &[("SLURM_ARRAY_TASK_ID", "0")], "0/2"),
    ] {
        let o = tokenize(spec, env);
        assert_eq!(o.status.code(), Some(0), "{env:?}: {}", err(&o));
        assert_eq!(o.stdout, expect(same_as), "{env:?}");
    }
    for (env, says) in [
        (&[][..], "neither JOB_COMPLETION_INDEX"),
        (&[("JOB_COMPLETION_INDEX", "1")], "JOB_COMPLETIONS"),
        (
            &[("JOB_COMPLETION_INDEX", "3"), ("JOB_COMPLETIONS", "3")],
            "makes shard 3, but there are 3 shards",
        ),
        (
            &[("JOB_COMPLETION_INDEX", "one"), ("JOB_COMPLETIONS", "3")],
            "not a whole number",
        ),
        (&[("SLURM_ARRAY_TASK_ID", "2")], "SLURM_ARRAY_TASK_COUNT"),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            "makes shard 5",
        ),
    ] {
        let o = tokenize("auto", env);
        assert_eq!(o.status.code(), Some(2), "{env:?}: {}", err(&o));
        assert!(err(&o).contains(says), "{env:?}: {}", err(&o));
        assert!(o.stdout.is_empty());
    }
    // A model command fails before its model loads.
    let o = run_env(&["embed", "--shard", "auto", "a"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("neither JOB_COMPLETION_INDEX"),
        "{}",
        err(&o)
    );
    let o = run_env(
        &["embed", "--shard", "auto", "a", "b", "c"],
        &[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.starts_with("{\"line\":2,\"result\":["), "{text}");
    assert!(
        text.ends_with("{\"shard\":1,\"shards\":2,\"lines\":3}\n"),
        "{text}"
    );
}

/// `tokenize` of 10 lines given as arguments, with `extra` arguments.
fn tokenize_ten(extra: &[&str]) -> Output {
    let lines: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    let mut args = vec!["tokenize"];
    args.extend_from_slice(extra);
    args.extend(lines.iter().map(String::as_str));
    run(&args)
}

/// Shard outputs of [`tokenize_ten`], as files in `dir`.
fn shards(dir: &Path, count: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let spec = format!("{i}/{count}");
            let path = dir.join(format!("shard{i}of{count}"));
            std::fs::write(&path, tokenize_ten(&["--shard", &spec]).stdout).expect("write");
            path
        })
        .collect()
}

fn merge_error(paths: &[&Path]) -> (Option<i32>, String) {
    let mut args = vec!["merge"];
    args.extend(paths.iter().map(|p| s(p)));
    let o = run(&args);
    (o.status.code(), err(&o))
}

#[test]
fn merge_refuses_what_is_not_one_whole_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let three = shards(dir, 3);
    let two = shards(dir, 2);
    let (a, b, c) = (three[0].as_path(), three[1].as_path(), three[2].as_path());
    let edited = |name: &str, edit: &dyn Fn(Vec<&str>) -> Vec<String>| {
        let text = std::fs::read_to_string(b).expect("read");
        let path = dir.join(name);
        std::fs::write(&path, edit(text.lines().collect()).join("\n") + "\n").expect("write");
        path
    };
    let no_footer = edited("no-footer", &|l| {
        l[..l.len() - 1].iter().map(|s| s.to_string()).collect()
    });
    let row_missing = edited("row-missing", &|l| {
        l.iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, s)| s.to_string())
            .collect()
    });
    let row_twice = edited("row-twice", &|l| {
        let mut v: Vec<String> = l.iter().map(|s| s.to_string()).collect();
        v.insert(1, l[0].to_string());
        v
    });
    let bad_row = edited("bad-row", &|l| {
        let mut v: Vec<String> = l.iter().map(|s| s.to_string()).collect();
        v[1] = "101 102".into();
        v
    });
    let unsharded = dir.join("unsharded");
    std::fs::write(&unsharded, run(&["tokenize", "a"]).stdout).expect("write");
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").expect("write");
    let st = dir.join("st");
    let o = run(&["embed", "--shard", "0/3", "-o", s(&st), "a"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    for (paths, says) in [
        (vec![a, c], "shard 1/3 missing"),
        (vec![a], "shard 1/3, 2/3 missing"),
        (vec![a, b, b, c], "are both shard 1/3"),
        (vec![a, b, c, &two[0]], "not the shards of one run"),
        (vec![a, &no_footer, c], "no footer"),
        (vec![a, &row_missing, c], "line 5 is missing"),
        (vec![a, &row_twice, c], "line 2 after line 2"),
        (
            vec![a, &bad_row, c],
            "the row after line 2 is not a shard row",
        ),
        (
            vec![&unsharded],
            "neither the JSON Lines nor the .safetensors",
        ),
        (vec![&empty], "neither the JSON Lines nor the .safetensors"),
        (vec![&st, b, c], "is not sharded JSON Lines as"),
        (vec![&st], "shard 1/3, 2/3 missing"),
        (vec![a, &dir.join("absent"), c], "cannot read"),
    ] {
        let (code, e) = merge_error(&paths);
        assert!(matches!(code, Some(1 | 2)), "{paths:?}: {e}");
        assert!(e.contains(says), "{paths:?}: {e}");
    }
    // No arguments: usage.
    assert_eq!(run(&["merge"]).status.code(), Some(2));
    // A failed merge leaves the output as it was, and no temporary file.
    let out = dir.join("out");
    std::fs::write(&out, "before\n").expect("write");
    let o = run(&["merge", "-o", s(&out), s(a), s(c)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "before\n");
    let o = run(&["merge", "-o", s(&out), s(c), s(a), s(b)]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(std::fs::read(&out).expect("read"), tokenize_ten(&[]).stdout);
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn merge_runs_without_libtorch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let paths = shards(tmp.path(), 2);
    let o = Command::new(env!("CARGO_BIN_EXE_convbert"))
        .arg("merge")
        .args(&paths)
        .env("CONVBERT_TORCH_BIN", "/nonexistent/convbert-torch")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 10);
    let help = Command::new(env!("CARGO_BIN_EXE_convbert"))
        .args(["help", "merge"])
        .env("CONVBERT_TORCH_BIN", "/nonexistent/convbert-torch")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: convbert merge"));
}
