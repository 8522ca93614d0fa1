//! TensorFlow names and layouts of ConvBERT weights, mapped to PyTorch's state-dict keys.
//!
//! Keras (`tf_model.h5`): HF `convert_tf_weight_name_to_pt_weight_name` and `apply_transpose`
//! (transformers v4.57.6 `modeling_tf_pytorch_utils.py`). TF1 (the authors' ELECTRA-style
//! checkpoints): the `param_mapping` of HF `load_tf_weights_in_convbert` (`modeling_convbert.py`).
//! Every layout change is a permutation of dims (plus, for one bias, a trailing unit dim), so a
//! mapped tensor is a strided view of the stored bytes: nothing is copied until it is loaded.

/// How a stored tensor's dims become PyTorch's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// PyTorch dim `i` is stored dim `perm[i]`.
    pub perm: Vec<usize>,
    /// PyTorch has one more, trailing, dim of size 1 (`key_conv_attn_layer.bias`: [A] → [A, 1]).
    pub unsqueeze: bool,
}

impl Layout {
    fn keep(rank: usize) -> Self {
        Layout {
            perm: (0..rank).collect(),
            unsqueeze: false,
        }
    }

    fn reversed(rank: usize) -> Self {
        Layout {
            perm: (0..rank).rev().collect(),
            unsqueeze: false,
        }
    }

    fn permuted(perm: &[usize]) -> Self {
        Layout {
            perm: perm.to_vec(),
            unsqueeze: false,
        }
    }

    fn unsqueezed(rank: usize) -> Self {
        Layout {
            unsqueeze: true,
            ..Self::keep(rank)
        }
    }

    /// Shape and strides (in elements) of the PyTorch view of a contiguous stored tensor.
    pub fn apply(&self, shape: &[i64], strides: &[i64]) -> (Vec<i64>, Vec<i64>) {
        let mut s: Vec<i64> = self.perm.iter().map(|&i| shape[i]).collect();
        let mut t: Vec<i64> = self.perm.iter().map(|&i| strides[i]).collect();
        if self.unsqueeze {
            s.push(1);
            t.push(1);
        }
        (s, t)
    }

    /// The inverse: how a PyTorch tensor's dims become the stored (TensorFlow) ones.
    pub fn inverse_perm(&self) -> Vec<usize> {
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inv[p] = i;
        }
        inv
    }
}

/// The PyTorch key and layout of a Keras weight (`tf_conv_bert_model/convbert/…/kernel:0`), or
/// None for a name that maps to nothing (empty). The key keeps the model's `convbert.` prefix;
/// the loader strips it for a bare model, as HF's `start_prefix_to_remove` does.
pub(crate) fn keras_to_pt(weight_name: &str, rank: usize) -> Option<(String, Layout)> {
    let name = weight_name.replace(":0", "").replace("_._", "/");
    let mut parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() > 1 {
        // Level zero is the Keras instance name of the model, arbitrary.
        parts.remove(0);
    }
    let (&last, scope) = parts.split_last()?;
    let layout = match last {
        "kernel" if rank == 4 => Layout::permuted(&[3, 2, 0, 1]),
        "kernel" => Layout::reversed(rank),
        // HF transposes [K, H, 1] to [1, H, K], then reshapes to PyTorch's [H, 1, K].
        "depthwise_kernel" if rank == 3 => Layout::permuted(&[1, 2, 0]),
        "depthwise_kernel" | "pointwise_kernel" => Layout::reversed(rank),
        "bias" if rank == 1 && scope.last() == Some(&"key_conv_attn_layer") => {
            Layout::unsqueezed(rank)
        }
        _ => Layout::keep(rank),
    };
    let last = match last {
        "kernel" | "embeddings" | "gamma" => "weight",
        "beta" => "bias",
        "pointwise_kernel" => "pointwise.weight",
        "depthwise_kernel" => "depthwise.weight",
        other => other,
    };
    let mut key = scope.join(".");
    if !key.is_empty() {
        key.push('.');
    }
    key.push_str(last);
    Some((key, layout))
}

