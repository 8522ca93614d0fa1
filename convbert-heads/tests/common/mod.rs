//! Shared helpers of the golden tests: fixture paths, golden runs, and running any head on a run.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use convbert_heads::{
    ConvBertForMaskedLM, ConvBertForMultipleChoice, ConvBertForQuestionAnswering,
    ConvBertForSequenceClassification, ConvBertForTokenClassification, HeadLoadReport,
    SpanPositions,
};
use convbert_model::{ConvBertConfig, ConvBertInputs, ForwardOptions};
use tch::{Device, Kind, Tensor};

/// Device of the parity tests: `CONVBERT_TEST_DEVICE=cuda` (or `cuda:N`) runs them on a GPU.
pub fn device() -> Device {
    let name = std::env::var("CONVBERT_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    convbert_model::parse_device(&name).expect("CONVBERT_TEST_DEVICE: cpu, cuda or cuda:N")
}

/// `cpu` on the CPU; at least 1e-4 on a GPU, whose kernels sum in other orders.
pub fn tol(cpu: f64) -> f64 {
    if device().is_cuda() {
        cpu.max(1e-4)
    } else {
        cpu
    }
}

pub fn heads_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/heads")
}

/// `fixtures/heads/manifest.json`: "<case>/<variant>" -> (head kind, runs).
pub fn manifest() -> BTreeMap<String, (String, Vec<String>)> {
    let text = std::fs::read_to_string(heads_dir().join("manifest.json")).expect("manifest.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest json");
    let mut out = BTreeMap::new();
    for (k, v) in json.as_object().expect("object") {
        let head = v["head"].as_str().expect("head").to_string();
        let runs = v["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| r.as_str().expect("run").to_string())
            .collect();
        out.insert(k.clone(), (head, runs));
    }
    out
}

/// The named tensors of one golden run (`in.*`, `out.*`), on [`device`].
pub fn read_run(variant: &str, run: &str) -> BTreeMap<String, Tensor> {
    read_run_file(
        &heads_dir()
            .join(variant)
            .join("runs")
            .join(format!("{run}.safetensors")),
    )
}

/// The named tensors of a golden run file, on [`device`].
pub fn read_run_file(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|(k, t)| (k, t.to_device(device())))
        .collect()
}

/// A loaded head of any of the five kinds.
pub enum AnyHead {
    MaskedLm(ConvBertForMaskedLM),
    SequenceClassification(ConvBertForSequenceClassification),
    MultipleChoice(ConvBertForMultipleChoice),
    TokenClassification(ConvBertForTokenClassification),
    QuestionAnswering(ConvBertForQuestionAnswering),
}

impl AnyHead {
    /// Loads `source` as the head `kind` (fixture name), optionally with an explicit config.
    pub fn load(
        kind: &str,
        source: &Path,
        config: Option<ConvBertConfig>,
    ) -> convbert_heads::Result<Self> {
        let (d, k) = (device(), Kind::Float);
        macro_rules! load {
            ($t:ty) => {
                match config {
                    Some(c) => <$t>::from_pretrained_with_config(source, c, d, k)?,
                    None => <$t>::from_pretrained(source, d, k)?,
                }
            };
        }
        Ok(match kind {
            "masked_lm" => AnyHead::MaskedLm(load!(ConvBertForMaskedLM)),
            "sequence_classification" => {
                AnyHead::SequenceClassification(load!(ConvBertForSequenceClassification))
            }
            "multiple_choice" => AnyHead::MultipleChoice(load!(ConvBertForMultipleChoice)),
            "token_classification" => {
                AnyHead::TokenClassification(load!(ConvBertForTokenClassification))
            }
            "question_answering" => AnyHead::QuestionAnswering(load!(ConvBertForQuestionAnswering)),
            other => panic!("unknown head kind {other}"),
        })
    }

