//! `ConvBertSequenceSummary`: pools (N, L, D) hidden states to one vector per sequence for the
//! multiple-choice head, driven by the `summary_*` keys that `ConvBertConfig` does not declare but HF
//! reads with `getattr` (SPEC §3.4). Reference: transformers v4.57.6 `modeling_convbert.py`,
//! `ConvBertSequenceSummary` (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L673>).

use convbert_model::{Activation, ConvBertConfig};
use serde_json::Value;
use tch::{nn, Tensor};

use crate::error::{ConvBertHeadError, Result};
use convbert_model::primitives::{dropout, Linear, LinearKernelFactory};

/// Which position(s) of the sequence the summary reads (`summary_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryType {
    /// `"last"`, HF's default when the key is absent: `h[:, -1]`, a `[PAD]` state for right-padded rows.
    Last,
    /// `"first"`: `h[:, 0]`.
    First,
    /// `"mean"`: mean over all L positions, padding included.
    Mean,
    /// `"cls_index"`: the multiple-choice head passes no index, so HF gathers the last position.
    ClsIndex,
}

/// Select, then `summary_first_dropout`, then the optional `summary` Linear, then
/// `summary_activation`, then `summary_last_dropout` — HF's order.
#[derive(Debug)]
pub struct ConvBertSequenceSummary {
    summary_type: SummaryType,
    summary: Option<Linear>,
    activation: Option<Activation>,
    first_dropout: f64,
    last_dropout: f64,
}

/// Python truthiness of an optional JSON attribute (absent and `null` are false).
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn config_error(field: &str, reason: impl Into<String>) -> ConvBertHeadError {
    ConvBertHeadError::Config {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A dropout probability attribute: used only when present and > 0, as HF's `hasattr(...) and p > 0`.
fn dropout_prob(cfg: &ConvBertConfig, field: &str) -> Result<f64> {
    match cfg.extra(field) {
        None | Some(Value::Null) => Ok(0.0),
        Some(v) => match v.as_f64() {
            Some(p) if (0.0..1.0).contains(&p) => Ok(p.max(0.0)),
            Some(p) if p < 0.0 => Ok(0.0),
            _ => Err(config_error(
                field,
                format!("expected a probability in [0, 1), got {v}"),
            )),
        },
    }
}

impl ConvBertSequenceSummary {
    /// Builds the summary from the config; creates `summary.weight/bias` under `p` only when
    /// `summary_use_proj` is truthy (Linear D -> num_labels if `summary_proj_to_labels`, else D -> D).
    pub fn new(p: &nn::Path, cfg: &ConvBertConfig, num_labels: i64) -> Result<Self> {
        let summary_type = match cfg.extra("summary_type") {
            None => SummaryType::Last,
            Some(Value::String(s)) => match s.as_str() {
                "last" => SummaryType::Last,
                "first" => SummaryType::First,
                "mean" => SummaryType::Mean,
                "cls_index" => SummaryType::ClsIndex,
                "attn" => {
                    return Err(config_error(
                        "summary_type",
                        "\"attn\" is not implemented (nor in HF)",
                    ))
                }
                other => {
                    return Err(config_error(
                        "summary_type",
                        format!("unknown value {other:?}"),
                    ))
                }
            },
            Some(v) => {
                return Err(config_error(
                    "summary_type",
                    format!("expected a string, got {v}"),
                ))
            }
        };
        let summary = if truthy(cfg.extra("summary_use_proj")) {
            let out = if truthy(cfg.extra("summary_proj_to_labels")) && num_labels > 0 {
                num_labels
            } else {
                cfg.hidden_size
            };
            Some(Linear::new(
                &(p / "summary"),
                cfg.hidden_size,
                out,
                cfg.initializer_range,
            )?)
        } else {
            None
        };
        let activation = match cfg.extra("summary_activation") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() || s == "linear" => None,
            Some(Value::String(s)) => Some(
                Activation::from_name(s)
                    .map_err(|e| config_error("summary_activation", e.to_string()))?,
            ),
            Some(v) => {
                return Err(config_error(
                    "summary_activation",
                    format!("expected a string, got {v}"),
                ))
            }
        };
        Ok(Self {
            summary_type,
            summary,
            activation,
            first_dropout: dropout_prob(cfg, "summary_first_dropout")?,
            last_dropout: dropout_prob(cfg, "summary_last_dropout")?,
        })
    }

    /// Width of the summary for `hidden_size` inputs: the projection's output size, else unchanged.
    pub fn output_size(&self, hidden_size: i64) -> i64 {
        self.summary
            .as_ref()
            .map_or(hidden_size, |l| l.out_features())
    }

    /// The projection (when there is one) through `make`'s kernel; how many kernels were made.
    pub fn replace_linears(
        &mut self,
        make: &mut LinearKernelFactory,
    ) -> convbert_model::Result<usize> {
        match self.summary.as_mut() {
            Some(summary) => {
                summary.replace_kernel(make)?;
                Ok(1)
            }
            None => Ok(0),
        }
    }

    /// (N, L, D) hidden states -> (N, D), or (N, num_labels) with a projection to the labels.
    pub fn forward_t(&self, hidden_states: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = match self.summary_type {
            SummaryType::Last | SummaryType::ClsIndex => hidden_states.f_select(1, -1)?,
            SummaryType::First => hidden_states.f_select(1, 0)?,
            SummaryType::Mean => hidden_states.f_mean_dim(1, false, None)?,
        };
        x = dropout(x, self.first_dropout, train)?;
        if let Some(summary) = &self.summary {
            x = summary.forward(&x)?;
        }
        if let Some(act) = self.activation {
            x = act.apply(&x)?;
        }
        Ok(dropout(x, self.last_dropout, train)?)
    }
}
