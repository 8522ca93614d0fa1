//! End-to-end tests of the `convbert` binary on the fixture checkpoints: every model subcommand,
//! JSON Lines in and out, `forward` against the HF goldens of fixtures/model and fixtures/heads,
//! pipelines against fixtures/pipelines, and the exit codes of bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tch::Tensor;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(p: &str) -> String {
    root()
        .join("fixtures")
        .join(p)
        .to_string_lossy()
        .into_owned()
}

fn convbert(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_convbert"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn jsonl(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convbert-cli-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn read(path: &Path) -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(path).unwrap()
}

fn get(ts: &[(String, Tensor)], name: &str) -> Tensor {
    ts.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
        .shallow_clone()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// Runs `forward` on the `in.*` tensors of a golden run and compares every `out.*` within 1e-5.
fn forward_matches(checkpoint: &str, run: &str, extra: &[&str]) -> usize {
    let golden = read(Path::new(&fixture(run)));
    let inputs: Vec<(String, Tensor)> = golden
        .iter()
        .filter_map(|(n, t)| {
            n.strip_prefix("in.")
                .map(|k| (k.to_string(), t.shallow_clone()))
        })
        .collect();
    let (inp, out) = (tmp("in.safetensors"), tmp("out.safetensors"));
    let (inp, out) = (
        inp.with_file_name(format!("{}-in.safetensors", run.replace('/', "_"))),
        out.with_file_name(format!("{}-out.safetensors", run.replace('/', "_"))),
    );
    Tensor::write_safetensors(&inputs, &inp).unwrap();
    let mut args = vec![
        "forward",
        "--model",
        checkpoint,
        "--inputs",
        inp.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = convbert(&args, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours = read(&out);
    let mut compared = 0;
    for (name, want) in golden
        .iter()
        .filter_map(|(n, t)| n.strip_prefix("out.").map(|k| (k, t)))
    {
        let got = get(&ours, name);
        let d = max_diff(&got, want);
        assert!(d <= 1e-5, "{run}: {name} differs by {d}");
        compared += 1;
    }
    compared
}

#[test]
fn forward_base_model_matches_hf_goldens() {
    let ckpt = fixture("model/base/checkpoint");
    let n = forward_matches(
        &ckpt,
        "model/base/runs/padded_right.safetensors",
        &["--output-hidden-states", "--output-attentions"],
    );
    assert!(n >= 1 + 3 + 2, "compared {n} outputs");
}

#[test]
fn forward_heads_match_hf_goldens_with_losses() {
    for (variant, run) in [
        ("mlm", "default"),
        ("seqcls", "single_label"),
        ("mc", "default"),
        ("tokcls", "default"),
        ("qa", "default"),
    ] {
        let ckpt = fixture(&format!("heads/base/{variant}/checkpoint"));
        let n = forward_matches(
            &ckpt,
            &format!("heads/base/{variant}/runs/{run}.safetensors"),
            &[],
        );
        assert!(
            n >= 2,
            "{variant}: compared {n} outputs (logits and loss expected)"
        );
    }
}

#[test]
fn fill_mask_jsonl_matches_hf_and_reports_bad_lines() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("pipelines/fill_mask.json")).unwrap(),
    )
    .unwrap();
    let case = &golden["cases"][1];
    let texts: Vec<&str> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut stdin = texts.join("\n");
    stdin.push_str("\nno mask on this line\n");
    let model = fixture("pipelines/models/mlm");
    let o = convbert(
        &[
            "fill-mask",
            "--model",
            &model,
            "--top-k",
            "2",
            "--batch-size",
            "3",
        ],
        Some(&stdin),
    );
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("line 5: no [MASK]"), "{stderr}");
    let lines = jsonl(&o);
    assert_eq!(lines.len(), texts.len() + 1);
    assert_eq!(lines[4]["line"], 5);
    assert_fill_mask_lines(&lines, case);
}

/// Each output line equals HF's candidates for the golden case's input of that line.
fn assert_fill_mask_lines(lines: &[Value], case: &Value) {
    for (i, want) in case["outputs"].as_array().unwrap().iter().enumerate() {
        // HF returns a flat list for a single mask.
        let want = if want.as_array().unwrap().len() == 1 {
            want[0].clone()
        } else {
            want.clone()
        };
        let got = &lines[i];
        let flat = |v: &Value| -> Vec<Value> {
            match v[0].is_array() {
                true => v
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|x| x.as_array().unwrap().clone())
                    .collect(),
                false => v.as_array().unwrap().clone(),
            }
        };
        let (got, want) = (flat(got), flat(&want));
        assert_eq!(got.len(), want.len(), "line {i}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g["token"], w["token"]);
            assert_eq!(g["token_str"], w["token_str"]);
            assert_eq!(g["sequence"], w["sequence"]);
            assert!((g["score"].as_f64().unwrap() - w["score"].as_f64().unwrap()).abs() < 1e-4);
        }
    }
}

#[test]
fn fill_mask_targets_match_hf_and_warn_like_hf() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("pipelines/fill_mask.json")).unwrap(),
    )
    .unwrap();
    let case = &golden["cases"][3];
    assert_eq!(
        case["args"]["targets"],
        serde_json::json!(["paris", "capitals", "capital", "qqqzzz", ""])
    );
    let texts: Vec<&str> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let model = fixture("pipelines/models/mlm");
    let args = [
        "fill-mask",
        "--model",
        &model,
        "--top-k",
        "5",
        "--targets",
        "paris,capitals,capital,qqqzzz,",
    ];
    let o = convbert(&args, Some(&texts.join("\n")));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "`capitals` does not exist in the model vocabulary. Replacing with `capital`."
        ),
        "{stderr}"
    );
    assert!(stderr.contains("ignoring it"), "{stderr}");
    assert_fill_mask_lines(&jsonl(&o), case);
}