    pub fn report(&self) -> Option<&HeadLoadReport> {
        match self {
            AnyHead::MaskedLm(m) => m.load_report(),
            AnyHead::SequenceClassification(m) => m.load_report(),
            AnyHead::MultipleChoice(m) => m.load_report(),
            AnyHead::TokenClassification(m) => m.load_report(),
            AnyHead::QuestionAnswering(m) => m.load_report(),
        }
    }

    pub fn var_store(&self) -> &tch::nn::VarStore {
        match self {
            AnyHead::MaskedLm(m) => m.var_store(),
            AnyHead::SequenceClassification(m) => m.var_store(),
            AnyHead::MultipleChoice(m) => m.var_store(),
            AnyHead::TokenClassification(m) => m.var_store(),
            AnyHead::QuestionAnswering(m) => m.var_store(),
        }
    }

    pub fn save(&self, dir: &Path) -> convbert_heads::Result<()> {
        match self {
            AnyHead::MaskedLm(m) => m.save_pretrained(dir),
            AnyHead::SequenceClassification(m) => m.save_pretrained(dir),
            AnyHead::MultipleChoice(m) => m.save_pretrained(dir),
            AnyHead::TokenClassification(m) => m.save_pretrained(dir),
            AnyHead::QuestionAnswering(m) => m.save_pretrained(dir),
        }
    }

    /// Runs the head (eval mode) on the `in.*` tensors of a run; returns `out.*` named outputs.
    pub fn run(
        &self,
        run: &BTreeMap<String, Tensor>,
    ) -> convbert_heads::Result<BTreeMap<String, Tensor>> {
        let inputs = ConvBertInputs {
            input_ids: run.get("in.input_ids"),
            attention_mask: run.get("in.attention_mask"),
            token_type_ids: run.get("in.token_type_ids"),
            ..Default::default()
        };
        let labels = run.get("in.labels");
        let opts = ForwardOptions::default();
        let mut out = BTreeMap::new();
        let _guard = tch::no_grad_guard();
        let loss = match self {
            AnyHead::MaskedLm(m) => {
                let o = m.forward_t(&inputs, labels, &opts, false)?;
                out.insert("out.logits".to_string(), o.logits);
                o.loss
            }
            AnyHead::SequenceClassification(m) => {
                let o = m.forward_t(&inputs, labels, &opts, false)?;
                out.insert("out.logits".to_string(), o.logits);
                o.loss
            }
            AnyHead::MultipleChoice(m) => {
                let o = m.forward_t(&inputs, labels, &opts, false)?;
                out.insert("out.logits".to_string(), o.logits);
                o.loss
            }
            AnyHead::TokenClassification(m) => {
                let o = m.forward_t(&inputs, labels, &opts, false)?;
                out.insert("out.logits".to_string(), o.logits);
                o.loss
            }
            AnyHead::QuestionAnswering(m) => {
                let positions = match (run.get("in.start_positions"), run.get("in.end_positions")) {
                    (Some(s), Some(e)) => Some(SpanPositions {
                        start_positions: s,
                        end_positions: e,
                    }),
                    _ => None,
                };
                let o = m.forward_t(&inputs, positions, &opts, false)?;
                out.insert("out.start_logits".to_string(), o.start_logits);
                out.insert("out.end_logits".to_string(), o.end_logits);
                o.loss
            }
        };
        if let Some(loss) = loss {
            out.insert("out.loss".to_string(), loss.reshape([1]));
        }
        Ok(out)
    }
}

/// Max |a - b| and the index of the worst element (flattened).
pub fn max_diff(a: &Tensor, b: &Tensor) -> (f64, i64) {
    assert_eq!(a.size(), b.size(), "shape");
    let (a, b) = (a.to_device(Device::Cpu), b.to_device(Device::Cpu));
    let d = (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .reshape([-1]);
    if d.numel() == 0 {
        return (0.0, 0);
    }
    let i = d.argmax(0, false).int64_value(&[]);
    (d.double_value(&[i]), i)
}

pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "convbert-heads-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