/// The Keras weight name (without the model's instance scope and `:0`) of a PyTorch key, and
/// the layout that maps the TensorFlow tensor back to it: the inverse of [`keras_to_pt`] for
/// ConvBERT's modules.
pub(crate) fn pt_to_keras(key: &str, rank: usize) -> (String, Layout) {
    let parts: Vec<&str> = key.split('.').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        // `encoder.layer.3` is Keras's list element `encoder/layer_._3`.
        if parts[i] == "layer" && i + 1 < parts.len() && parts[i + 1].parse::<usize>().is_ok() {
            out.push(format!("layer_._{}", parts[i + 1]));
            i += 2;
            continue;
        }
        out.push(parts[i].to_string());
        i += 1;
    }
    let last = out.pop().unwrap_or_default();
    let parent = out.last().map(String::as_str).unwrap_or("");
    let tf_last = match (parent, last.as_str()) {
        ("LayerNorm", "weight") => "gamma",
        ("LayerNorm", "bias") => "beta",
        ("word_embeddings", "weight") => "weight",
        ("position_embeddings" | "token_type_embeddings", "weight") => "embeddings",
        ("depthwise", "weight") => "depthwise_kernel",
        ("pointwise", "weight") => "pointwise_kernel",
        (_, "weight") => "kernel",
        (_, other) => other,
    };
    if matches!(tf_last, "depthwise_kernel" | "pointwise_kernel") {
        out.pop();
    }
    out.push(tf_last.to_string());
    let name = out.join("/");
    let (_, layout) = keras_to_pt(&format!("model/{name}"), rank_in_tf(tf_last, &name, rank))
        .unwrap_or((String::new(), Layout::keep(rank)));
    (name, layout)
}

/// The rank of the TensorFlow tensor whose PyTorch twin has rank `pt_rank`.
fn rank_in_tf(tf_last: &str, name: &str, pt_rank: usize) -> usize {
    if tf_last == "bias" && name.ends_with("key_conv_attn_layer/bias") {
        pt_rank - 1
    } else {
        pt_rank
    }
}

