//! The conventions users of HF transformers/tokenizers expect of `convbert`, run on the built
//! binary: HF's flag names as visible aliases, `-i`/`-o` on every command that reads or writes a
//! file, a description on every flag, each `--jsonl` schema in its command's help, `embed` to
//! stdout (JSON Lines, or safetensors with `--format`), `train --task` as a value enum with
//! `--doc-stride` 128, and plain-words errors (a missing file, a bad hyper-parameter, a single
//! label).

use std::path::PathBuf;
use std::process::Output;

use tch::Tensor;

mod common;
use common::{convbert, fixture, jsonl, stderr, tmp};

const SUBCOMMANDS: [&str; 10] = [
    "tokenize",
    "fill-mask",
    "classify",
    "ner",
    "qa",
    "embed",
    "forward",
    "bench",
    "serve",
    "train",
];

fn help(command: &str) -> String {
    let o = convbert(&[command, "--help"], b"");
    assert!(o.status.success(), "{command} --help: {}", stderr(&o));
    String::from_utf8(o.stdout).expect("utf-8 help")
}

#[test]
fn hf_flag_names_are_visible_aliases() {
    for (command, alias) in [
        ("ner", "--aggregation-strategy"),
        ("classify", "--function-to-apply"),
        ("train", "--num-train-epochs"),
        ("train", "--per-device-train-batch-size"),
        ("train", "--resume-from-checkpoint"),
    ] {
        assert!(
            help(command).contains(alias),
            "{command} --help lacks {alias}"
        );
    }
    let ner = fixture("pipelines/models/tokcls");
    let args = ["ner", "--model", &ner, "--aggregation-strategy", "simple"];
    let o = convbert(&[&args[..], &["Hello world"]].concat(), b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let seqcls = fixture("pipelines/models/seqcls");
    let o = convbert(
        &[
            "classify",
            "--model",
            &seqcls,
            "--function-to-apply",
            "sigmoid",
            "good",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(jsonl(&o).len(), 1);
    // The train aliases parse: the run gets as far as the (missing) config file.
    let missing = tmp("no-config.json");
    let out = tmp("train-aliases");
    let o = convbert(
        &[
            "train",
            "--task",
            "text-classification",
            "--config",
            missing.to_str().unwrap(),
            "--train",
            "x.jsonl",
            "-o",
            out.to_str().unwrap(),
            "--num-train-epochs",
            "2",
            "--per-device-train-batch-size",
            "4",
            "--resume-from-checkpoint",
            out.join("checkpoint-1").to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-config.json"), "{}", stderr(&o));
}

/// The option lines of a help text (`  -i, --input <INPUT>  Read ...`), each with the text up to
/// the next option.
fn options(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if (2..=6).contains(&indent) && t.starts_with('-') {
            out.push((t.to_string(), String::new()));
        } else if let Some(last) = out.last_mut() {
            if indent > 6 {
                last.1.push_str(t);
            } else if !t.is_empty() {
                out.pop();
            }
        }
    }
    out
}

#[test]
fn every_flag_has_a_description_and_input_output_have_short_flags() {
    for command in SUBCOMMANDS {
        let text = help(command);
        let opts = options(&text);
        assert!(opts.len() > 2, "{command}: no options parsed from\n{text}");
        for (line, more) in &opts {
            // `--flag <VALUE>` then at least two spaces and the description.
            let head = line.split("  ").next().unwrap_or_default();
            let description = line[head.len()..].trim().to_string() + more;
            // clap's own `[default: ..]`, `[possible values: ..]` are no description.
            let words: String = description
                .split('[')
                .map(|part| part.split_once(']').map_or(part, |(_, rest)| rest))
                .collect();
            assert!(
                !words.trim().is_empty(),
                "{command}: no description for {head}"
            );
            for (long, short) in [("--input", "-i, "), ("--output", "-o, ")] {
                let flag = head.split(&[' ', ','][..]).any(|w| w == long);
                if flag {
                    assert!(head.starts_with(short), "{command}: {head} has no {short}");
                }
            }
        }
    }
}

#[test]
fn each_jsonl_help_shows_its_schema() {
    let schemas: [(&str, &[&str]); 4] = [
        ("fill-mask", &[r#"{"text": "...""#]),
        ("ner", &[r#"{"text": "...""#]),
        ("classify", &[r#"{"text": "...""#, r#""text_pair": "...""#]),
        ("qa", &[r#"{"question": "...", "context": "..."}"#]),
    ];
    for command in SUBCOMMANDS {
        let text = help(command);
        let schema = schemas.iter().find(|(c, _)| *c == command);
        assert_eq!(text.contains("--jsonl"), schema.is_some(), "{command}");
        for needle in schema.map_or(&[][..], |s| s.1) {
            assert!(text.contains(needle), "{command} --help lacks {needle}");
        }
    }
}

#[test]
fn embed_writes_json_lines_or_safetensors_to_stdout() {
    let model = fixture("pipelines/models/mlm");
    let base = ["embed", "--model", &model];
    let rows = |o: &Output| -> Vec<Vec<f32>> {
        assert!(o.status.success(), "{}", stderr(o));
        jsonl(o)
            .into_iter()
            .map(|v| serde_json::from_value(v).expect("a vector"))
            .collect()
    };
    let plain = rows(&convbert(&[&base[..], &["a", "b c d"]].concat(), b""));
    assert_eq!(plain.len(), 2);
    assert!(plain.iter().all(|r| r.len() == 32));
    // `-o -` is stdout too, `-i -` is stdin.
    let dash = rows(&convbert(
        &[&base[..], &["-o", "-", "-i", "-"]].concat(),
        b"a\nb c d\n",
    ));
    assert_eq!(dash, plain);
    // Per token with --pooling none: one list of vectors per line.
    let o = convbert(&[&base[..], &["--pooling", "none", "a b"]].concat(), b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let tokens: Vec<Vec<f32>> = serde_json::from_value(jsonl(&o)[0].clone()).expect("tokens");
    assert_eq!((tokens.len(), tokens[0].len()), (4, 32));
    // A bad line gets its error row, the others their vectors, exit 1.
    let o = convbert(&base, b"a\n\xff\nb c d\n");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = jsonl(&o);
    assert_eq!(out.len(), 3);
    assert_eq!(out[1]["line"], 2);
    assert!(out[1]["error"].as_str().unwrap().contains("invalid UTF-8"));
    assert_eq!(out[2], serde_json::to_value(&plain[1]).unwrap());
    // Safetensors to stdout: the same vectors.
    let o = convbert(
        &[&base[..], &["--format", "safetensors", "a", "b c d"]].concat(),
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let file = tmp("stdout.safetensors");
    std::fs::write(&file, &o.stdout).expect("write");
    let named = Tensor::read_safetensors(&file).expect("safetensors on stdout");
    let embeddings = &named.iter().find(|(n, _)| n == "embeddings").unwrap().1;
    let want = Tensor::from_slice(&plain.concat()).view([2, 32]);
    let diff = (embeddings - want).abs().max().double_value(&[]);
    assert!(
        diff == 0.0,
        "stdout safetensors differ from JSON Lines by {diff}"
    );
    // -o FILE keeps writing a .safetensors file, and nothing to stdout.
    let o = convbert(
        &[&base[..], &["-o", file.to_str().unwrap(), "a"]].concat(),
        b"",
    );
    assert!(o.status.success() && o.stdout.is_empty(), "{}", stderr(&o));
    let named = Tensor::read_safetensors(&file).expect("a safetensors file");
    assert!(named.iter().any(|(n, _)| n == "embeddings"));
}

#[test]
fn train_task_is_a_value_enum_with_hf_doc_stride_and_a_single_label_is_refused() {
    let text = help("train");
    assert!(
        text.contains(
            "[possible values: text-classification, token-classification, \
             question-answering, multiple-choice, masked-lm]"
        ),
        "{text}"
    );
    assert!(text.contains("[default: 128, at most half of"), "{text}");
    let o = convbert(&["train", "--task", "summarization"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid value 'summarization' for '--task <TASK>'"));

    let dir = tmp("single-label");
    std::fs::create_dir_all(&dir).expect("dir");
    let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad"];
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").expect("vocab");
    let config = serde_json::json!({
        "vocab_size": vocab.len(), "hidden_size": 32, "embedding_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64,
        "max_position_embeddings": 64, "type_vocab_size": 2, "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
    let data = dir.join("train.jsonl");
    let rows =
        "{\"text\": \"good\", \"label\": \"pos\"}\n{\"text\": \"bad\", \"label\": \"pos\"}\n";
    std::fs::write(&data, rows).expect("data");
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    let o = convbert(
        &[
            "train",
            "--task",
            "text-classification",
            "--config",
            &s(dir.join("config.json")),
            "--tokenizer",
            &s(dir.join("vocab.txt")),
            "--train",
            &s(data.clone()),
            "-o",
            &s(dir.join("out")),
            "--no-progress",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "error: {}: every example has the label \"pos\"; classification needs at least two \
             distinct labels",
            data.display()
        )
    );
}

#[test]
fn errors_name_the_file_or_flag_in_plain_words() {
    let missing = tmp("missing-input.txt");
    let m = missing.to_str().unwrap();
    let o = convbert(&["tokenize", "-i", m], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim_end(),
        format!("error: cannot read {m}: No such file or directory (os error 2)")
    );
    let model = fixture("pipelines/models/mlm");
    let o = convbert(&["embed", "--model", &model, "-i", m], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim_end(),
        format!("error: cannot read {m}: No such file or directory (os error 2)")
    );
    // A bad hyper-parameter is named by its flag, not by a library field.
    let o = convbert(
        &[
            "train",
            "--task",
            "masked-lm",
            "--config",
            "c.json",
            "--train",
            "t.txt",
            "-o",
            tmp("lr").to_str().unwrap(),
            "--learning-rate=-1",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim_end(),
        "error: --learning-rate: -1 is not a finite number >= 0"
    );
}