#[test]
fn default_model_runs_without_arguments_and_warns_on_new_heads() {
    let o = convbert(&["fill-mask", "paris is the [MASK] of france."], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(jsonl(&o)[0].as_array().unwrap().len(), 5);
    // An MLM checkpoint has no classification head: the head is new and the user is told.
    let o = convbert(
        &[
            "classify",
            "--model",
            &fixture("pipelines/models/mlm"),
            "some text",
        ],
        None,
    );
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("newly initialised"));
}

/// `--stride`: a text that fits one window gives what the plain run gives; a stride needs an
/// aggregation strategy (usage error otherwise).
#[test]
fn ner_stride() {
    let model = fixture("pipelines/models/tokcls");
    let text = "John Smith lives in Paris.";
    let base = ["ner", "--model", &model, "--aggregation", "simple", text];
    let plain = convbert(&base, None);
    let strided = convbert(&[&base[..5], &["--stride", "4", text]].concat(), None);
    assert!(
        strided.status.success(),
        "{}",
        String::from_utf8_lossy(&strided.stderr)
    );
    assert_eq!(jsonl(&plain), jsonl(&strided));
    let o = convbert(&["ner", "--model", &model, "--stride", "4", text], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("aggregation_strategy"));
}

#[test]
fn classify_ner_qa_jsonl() {
    let pairs = "{\"text\": \"hi\", \"text_pair\": \"the weather was amazing in berlin.\"}\n{\"text\": 3}\n";
    let o = convbert(
        &[
            "classify",
            "--model",
            &fixture("pipelines/models/seqcls"),
            "--jsonl",
            "--all",
        ],
        Some(pairs),
    );
    assert_eq!(o.status.code(), Some(1));
    let lines = jsonl(&o);
    assert_eq!(lines[0].as_array().unwrap().len(), 3);
    assert_eq!(lines[1]["line"], 2);

    let o = convbert(
        &[
            "ner",
            "--model",
            &fixture("pipelines/models/tokcls"),
            "--aggregation",
            "first",
            "John Smith lives in Paris.",
        ],
        None,
    );
    assert!(o.status.success());
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("pipelines/token_classification.json")).unwrap(),
    )
    .unwrap();
    let want = &golden["cases"][2]["outputs"][0];
    let got = &jsonl(&o)[0];
    assert_eq!(
        got.as_array().unwrap().len(),
        want.as_array().unwrap().len()
    );
    for (g, w) in got.as_array().unwrap().iter().zip(want.as_array().unwrap()) {
        for k in ["entity_group", "word", "start", "end"] {
            assert_eq!(g[k], w[k], "{k}");
        }
    }

    let o = convbert(
        &[
            "qa",
            "--model",
            &fixture("pipelines/models/qa"),
            "--question",
            "where does john smith live?",
            "--top-k",
            "3",
        ],
        Some("John Smith lives in Paris. He works at the museum near the river.\n"),
    );
    assert!(o.status.success());
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("pipelines/question_answering.json")).unwrap(),
    )
    .unwrap();
    let want = &golden["cases"][1]["outputs"][0];
    let got = &jsonl(&o)[0];
    for (g, w) in got.as_array().unwrap().iter().zip(want.as_array().unwrap()) {
        assert_eq!(
            (&g["answer"], &g["start"], &g["end"]),
            (&w["answer"], &w["start"], &w["end"])
        );
    }
}

#[test]
fn embed_writes_safetensors_matching_hf_features() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("pipelines/feature_extraction.json")).unwrap(),
    )
    .unwrap();
    let text = golden["cases"][0]["inputs"][0].as_str().unwrap();
    let want: Vec<Vec<f32>> =
        serde_json::from_value(golden["cases"][0]["outputs"][0].clone()).unwrap();
    let out = tmp("embed.safetensors");
    let model = fixture("pipelines/models/mlm");
    let o = convbert(
        &[
            "embed",
            "--model",
            &model,
            "--pooling",
            "none",
            "-o",
            out.to_str().unwrap(),
            text,
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = get(&read(&out), "last_hidden_state.0");
    let want = Tensor::from_slice(&want.concat()).view([want.len() as i64, -1]);
    assert!(max_diff(&got, &want) <= 1e-5);

    let o = convbert(
        &[
            "embed",
            "--model",
            &model,
            "-o",
            out.to_str().unwrap(),
            "a",
            "b c d",
        ],
        None,
    );
    assert!(o.status.success());
    assert_eq!(get(&read(&out), "embeddings").size(), [2, 32]);
}

#[test]
fn bench_prints_throughput() {
    let o = convbert(
        &[
            "bench",
            "--shape",
            "small",
            "--batch-size",
            "1",
            "--seq-len",
            "8",
            "--iters",
            "2",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.lines().next().unwrap().ends_with(" tokens/s"),
        "{text}"
    );
    assert!(
        text.contains("p90") && text.contains("peak memory"),
        "{text}"
    );
}

#[test]
fn bad_usage_exits_2_and_missing_model_exits_1_with_where_it_looked() {
    let o = convbert(&["fill-mask", "--top-k", "many", "x [MASK]"], None);
    assert_eq!(o.status.code(), Some(2));
    let o = convbert(&["qa", "context without a question"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--question"));
    let o = convbert(
        &[
            "embed",
            "--model",
            "NoSuchOrg/no-such-model",
            "-o",
            "/dev/null",
            "x",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("looked in") && err.contains("models--NoSuchOrg--no-such-model"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
