//! Writing a `VarStore` as the `tf_model.h5` of HF's `TFConvBert*` classes, and the check that
//! TensorFlow can build the config at all.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind};

use super::tf_h5::{self, H5Layer};
use super::tf_names;
use super::BASE_PREFIX;
use crate::config::ConvBertConfig;
use crate::error::{ConvBertError, Result};

/// The Keras layers of every ConvBERT class, in the order the TF models create them.
const LAYER_ORDER: [&str; 7] = [
    "convbert",
    "generator_predictions",
    "generator_lm_head",
    "sequence_summary",
    "classifier",
    "qa_outputs",
    "",
];

/// Errors unless TensorFlow's ConvBERT computes what PyTorch's does for `config`: TF's heads are
/// `hidden_size / num_attention_heads` wide, PyTorch's `hidden_size / (heads / head_ratio) / 2`.
pub fn check_tf_compatible(config: &ConvBertConfig) -> Result<()> {
    let heads = config.attention_heads();
    let tf_size =
        if config.num_attention_heads > 0 && config.hidden_size % config.num_attention_heads == 0 {
            Some(config.hidden_size / config.num_attention_heads)
        } else {
            None
        };
    let pt_size = config.attention_head_size();
    if tf_size == Some(pt_size) {
        return Ok(());
    }
    Err(ConvBertError::Config {
        field: "num_attention_heads".into(),
        reason: format!(
            "TensorFlow's ConvBERT cannot represent this model: its attention heads are \
             hidden_size / num_attention_heads = {} wide, PyTorch's (hidden_size / {heads} heads) / 2 \
             = {pt_size}; they agree only when num_attention_heads / head_ratio = \
             num_attention_heads / 2 (num_attention_heads = {}, head_ratio = {})",
            tf_size.map_or("not an integer".into(), |s| s.to_string()),
            config.num_attention_heads,
            config.head_ratio
        ),
    })
}

/// Writes every var of `vs` to `path` as a Keras weights file that `TFConvBert*.from_pretrained`
/// and PyTorch's TF loader read: one HDF5 group per top-level module (`convbert`, `classifier`,
/// …), weights named `<model_scope>/<module>/…:0` in TensorFlow's layouts. A bare model's vars
/// (no `convbert.` prefix) go under `convbert`, as `TFConvBertModel` names them. The file is
/// written next to `path` and renamed into place.
pub fn save_tf_h5(
    vs: &VarStore,
    config: &ConvBertConfig,
    path: impl AsRef<Path>,
    model_scope: &str,
) -> Result<()> {
    let path = path.as_ref();
    check_tf_compatible(config)?;
    let vars = vs.variables();
    let prefixed = vars.keys().any(|k| k.starts_with(BASE_PREFIX));
    let mut layers: BTreeMap<usize, H5Layer> = BTreeMap::new();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let key = if prefixed {
            name.clone()
        } else {
            format!("{BASE_PREFIX}{name}")
        };
        let layer = key.split('.').next().unwrap_or_default();
        let slot = LAYER_ORDER
            .iter()
            .position(|l| *l == layer)
            .unwrap_or(LAYER_ORDER.len() - 1);
        let t = &vars[name];
        let (tf_name, layout) = tf_names::pt_to_keras(&key, t.dim());
        let mut t = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?;
        if layout.unsqueeze {
            t = t.f_squeeze_dim(-1)?;
        }
        let perm: Vec<i64> = layout.inverse_perm().iter().map(|&p| p as i64).collect();
        let t = t.f_permute(perm.as_slice())?.f_contiguous()?;
        let shape = t.size();
        let values = Vec::<f32>::try_from(t.f_flatten(0, -1)?)?;
        layers
            .entry(slot)
            .or_insert_with(|| H5Layer {
                name: layer.to_string(),
                weights: Vec::new(),
            })
            .weights
            .push((format!("{model_scope}/{tf_name}:0"), shape, values));
    }
    let mut layers: Vec<H5Layer> = layers.into_values().collect();
    share_embeddings_with_lm_head(&mut layers, model_scope);
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("tf_model.h5");
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let written = tf_h5::write_weights(&tmp, &layers)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| ConvBertError::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The embeddings a Keras layer holds, in the order `TFConvBertEmbeddings` creates them.
const EMBEDDINGS: [&str; 5] = [
    "convbert/embeddings/word_embeddings/weight",
    "convbert/embeddings/token_type_embeddings/embeddings",
    "convbert/embeddings/position_embeddings/embeddings",
    "convbert/embeddings/LayerNorm/gamma",
    "convbert/embeddings/LayerNorm/beta",
];

/// `TFConvBertMaskedLMHead` holds the embeddings layer it decodes with, so Keras saves the
/// embeddings a second time in the `generator_lm_head` group; files written here do the same.
fn share_embeddings_with_lm_head(layers: &mut [H5Layer], model_scope: &str) {
    let names: Vec<String> = EMBEDDINGS
        .iter()
        .map(|n| format!("{model_scope}/{n}:0"))
        .collect();
    let copies: Vec<(String, Vec<i64>, Vec<f32>)> = layers
        .iter()
        .filter(|l| l.name == "convbert")
        .flat_map(|l| l.weights.iter())
        .filter(|w| names.contains(&w.0))
        .cloned()
        .collect();
    if let Some(head) = layers.iter_mut().find(|l| l.name == "generator_lm_head") {
        for name in &names {
            if let Some(w) = copies.iter().find(|w| &w.0 == name) {
                head.weights.push(w.clone());
            }
        }
    }
}
