//! Forward throughput on the conv-bert-base shape (random weights, batch 8 x seq 128, CPU, all
//! of libtorch's threads), fp32 and bf16, side by side with HF eager (fixtures/bench_hf.py,
//! run with `$CONVBERT_PYTHON`, set by scripts/env.sh):
//!     . scripts/env.sh && cargo bench -p convbert-model --bench forward
//! Env: BENCH_SECONDS (default 10 per measurement), BENCH_SKIP_HF=1 to time only this crate.

use std::process::Command;
use std::time::Instant;

use convbert_model::{ConvBertConfig, ConvBertInputs, ConvBertModel, ForwardOptions};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const BATCH: i64 = 8;
const SEQ: i64 = 128;

fn tokens_per_s(model: &ConvBertModel, ids: &Tensor, mask: &Tensor, seconds: f64) -> (f64, Tensor) {
    let inputs = ConvBertInputs {
        input_ids: Some(ids),
        attention_mask: Some(mask),
        ..Default::default()
    };
    let opts = ForwardOptions::default();
    let run = || {
        model
            .forward_t(&inputs, &opts, false)
            .expect("forward")
            .last_hidden_state
    };
    let out = run();
    let _ = run();
    let (mut n, start) = (0usize, Instant::now());
    loop {
        let _ = run();
        n += 1;
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= seconds && n >= 3 {
            return (n as f64 * (BATCH * SEQ) as f64 / elapsed, out);
        }
    }
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (
        a.to_kind(Kind::Double).flatten(0, -1),
        b.to_kind(Kind::Double).flatten(0, -1),
    );
    (&a * &b).sum(Kind::Double).double_value(&[])
        / (a.norm().double_value(&[]) * b.norm().double_value(&[]))
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let threads = tch::get_num_threads();
    let _guard = tch::no_grad_guard();
    tch::manual_seed(0);
    let cfg = ConvBertConfig::default(); // conv-bert-base shape
    let mut vs = VarStore::new(Device::Cpu);
    let model = ConvBertModel::new(&vs.root(), &cfg).expect("model");
    vs.freeze();
    let ids = Tensor::randint(cfg.vocab_size, [BATCH, SEQ], (Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([BATCH, SEQ], (Kind::Int64, Device::Cpu));

    let (fp32, out32) = tokens_per_s(&model, &ids, &mask, seconds);
    vs.bfloat16();
    let (bf16, out16) = tokens_per_s(&model, &ids, &mask, seconds);
    let cos = cosine(&out16, &out32);
    println!("convbert-model  threads {threads}  batch {BATCH} x seq {SEQ}");
    println!("  ours fp32: {fp32:>9.1} tokens/s");
    println!("  ours bf16: {bf16:>9.1} tokens/s   (last_hidden_state cosine vs fp32: {cos:.6})");

    if std::env::var("BENCH_SKIP_HF").is_ok() {
        return;
    }
    let python = std::env::var("CONVBERT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/bench_hf.py");
    let out = Command::new(&python)
        .args([
            script,
            "--threads",
            &threads.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .output();
    let parsed = out.ok().filter(|o| o.status.success()).and_then(|o| {
        let line = String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()?
            .to_string();
        serde_json::from_str::<serde_json::Value>(&line).ok()
    });
    match parsed {
        Some(hf) => {
            let (h32, h16) = (
                hf["fp32"].as_f64().unwrap_or(f64::NAN),
                hf["bf16"].as_f64().unwrap_or(f64::NAN),
            );
            println!(
                "  HF   fp32: {h32:>9.1} tokens/s   ours/HF = {:.2}x",
                fp32 / h32
            );
            println!(
                "  HF   bf16: {h16:>9.1} tokens/s   ours/HF = {:.2}x",
                bf16 / h16
            );
        }
        None => {
            println!("  HF side skipped: could not run {python} {script} (set CONVBERT_PYTHON)")
        }
    }
}
