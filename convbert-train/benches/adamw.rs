//! CPU cost of one AdamW step over a ConvBERT classifier's parameters: the per-parameter update
//! (one pass over each fp32 parameter, `AdamWConfig::fused = Some(false)`) against libtorch's
//! fused multi-tensor kernels (the default), on docs/finetune's model (2.1 M
//! parameters) and the conv-bert-base shape (105 M), random weights and gradients:
//!     . scripts/env.sh && BENCH_THREADS=2 cargo bench -p convbert-train --bench adamw
//! The cores may be shared, so each round times both updates back to back, and the medians over
//! rounds are reported. Env: BENCH_ROUNDS (default 5), BENCH_STEPS (steps per round and update,
//! default 10), BENCH_THREADS (default: libtorch's), BENCH_MODELS (default `finetune,base`).

use std::path::Path;
use std::time::Instant;

use convbert_model::ConvBertConfig;
use convbert_testing::bench::{cpu_model, env_or, median};
use convbert_train::data::Task;
use convbert_train::{AdamW, AdamWConfig, TaskModel};
use tch::{Device, Kind, Tensor};

/// conv-bert-base's config.json (YituTech/conv-bert-base).
const BASE: &str = r#"{"vocab_size": 30522, "hidden_size": 768, "embedding_size": 768,
    "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "max_position_embeddings": 512, "type_vocab_size": 2, "head_ratio": 2,
    "conv_kernel_size": 9, "num_groups": 1, "pad_token_id": 0}"#;

fn config(name: &str) -> ConvBertConfig {
    let parsed = match name {
        "base" => ConvBertConfig::from_json_str(BASE),
        _ => {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/finetune/config.json");
            ConvBertConfig::from_file(path)
        }
    };
    parsed.expect("config")
}

/// Milliseconds per step of `opt` over `steps` steps (gradients stay as they are).
fn ms_per_step(opt: &mut AdamW, steps: usize) -> f64 {
    let start = Instant::now();
    for step in 0..steps {
        opt.step(1e-5 * (1.0 + step as f64)).expect("step");
    }
    start.elapsed().as_secs_f64() * 1e3 / steps as f64
}

fn main() {
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let steps: usize = env_or("BENCH_STEPS", 10);
    if let Some(n) = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        tch::set_num_threads(n);
    }
    let models: String = env_or("BENCH_MODELS", "finetune,base".to_string());
    println!(
        "AdamW step on the CPU ({}, {} threads), medians of {rounds} rounds of {steps} steps",
        cpu_model(),
        tch::get_num_threads()
    );
    for name in models.split(',') {
        tch::manual_seed(0);
        let model = TaskModel::from_config(Task::TextClassification, config(name), Device::Cpu)
            .expect("model");
        let vars = model.var_store().variables();
        let params: i64 = vars.values().map(|t| t.numel() as i64).sum();
        // Define every gradient, then give it random values.
        let total = vars
            .values()
            .map(|t| t.sum(Kind::Float))
            .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
        total.backward();
        tch::no_grad(|| {
            for t in vars.values() {
                t.grad().copy_(&Tensor::randn_like(t));
            }
        });
        let adamw = |fused| {
            let config = AdamWConfig {
                weight_decay: 0.01,
                fused: Some(fused),
                ..AdamWConfig::default()
            };
            AdamW::new(model.var_store(), config).expect("adamw")
        };
        let (mut one_pass, mut fused) = (adamw(false), adamw(true));
        let _ = (ms_per_step(&mut one_pass, 1), ms_per_step(&mut fused, 1));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(ms_per_step(&mut one_pass, steps));
            b.push(ms_per_step(&mut fused, steps));
        }
        let (a, b) = (median(&a), median(&b));
        println!(
            "{name:>8} ({:.1} M parameters, {} tensors): per-parameter one-pass {a:.2} ms, \
             libtorch fused {b:.2} ms (fused / one-pass {:.2}x)",
            params as f64 / 1e6,
            vars.len(),
            b / a
        );
    }
}
