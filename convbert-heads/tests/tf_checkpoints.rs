//! TensorFlow checkpoints (fixtures/gen_tf.py): every `tf_model.h5` of the six TFConvBert*
//! classes (with and without the embedding projection, num_groups 1 and 2, a file whose
//! attributes Keras split) and a two-shard TF1 checkpoint load into our models with PyTorch's
//! outputs (within 1e-5); exports to `tf_model.h5` load back identically, and — when the TF
//! venv of scripts/tf-env.sh exists — in HF's TF classes and PyTorch's TF loader too.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{device, max_diff, read_run_file, temp_dir, tol, AnyHead};
use convbert_model::checkpoint::WeightsFormat;
use convbert_model::{ConvBertConfig, ConvBertInputs, ConvBertModel, ForwardOptions};
use tch::{Kind, Tensor};

const ATOL: f64 = 1e-5;

fn tf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tf")
}

/// `fixtures/tf/manifest.json`: "<case>/<class>" -> (PyTorch class, runs directory).
fn manifest() -> BTreeMap<String, (String, PathBuf)> {
    let text = std::fs::read_to_string(tf_dir().join("manifest.json")).expect("manifest");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| {
            let class = v["pt_class"].as_str().expect("pt_class").to_string();
            let runs = tf_dir().join(v["runs"].as_str().expect("runs"));
            (k.clone(), (class, runs))
        })
        .collect()
}

fn read_run(dir: &Path) -> BTreeMap<String, Tensor> {
    read_run_file(&dir.join("default.safetensors"))
}

/// The head kind of `AnyHead` for a PyTorch class; None for the bare encoder.
fn head_kind(class: &str) -> Option<&'static str> {
    Some(match class {
        "ConvBertForMaskedLM" => "masked_lm",
        "ConvBertForSequenceClassification" => "sequence_classification",
        "ConvBertForMultipleChoice" => "multiple_choice",
        "ConvBertForTokenClassification" => "token_classification",
        "ConvBertForQuestionAnswering" => "question_answering",
        _ => return None,
    })
}

/// A loaded model of either kind.
enum Loaded {
    Encoder(Box<(ConvBertModel, tch::nn::VarStore)>),
    Head(Box<AnyHead>),
}

impl Loaded {
    fn load(class: &str, source: &Path) -> Self {
        match head_kind(class) {
            Some(kind) => Loaded::Head(Box::new(
                AnyHead::load(kind, source, None)
                    .unwrap_or_else(|e| panic!("{}: {e}", source.display())),
            )),
            None => {
                let (m, vs) = ConvBertModel::from_pretrained(source, device(), Kind::Float)
                    .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
                Loaded::Encoder(Box::new((m, vs)))
            }
        }
    }

    fn run(&self, run: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
        match self {
            Loaded::Head(h) => {
                let inputs: BTreeMap<String, Tensor> = run
                    .iter()
                    .filter(|(k, _)| k.starts_with("in."))
                    .map(|(k, t)| (k.clone(), t.shallow_clone()))
                    .collect();
                h.run(&inputs).expect("run")
            }
            Loaded::Encoder(b) => {
                let m = &b.0;
                let inputs = ConvBertInputs {
                    input_ids: run.get("in.input_ids"),
                    attention_mask: run.get("in.attention_mask"),
                    token_type_ids: run.get("in.token_type_ids"),
                    ..Default::default()
                };
                let _g = tch::no_grad_guard();
                let o = m
                    .forward_t(&inputs, &ForwardOptions::default(), false)
                    .expect("forward");
                BTreeMap::from([("out.last_hidden_state".to_string(), o.last_hidden_state)])
            }
        }
    }

    fn save_tf(&self, dir: &Path, class: &str) {
        match self {
            Loaded::Head(h) => match h.as_ref() {
                AnyHead::MaskedLm(m) => m.save_pretrained_as(dir, WeightsFormat::TensorFlow),
                AnyHead::SequenceClassification(m) => {
                    m.save_pretrained_as(dir, WeightsFormat::TensorFlow)
                }
                AnyHead::MultipleChoice(m) => m.save_pretrained_as(dir, WeightsFormat::TensorFlow),
                AnyHead::TokenClassification(m) => {
                    m.save_pretrained_as(dir, WeightsFormat::TensorFlow)
                }
                AnyHead::QuestionAnswering(m) => {
                    m.save_pretrained_as(dir, WeightsFormat::TensorFlow)
                }
            }
            .expect("save tf"),
            Loaded::Encoder(b) => {
                let (m, vs) = (&b.0, &b.1);
                std::fs::create_dir_all(dir).expect("dir");
                m.config().to_file(dir.join("config.json")).expect("config");
                convbert_model::checkpoint::save_weights(
                    vs,
                    m.config(),
                    dir,
                    WeightsFormat::TensorFlow,
                    class,
                )
                .expect("save tf");
            }
        }
    }
}

