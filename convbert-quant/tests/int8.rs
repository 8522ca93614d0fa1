//! int8 dynamic quantization against the fp32 model on real text (fixtures/default-model).

use std::path::PathBuf;

use convbert_model::ConvBertModel;
use convbert_quant::{check_ops, has_op, quantize_dynamic_int8, Int8Linear, QuantError, OPS};
use convbert_tokenizer::{ConvBertTokenizer, EncodeOptions};
use tch::{Device, Kind, Tensor};

fn default_model() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/default-model"
    ))
}

const TEXTS: [&str; 4] = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "ConvBERT replaces some self-attention heads with span-based dynamic convolutions, \
     which model local dependencies more cheaply.",
    "Paris is the capital and most populous city of France.",
    "She sold the old piano to a neighbour, who played it every evening until midnight.",
];

/// Fails when libtorch drops (or renames) an operator the int8 path calls.
#[test]
fn libtorch_has_the_quantized_ops() {
    for op in OPS {
        assert!(has_op(op), "libtorch lacks {op}");
    }
    check_ops().unwrap();
    assert!(!has_op("quantized::no_such_op"));
}

#[test]
fn int8_linear_matches_fp32_linear() {
    let _g = tch::no_grad_guard();
    tch::manual_seed(0);
    let w = Tensor::randn([96, 64], (Kind::Float, Device::Cpu)) * 0.05;
    let b = Tensor::randn([96], (Kind::Float, Device::Cpu)) * 0.1;
    let x = Tensor::randn([3, 7, 64], (Kind::Float, Device::Cpu));
    let q = Int8Linear::new(&w, &b).unwrap();
    let y = q.forward(&x).unwrap();
    assert_eq!(y.size(), [3, 7, 96]);
    let reference = x.linear(&w, Some(&b));
    let cos = cosine(&y.view([-1, 96]), &reference.view([-1, 96])).min_value();
    assert!(cos > 0.999, "per-row cosine {cos}");
    // A non-contiguous view gives the same rows as its copy.
    let xt = x.transpose(0, 1);
    let yt = q.forward(&xt).unwrap();
    assert!(yt.allclose(&q.forward(&xt.contiguous()).unwrap(), 0.0, 0.0, false));
}

trait MinValue {
    fn min_value(&self) -> f64;
}

impl MinValue for Tensor {
    fn min_value(&self) -> f64 {
        self.min().double_value(&[])
    }
}

/// Row-wise cosine of two (N, D) tensors -> (N,).
fn cosine(a: &Tensor, b: &Tensor) -> Tensor {
    Tensor::cosine_similarity(a, b, -1, 1e-12)
}

#[test]
fn int8_model_matches_fp32_on_real_text() {
    let dir = default_model();
    let tok = ConvBertTokenizer::from_pretrained(&dir).unwrap();
    let (fp32, _vs) = ConvBertModel::from_pretrained(&dir, Device::Cpu, Kind::Float).unwrap();
    let (mut int8, _vs8) = ConvBertModel::from_pretrained(&dir, Device::Cpu, Kind::Float).unwrap();
    let cfg = int8.config().clone();
    // embeddings_project, then per layer the fused projections, the pointwise conv,
    // conv_kernel_layer, attention output dense, intermediate and output dense.
    let expected =
        usize::from(cfg.embedding_size != cfg.hidden_size) + cfg.num_hidden_layers as usize * 6;
    assert_eq!(quantize_dynamic_int8(&mut int8).unwrap(), expected);
    let _g = tch::no_grad_guard();
    let mut worst = f64::INFINITY;
    let mut overall = Vec::new();
    for text in TEXTS {
        let enc = tok.encode(text, &EncodeOptions::default()).unwrap();
        let ids: Vec<i64> = enc.ids.iter().map(|&i| i64::from(i)).collect();
        let ids = Tensor::from_slice(&ids).view([1, -1]);
        let a = fp32.forward_ids(&ids, None).unwrap().squeeze_dim(0);
        let b = int8.forward_ids(&ids, None).unwrap().squeeze_dim(0);
        worst = worst.min(cosine(&a, &b).min_value());
        overall.push(cosine(&a.view([1, -1]), &b.view([1, -1])).min_value());
        assert!(!a.allclose(&b, 0.0, 0.0, false), "int8 ran the fp32 path");
    }
    eprintln!("per-token cosine to fp32: worst {worst:.5}; per-text {overall:?}");
    assert!(
        overall.iter().all(|&c| c >= 0.999),
        "last_hidden_state cosine {overall:?}"
    );
    assert!(worst >= 0.999, "worst per-token cosine {worst}");
}

#[test]
fn int8_refuses_non_fp32_and_cuda_models() {
    let dir = default_model();
    let (mut bf16, _vs) =
        ConvBertModel::from_pretrained(&dir, Device::Cpu, Kind::BFloat16).unwrap();
    let err = quantize_dynamic_int8(&mut bf16).unwrap_err();
    assert!(matches!(err, QuantError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("CPU fp32"), "{err}");
    if tch::Cuda::is_available() {
        let (mut cuda, _vs) =
            ConvBertModel::from_pretrained(&dir, Device::Cuda(0), Kind::Float).unwrap();
        let err = quantize_dynamic_int8(&mut cuda).unwrap_err();
        assert!(matches!(err, QuantError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("Cuda"), "{err}");
    }
}
