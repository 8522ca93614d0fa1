//! `ConvBertConfig`: the HF `config.json`, with HF's default for every absent key.
//! Reference: transformers v4.57.6 `models/convbert/configuration_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/configuration_convbert.py>).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::activation::Activation;
use crate::error::{ConvBertError, Result};

/// ConvBERT hyper-parameters, field names as in HF. Unknown keys (`id2label`, `summary_*`,
/// `architectures`, ...) are kept in `extra` and written back by [`ConvBertConfig::to_file`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvBertConfig {
    #[serde(default = "d::model_type")]
    pub model_type: String,
    #[serde(default = "d::vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "d::hidden_size")]
    pub hidden_size: i64,
    #[serde(default = "d::num_hidden_layers")]
    pub num_hidden_layers: i64,
    #[serde(default = "d::num_attention_heads")]
    pub num_attention_heads: i64,
    #[serde(default = "d::intermediate_size")]
    pub intermediate_size: i64,
    #[serde(default = "d::hidden_act")]
    pub hidden_act: String,
    #[serde(default = "d::dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "d::dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "d::max_position_embeddings")]
    pub max_position_embeddings: i64,
    #[serde(default = "d::type_vocab_size")]
    pub type_vocab_size: i64,
    #[serde(default = "d::initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "d::layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d::pad_token_id")]
    pub pad_token_id: Option<i64>,
    #[serde(default = "d::bos_token_id")]
    pub bos_token_id: Option<i64>,
    #[serde(default = "d::eos_token_id")]
    pub eos_token_id: Option<i64>,
    #[serde(default = "d::embedding_size")]
    pub embedding_size: i64,
    #[serde(default = "d::head_ratio")]
    pub head_ratio: i64,
    #[serde(default = "d::conv_kernel_size")]
    pub conv_kernel_size: i64,
    #[serde(default = "d::num_groups")]
    pub num_groups: i64,
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Every other key of `config.json`, preserved on save.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// HF's defaults (`ConvBertConfig.__init__`).
mod d {
    pub fn model_type() -> String {
        "convbert".into()
    }
    pub fn vocab_size() -> i64 {
        30522
    }
    pub fn hidden_size() -> i64 {
        768
    }
    pub fn num_hidden_layers() -> i64 {
        12
    }
    pub fn num_attention_heads() -> i64 {
        12
    }
    pub fn intermediate_size() -> i64 {
        3072
    }
    pub fn hidden_act() -> String {
        "gelu".into()
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn max_position_embeddings() -> i64 {
        512
    }
    pub fn type_vocab_size() -> i64 {
        2
    }
    pub fn initializer_range() -> f64 {
        0.02
    }
    pub fn layer_norm_eps() -> f64 {
        1e-12
    }
    pub fn pad_token_id() -> Option<i64> {
        Some(1)
    }
    pub fn bos_token_id() -> Option<i64> {
        Some(0)
    }
    pub fn eos_token_id() -> Option<i64> {
        Some(2)
    }
    pub fn embedding_size() -> i64 {
        768
    }
    pub fn head_ratio() -> i64 {
        2
    }
    pub fn conv_kernel_size() -> i64 {
        9
    }
    pub fn num_groups() -> i64 {
        1
    }
}

impl Default for ConvBertConfig {
    fn default() -> Self {
        ConvBertConfig {
            model_type: d::model_type(),
            vocab_size: d::vocab_size(),
            hidden_size: d::hidden_size(),
            num_hidden_layers: d::num_hidden_layers(),
            num_attention_heads: d::num_attention_heads(),
            intermediate_size: d::intermediate_size(),
            hidden_act: d::hidden_act(),
            hidden_dropout_prob: d::dropout(),
            attention_probs_dropout_prob: d::dropout(),
            max_position_embeddings: d::max_position_embeddings(),
            type_vocab_size: d::type_vocab_size(),
            initializer_range: d::initializer_range(),
            layer_norm_eps: d::layer_norm_eps(),
            pad_token_id: d::pad_token_id(),
            bos_token_id: d::bos_token_id(),
            eos_token_id: d::eos_token_id(),
            embedding_size: d::embedding_size(),
            head_ratio: d::head_ratio(),
            conv_kernel_size: d::conv_kernel_size(),
            num_groups: d::num_groups(),
            classifier_dropout: None,
            extra: Map::new(),
        }
    }
}

impl ConvBertConfig {
    /// Reads and validates an HF `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::checkpoint::read_json_file(path)?;
        Self::from_json_str(&text).map_err(|e| match e {
            ConvBertError::Json { source, .. } => ConvBertError::Json {
                path: path.into(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|source| ConvBertError::Json {
            path: "<string>".into(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Writes the config as pretty JSON (typed fields plus every preserved extra key).
    pub fn to_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = serde_json::to_string_pretty(self).map_err(|source| ConvBertError::Json {
            path: path.into(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(|e| ConvBertError::io(path, e))
    }

    /// Checks every constraint HF relies on, naming the offending field.
    pub fn validate(&self) -> Result<()> {
        if self.model_type != "convbert" && self.model_type != "conv_bert" {
            return Err(ConvBertError::config(
                "model_type",
                format!(
                    "{:?} is not a ConvBERT config (expected \"convbert\" or \"conv_bert\")",
                    self.model_type
                ),
            ));
        }
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("embedding_size", self.embedding_size),
            ("head_ratio", self.head_ratio),
            ("conv_kernel_size", self.conv_kernel_size),
            ("num_groups", self.num_groups),
        ] {
            if v < 1 {
                return Err(ConvBertError::config(
                    field,
                    format!("must be >= 1, got {v}"),
                ));
            }
        }
        let heads = self.attention_heads();
        if self.hidden_size % heads != 0 {
            return Err(ConvBertError::config(
                "num_attention_heads",
                format!(
                    "hidden_size {} is not divisible by the {heads} self-attention heads",
                    self.hidden_size
                ),
            ));
        }
        if (self.hidden_size / heads) % 2 != 0 {
            return Err(ConvBertError::config(
                "num_attention_heads",
                format!(
                    "hidden_size / heads = {} must be even (attention and conv halves must add up to hidden_size)",
                    self.hidden_size / heads
                ),
            ));
        }
        if self.conv_kernel_size % 2 == 0 {
            return Err(ConvBertError::config(
                "conv_kernel_size",
                format!("must be odd, got {}", self.conv_kernel_size),
            ));
        }
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
        ] {
            if v % self.num_groups != 0 {
                return Err(ConvBertError::config(
                    "num_groups",
                    format!(
                        "{field} = {v} is not divisible by num_groups = {}",
                        self.num_groups
                    ),
                ));
            }
        }
        for (field, p) in [
            ("hidden_dropout_prob", Some(self.hidden_dropout_prob)),
            (
                "attention_probs_dropout_prob",
                Some(self.attention_probs_dropout_prob),
            ),
            ("classifier_dropout", self.classifier_dropout),
        ] {
            if let Some(p) = p {
                if !(0.0..1.0).contains(&p) {
                    return Err(ConvBertError::config(
                        field,
                        format!("must lie in [0, 1), got {p}"),
                    ));
                }
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(ConvBertError::config("layer_norm_eps", "must be > 0"));
        }
        Activation::from_name(&self.hidden_act)?;
        if self.add_cross_attention() {
            return Err(ConvBertError::config(
                "add_cross_attention",
                "cross-attention is not supported (HF never feeds encoder states to it)",
            ));
        }
        Ok(())
    }

    /// Real self-attention heads: `num_attention_heads / head_ratio`, at least 1 (as HF clamps).
    pub fn attention_heads(&self) -> i64 {
        (self.num_attention_heads / self.head_ratio.max(1)).max(1)
    }

    /// Per-head size d = (hidden_size / heads) / 2; the Q/K/V width is `attention_heads() * d`.
    pub fn attention_head_size(&self) -> i64 {
        (self.hidden_size / self.attention_heads()) / 2
    }

    /// `is_decoder` (HF `PretrainedConfig`, default false): v4 then masks attention causally.
    pub fn is_decoder(&self) -> bool {
        self.extra
            .get("is_decoder")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `add_cross_attention` (default false).
    pub fn add_cross_attention(&self) -> bool {
        self.extra
            .get("add_cross_attention")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// A preserved extra key such as `id2label` or `summary_type`.
    pub fn extra(&self, key: &str) -> Option<&Value> {
        self.extra.get(key)
    }

    /// Number of labels as HF derives it: `len(id2label)`, else `num_labels`, else 2.
    pub fn num_labels(&self) -> i64 {
        if let Some(Value::Object(m)) = self.extra.get("id2label") {
            return m.len() as i64;
        }
        self.extra
            .get("num_labels")
            .and_then(Value::as_i64)
            .unwrap_or(2)
    }
}