/// Compares every `out.*` golden with `got`; returns the failures.
fn compare(
    what: &str,
    run: &BTreeMap<String, Tensor>,
    got: &BTreeMap<String, Tensor>,
    atol: f64,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, want) in run
        .iter()
        .filter(|(k, _)| k.starts_with("out.") && *k != "out.loss")
    {
        let Some(actual) = got.get(name) else {
            failures.push(format!("{what}: no {name}"));
            continue;
        };
        let (diff, at) = max_diff(actual, want);
        println!("{what:<40} {name:<22} max|diff| {diff:.3e}");
        if diff.is_nan() || diff > tol(atol) {
            failures.push(format!(
                "{what} {name}: max |diff| {diff:.3e} at flat index {at}"
            ));
        }
    }
    failures
}

#[test]
fn every_tf_model_h5_matches_pytorch_outputs() {
    let mut failures = Vec::new();
    let cases = manifest();
    let h5_cases: Vec<_> = cases
        .iter()
        .filter(|(k, _)| !k.starts_with("tf1"))
        .collect();
    assert!(h5_cases.len() >= 13, "{} cases", h5_cases.len());
    for (case, (class, runs)) in h5_cases {
        let source = tf_dir().join(case).join("checkpoint");
        assert!(source.join("tf_model.h5").is_file() && !source.join("model.safetensors").exists());
        let model = Loaded::load(class, &source);
        if let Loaded::Head(h) = &model {
            let report = h.report().expect("report");
            assert!(report.is_complete(), "{case}: {report}");
            assert!(report.unused.is_empty(), "{case}: {report}");
            assert!(report.file.ends_with("tf_model.h5"), "{case}: {report}");
            // Keras saves the masked-LM head's embeddings twice; the copy is skipped.
            let copies = if class == "ConvBertForMaskedLM" { 5 } else { 0 };
            assert_eq!(report.ignored.len(), copies, "{case}: {:?}", report.ignored);
        }
        let run = read_run(runs);
        failures.extend(compare(case, &run, &model.run(&run), ATOL));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tf1_checkpoint_matches_pytorch_outputs_and_reports_what_it_ignored() {
    let dir = tf_dir().join("tf1");
    let run = read_run(&dir.join("runs"));
    let names: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("loaded_names.json")).expect("names"),
    )
    .expect("json");
    let unused: Vec<&str> = names["unused"]
        .as_array()
        .expect("unused")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    // The directory (its `checkpoint` file), the `.index` path and the prefix all name it.
    let checkpoint = dir.join("checkpoint");
    for source in [
        checkpoint.clone(),
        checkpoint.join("model.ckpt-7.index"),
        checkpoint.join("model.ckpt-7"),
    ] {
        let model = Loaded::load("ConvBertModel", &source);
        let failures = compare(&source.display().to_string(), &run, &model.run(&run), ATOL);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
    // A head on a TF1 checkpoint: encoder from the checkpoint, head new, the rest ignored.
    let head = AnyHead::load("sequence_classification", &checkpoint, None).expect("head");
    let report = head.report().expect("report");
    assert!(report.base_checkpoint, "{report}");
    assert!(report.file.ends_with("model.ckpt-7.index"), "{report}");
    let mut ignored = report.ignored.clone();
    ignored.sort();
    let mut expected: Vec<String> = unused.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(ignored, expected);
    for slot in [
        "global_step",
        "adam_m",
        "adam_v",
        "generator/",
        "discriminator_predictions/",
    ] {
        assert!(
            ignored.iter().any(|n| n.contains(slot)),
            "{slot} not in {ignored:?}"
        );
    }
    let text = report.to_string();
    assert!(
        text.contains("model.ckpt-7.index") && text.contains("Ignored"),
        "{text}"
    );
}

/// The TF venv's python (scripts/tf-env.sh), when it exists.
fn tf_python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CONVBERT_TF_PYTHON") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let cache = std::env::var_os("CONVBERT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/convbert")))?;
    Some(cache.join("venv-tf-2.21.0/bin/python")).filter(|p| p.is_file())
}

