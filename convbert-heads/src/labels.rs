//! Label metadata of a task config (`num_labels`, `id2label`, `label2id`, `problem_type`), read from
//! the keys HF's `PretrainedConfig` adds to `config.json` (kept by `ConvBertConfig` as extra keys).
//! In JSON the keys of `id2label` are strings (`{"0": "negative"}`).

use std::collections::BTreeMap;

use convbert_model::ConvBertConfig;
use serde_json::{Map, Value};

use crate::error::{ConvBertHeadError, Result};

/// The loss family of sequence classification (`config.problem_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// MSE; HF's choice when `num_labels == 1`.
    Regression,
    /// Cross-entropy over integer class labels.
    SingleLabelClassification,
    /// BCE with logits over float multi-hot labels.
    MultiLabelClassification,
}

impl ProblemType {
    /// The HF spelling, as written in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemType::Regression => "regression",
            ProblemType::SingleLabelClassification => "single_label_classification",
            ProblemType::MultiLabelClassification => "multi_label_classification",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "regression" => Ok(ProblemType::Regression),
            "single_label_classification" => Ok(ProblemType::SingleLabelClassification),
            "multi_label_classification" => Ok(ProblemType::MultiLabelClassification),
            other => Err(config_error(
                "problem_type",
                format!("unknown value {other:?}"),
            )),
        }
    }
}

fn config_error(field: &str, reason: impl Into<String>) -> ConvBertHeadError {
    ConvBertHeadError::Config {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Label names and the configured problem type of a head.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// Number of output classes: `len(id2label)`, else `num_labels`, else 2 (HF's rule).
    pub num_labels: i64,
    /// Class index -> name (`LABEL_{i}` when the config has no map).
    pub id2label: BTreeMap<i64, String>,
    /// Name -> class index.
    pub label2id: BTreeMap<String, i64>,
    /// `problem_type` when config.json fixes it; `None` lets sequence classification infer it.
    pub problem_type: Option<ProblemType>,
}

impl Labels {
    /// Reads and checks the label keys of `cfg`.
    pub fn from_config(cfg: &ConvBertConfig) -> Result<Self> {
        let num_labels = cfg.num_labels();
        if num_labels < 1 {
            return Err(config_error(
                "num_labels",
                format!("must be >= 1, got {num_labels}"),
            ));
        }
        let id2label = match cfg.extra("id2label") {
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    let id = k.parse::<i64>().map_err(|_| {
                        config_error("id2label", format!("key {k:?} is not an integer"))
                    })?;
                    let name = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    out.insert(id, name);
                }
                out
            }
            _ => (0..num_labels).map(|i| (i, format!("LABEL_{i}"))).collect(),
        };
        let label2id = match cfg.extra("label2id") {
            Some(Value::Object(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    let id = v.as_i64().ok_or_else(|| {
                        config_error("label2id", format!("value for {k:?} is not an integer"))
                    })?;
                    out.insert(k.clone(), id);
                }
                out
            }
            _ => id2label.iter().map(|(i, n)| (n.clone(), *i)).collect(),
        };
        let problem_type = match cfg.extra("problem_type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(ProblemType::parse(s)?),
            Some(v) => {
                return Err(config_error(
                    "problem_type",
                    format!("expected a string, got {v}"),
                ))
            }
        };
        Ok(Self {
            num_labels,
            id2label,
            label2id,
            problem_type,
        })
    }

    /// Sets `num_labels` on a config the way HF does: `id2label`/`label2id` become `LABEL_{i}` maps.
    pub fn set_num_labels(cfg: &mut ConvBertConfig, num_labels: i64) {
        let id2label: Map<String, Value> = (0..num_labels)
            .map(|i| (i.to_string(), Value::String(format!("LABEL_{i}"))))
            .collect();
        let label2id: Map<String, Value> = (0..num_labels)
            .map(|i| (format!("LABEL_{i}"), Value::from(i)))
            .collect();
        cfg.extra.insert("id2label".into(), Value::Object(id2label));
        cfg.extra.insert("label2id".into(), Value::Object(label2id));
        cfg.extra.remove("num_labels");
    }
}
