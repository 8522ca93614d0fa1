//! Forward throughput on the conv-bert-base shape (random weights, batch 8 x seq 128, CPU, all
//! of libtorch's threads), fp32 and bf16, against HF eager (fixtures/bench_hf.py --serve, run
//! with `$CONVBERT_PYTHON`, set by scripts/env.sh):
//!     . scripts/env.sh && cargo bench -p convbert-model --bench forward
//! The cores may be shared with other work, so each round times ours and HF back to back
//! (fp32 then bf16) and the medians over the rounds are reported, with the median of the
//! per-round ratios. Env: BENCH_SECONDS (default 4 per measurement), BENCH_ROUNDS (default 5),
//! BENCH_BATCH (default 8), BENCH_DEVICE (cpu, or cuda / cuda:N: both sides on that GPU, timed to the end
//! of the device's work), BENCH_SKIP_HF=1 to time only this crate.

use std::time::Instant;

use convbert_model::{ConvBertConfig, ConvBertInputs, ConvBertModel, ForwardOptions};
use convbert_testing::bench::{env_or, median, HfForwardServer};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const SEQ: i64 = 128;

/// Waits for the queued GPU work, so that timings cover it.
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn tokens_per_s(model: &ConvBertModel, ids: &Tensor, mask: &Tensor, seconds: f64) -> (f64, Tensor) {
    let device = ids.device();
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
    sync(device);
    let (mut n, start) = (0usize, Instant::now());
    loop {
        let _ = run();
        n += 1;
        if n % 8 == 0 || !device.is_cuda() {
            sync(device);
            let elapsed = start.elapsed().as_secs_f64();
            if elapsed >= seconds && n >= 3 {
                return (n as f64 * ids.numel() as f64 / elapsed, out);
            }
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
    let seconds: f64 = env_or("BENCH_SECONDS", 4.0);
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let batch: i64 = env_or("BENCH_BATCH", 8);
    let device_name: String = env_or("BENCH_DEVICE", "cpu".to_string());
    let device = convbert_model::parse_device(&device_name)
        .unwrap_or_else(|| panic!("BENCH_DEVICE: cpu, cuda or cuda:N, not {device_name}"));
    let threads = tch::get_num_threads();
    let _guard = tch::no_grad_guard();
    let cfg = ConvBertConfig::default(); // conv-bert-base shape
    let build = |kind: Kind| {
        tch::manual_seed(0);
        let mut vs = VarStore::new(device);
        let model = ConvBertModel::new(&vs.root(), &cfg).expect("model");
        vs.freeze();
        vs.set_kind(kind);
        (model, vs)
    };
    let (m32, _vs32) = build(Kind::Float);
    let (m16, _vs16) = build(Kind::BFloat16);
    let ids = Tensor::randint(cfg.vocab_size, [batch, SEQ], (Kind::Int64, device));
    let mask = Tensor::ones([batch, SEQ], (Kind::Int64, device));
    let mut hf = if std::env::var("BENCH_SKIP_HF").is_ok() {
        None
    } else {
        HfForwardServer::start(threads, batch, &device_name)
    };

    // [ours fp32, HF fp32, ours bf16, HF bf16] per round.
    let mut t: [Vec<f64>; 4] = Default::default();
    let mut cos = f64::NAN;
    for round in 0..rounds {
        let (o32, out32) = tokens_per_s(&m32, &ids, &mask, seconds);
        let h32 = hf.as_mut().and_then(|h| h.time("fp32", seconds));
        let (o16, out16) = tokens_per_s(&m16, &ids, &mask, seconds);
        let h16 = hf.as_mut().and_then(|h| h.time("bf16", seconds));
        cos = cosine(&out16, &out32);
        let row = [Some(o32), h32, Some(o16), h16];
        for (v, x) in t.iter_mut().zip(row) {
            v.extend(x);
        }
        let show = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.1}"));
        println!(
            "round {round}: fp32 ours {} HF {}   bf16 ours {} HF {}",
            show(Some(o32)),
            show(h32),
            show(Some(o16)),
            show(h16)
        );
    }
    let ratio = |a: &[f64], b: &[f64]| {
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        median(&r)
    };
    println!("convbert-model  {device_name}  threads {threads}  batch {batch} x seq {SEQ}  {rounds} rounds x {seconds} s, medians");
    println!("  ours fp32: {:>9.1} tokens/s", median(&t[0]));
    println!(
        "  ours bf16: {:>9.1} tokens/s   (last_hidden_state cosine vs fp32: {cos:.6})",
        median(&t[2])
    );
    if t[1].is_empty() {
        return;
    }
    println!(
        "  HF   fp32: {:>9.1} tokens/s   ours/HF = {:.2}x",
        median(&t[1]),
        ratio(&t[0], &t[1])
    );
    println!(
        "  HF   bf16: {:>9.1} tokens/s   ours/HF = {:.2}x",
        median(&t[3]),
        ratio(&t[2], &t[3])
    );
}