const SHORT: [(&str, &str); 6] = [
    ("ConvBertModel", "model"),
    ("ConvBertForMaskedLM", "mlm"),
    ("ConvBertForSequenceClassification", "seqcls"),
    ("ConvBertForMultipleChoice", "mc"),
    ("ConvBertForTokenClassification", "tokcls"),
    ("ConvBertForQuestionAnswering", "qa"),
];

#[test]
fn exported_tf_model_h5_reloads_identically_and_in_hf() {
    let python = tf_python();
    if python.is_none() {
        println!("no TF venv (scripts/tf-env.sh): HF's TF loaders are not run");
    }
    let out = temp_dir("tf-export");
    let mut failures = Vec::new();
    for (case, (class, runs)) in manifest()
        .iter()
        .filter(|(k, _)| k.starts_with("grouped/") || k.starts_with("base/"))
    {
        let model = Loaded::load(class, &tf_dir().join(case).join("checkpoint"));
        let dir = out.join(case.replace('/', "-"));
        model.save_tf(&dir, class);
        assert!(dir.join("tf_model.h5").is_file());
        let run = read_run(runs);
        // Our own reader gets the very same numbers back.
        let again = Loaded::load(class, &dir);
        failures.extend(compare(
            &format!("{case} (re-read)"),
            &run,
            &again.run(&run),
            0.0_f64.max(ATOL),
        ));
        if let Some(python) = &python {
            let short = SHORT.iter().find(|(c, _)| c == class).expect("class").1;
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/check_tf_export.py");
            let o = std::process::Command::new(python)
                .arg(&script)
                .arg(&dir)
                .arg(short)
                .arg(runs.join("default.safetensors"))
                .output()
                .expect("python");
            let stdout = String::from_utf8_lossy(&o.stdout);
            println!("{case} HF check: {}", stdout.trim());
            if !o.status.success() {
                failures.push(format!(
                    "{case}: HF's TF/PT loaders disagree: {stdout}{}",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_pytorch_checkpoint_exports_to_tf_with_its_outputs() {
    // fixtures/heads/base/seqcls: a model.safetensors head, its HF outputs in runs/.
    let heads = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/heads/base/seqcls");
    let head =
        AnyHead::load("sequence_classification", &heads.join("checkpoint"), None).expect("load");
    let dir = temp_dir("pt-to-tf");
    match &head {
        AnyHead::SequenceClassification(m) => m
            .save_pretrained_as(&dir, WeightsFormat::TensorFlow)
            .expect("save"),
        _ => unreachable!(),
    }
    assert!(!dir.join("model.safetensors").exists());
    let again = AnyHead::load("sequence_classification", &dir, None).expect("reload");
    assert!(again
        .report()
        .expect("report")
        .file
        .ends_with("tf_model.h5"));
    let run = common::read_run("base/seqcls", "single_label");
    let got = again.run(&run).expect("run");
    let failures = compare("heads/base/seqcls as tf_model.h5", &run, &got, ATOL);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tensorflow_export_is_refused_when_tf_cannot_build_the_config() {
    // head_ratio 1: PyTorch heads are hidden / 4 / 2 = 4 wide, TensorFlow's hidden / 4 = 8.
    let config = ConvBertConfig::from_json_str(
        r#"{"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
            "head_ratio": 1, "intermediate_size": 37, "max_position_embeddings": 16,
            "num_labels": 2}"#,
    )
    .expect("config");
    let m = convbert_heads::ConvBertForSequenceClassification::from_config(
        config,
        device(),
        Kind::Float,
    )
    .expect("model");
    let dir = temp_dir("tf-refused").join("out");
    let err = m
        .save_pretrained_as(&dir, WeightsFormat::TensorFlow)
        .expect_err("must refuse")
        .to_string();
    assert!(
        err.contains("TensorFlow") && err.contains("head_ratio"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing may be written");
}