/// The PyTorch key (of a bare `ConvBertModel`) and layout of a TF1 ConvBERT variable, or None
/// for what the model does not use (optimizer slots, `global_step`, the generator, the
/// discriminator head).
pub(crate) fn tf1_to_pt(name: &str, rank: usize) -> Option<(String, Layout)> {
    let rest = name.strip_prefix("electra/")?;
    let transposed = || Layout::reversed(rank);
    if let Some(e) = rest.strip_prefix("embeddings/") {
        let key = match e {
            "word_embeddings" | "position_embeddings" | "token_type_embeddings" => {
                format!("embeddings.{e}.weight")
            }
            "LayerNorm/gamma" => "embeddings.LayerNorm.weight".into(),
            "LayerNorm/beta" => "embeddings.LayerNorm.bias".into(),
            _ => return None,
        };
        return Some((key, Layout::keep(rank)));
    }
    match rest {
        "embeddings_project/kernel" => {
            return Some(("embeddings_project.weight".into(), transposed()))
        }
        "embeddings_project/bias" => {
            return Some(("embeddings_project.bias".into(), Layout::keep(rank)))
        }
        _ => {}
    }
    let rest = rest.strip_prefix("encoder/layer_")?;
    let (j, path) = rest.split_once('/')?;
    let j: usize = j.parse().ok()?;
    let layer = format!("encoder.layer.{j}");
    let (module, layout) = match path {
        "attention/self/conv_attn_key/depthwise_kernel" => (
            "attention.self.key_conv_attn_layer.depthwise.weight".to_string(),
            Layout::permuted(&[1, 2, 0]),
        ),
        "attention/self/conv_attn_key/pointwise_kernel" => (
            "attention.self.key_conv_attn_layer.pointwise.weight".to_string(),
            Layout::permuted(&[2, 1, 0]),
        ),
        "attention/self/conv_attn_key/bias" => (
            "attention.self.key_conv_attn_layer.bias".to_string(),
            Layout::unsqueezed(rank),
        ),
        _ => {
            let (module, param) = path.rsplit_once('/')?;
            let module = match module {
                "attention/self/query" | "attention/self/key" | "attention/self/value" => {
                    module.replace('/', ".")
                }
                "attention/self/conv_attn_kernel" => "attention.self.conv_kernel_layer".into(),
                "attention/self/conv_attn_point" => "attention.self.conv_out_layer".into(),
                "attention/output/dense" | "attention/output/LayerNorm" | "output/LayerNorm" => {
                    module.replace('/', ".")
                }
                "intermediate/dense" | "intermediate/g_dense" => "intermediate.dense".into(),
                "output/dense" | "output/g_dense" => "output.dense".into(),
                _ => return None,
            };
            // Grouped kernels are stored as PyTorch holds them, [groups, in/g, out/g].
            let grouped = path.contains("/g_dense/");
            let (param, layout) = match param {
                "kernel" if grouped => ("weight", Layout::keep(rank)),
                "kernel" => ("weight", transposed()),
                "gamma" => ("weight", Layout::keep(rank)),
                "beta" | "bias" => ("bias", Layout::keep(rank)),
                _ => return None,
            };
            (format!("{module}.{param}"), layout)
        }
    };
    Some((format!("{layer}.{module}"), layout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_names_follow_hf() {
        let cases = [
            ("m/convbert/embeddings/word_embeddings/weight:0", 2, "convbert.embeddings.word_embeddings.weight", vec![0, 1], false),
            ("m/convbert/embeddings/position_embeddings/embeddings:0", 2, "convbert.embeddings.position_embeddings.weight", vec![0, 1], false),
            ("m/convbert/embeddings/LayerNorm/gamma:0", 1, "convbert.embeddings.LayerNorm.weight", vec![0], false),
            ("m/convbert/encoder/layer_._1/attention/self/query/kernel:0", 2, "convbert.encoder.layer.1.attention.self.query.weight", vec![1, 0], false),
            ("m/convbert/encoder/layer_._0/intermediate/dense/kernel:0", 3, "convbert.encoder.layer.0.intermediate.dense.weight", vec![2, 1, 0], false),
            ("m/convbert/encoder/layer_._0/attention/self/key_conv_attn_layer/depthwise_kernel:0", 3, "convbert.encoder.layer.0.attention.self.key_conv_attn_layer.depthwise.weight", vec![1, 2, 0], false),
            ("m/convbert/encoder/layer_._0/attention/self/key_conv_attn_layer/pointwise_kernel:0", 3, "convbert.encoder.layer.0.attention.self.key_conv_attn_layer.pointwise.weight", vec![2, 1, 0], false),
            ("m/convbert/encoder/layer_._0/attention/self/key_conv_attn_layer/bias:0", 1, "convbert.encoder.layer.0.attention.self.key_conv_attn_layer.bias", vec![0], true),
            ("m/generator_lm_head/bias:0", 1, "generator_lm_head.bias", vec![0], false),
        ];
        for (tf, rank, pt, perm, unsqueeze) in cases {
            let (key, layout) = keras_to_pt(tf, rank).unwrap();
            assert_eq!(key, pt, "{tf}");
            assert_eq!(layout, Layout { perm, unsqueeze }, "{tf}");
            // The export names go back to the same weight.
            let pt_rank = rank + usize::from(unsqueeze);
            let (back, back_layout) = pt_to_keras(pt, pt_rank);
            assert_eq!(format!("m/{back}:0"), tf, "{pt}");
            assert_eq!(back_layout, layout, "{pt}");
        }
    }

    #[test]
    fn tf1_names_follow_hf_param_mapping() {
        let (key, layout) =
            tf1_to_pt("electra/encoder/layer_3/intermediate/g_dense/kernel", 3).unwrap();
        assert_eq!(key, "encoder.layer.3.intermediate.dense.weight");
        assert_eq!(layout, Layout::keep(3));
        let (key, layout) = tf1_to_pt(
            "electra/encoder/layer_0/attention/self/conv_attn_point/kernel",
            2,
        )
        .unwrap();
        assert_eq!(key, "encoder.layer.0.attention.self.conv_out_layer.weight");
        assert_eq!(layout, Layout::reversed(2));
        for ignored in [
            "global_step",
            "electra/embeddings/word_embeddings/adam_m",
            "electra/encoder/layer_0/output/dense/kernel/adam_v",
            "generator/embeddings_project/kernel",
            "discriminator_predictions/dense/kernel",
        ] {
            assert_eq!(tf1_to_pt(ignored, 2), None, "{ignored}");
        }
    }
}
