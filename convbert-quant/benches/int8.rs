//! int8 (dynamic quantization) vs fp32 vs bf16 forward throughput on the conv-bert-base shape
//! (random weights, batch 8 x seq 128, CPU), ours and HF eager in the same run (HF int8 is
//! `quantize_dynamic` with per-channel qint8 weights; fixtures/bench_hf.py --serve, run with
//! `$CONVBERT_PYTHON`, set by scripts/env.sh):
//!     . scripts/env.sh && BENCH_THREADS=2 cargo bench -p convbert-quant --bench int8
//! The cores may be shared, so each round times every variant back to back and the medians over
//! rounds are reported, with the median of the per-round ratios. Env: BENCH_SECONDS (default 4),
//! BENCH_ROUNDS (default 5), BENCH_BATCH (default 8), BENCH_THREADS (default: libtorch's),
//! BENCH_SKIP_HF=1 to time only ours.

use std::time::Instant;

use convbert_model::{ConvBertConfig, ConvBertModel};
use convbert_testing::bench::{env_or, median, HfForwardServer};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const SEQ: i64 = 128;

fn tokens_per_s(model: &ConvBertModel, ids: &Tensor, mask: &Tensor, seconds: f64) -> (f64, Tensor) {
    let run = || model.forward_ids(ids, Some(mask)).expect("forward");
    let out = run();
    let _ = run();
    let (mut n, start) = (0usize, Instant::now());
    loop {
        let _ = run();
        n += 1;
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= seconds && n >= 3 {
            return (n as f64 * ids.numel() as f64 / elapsed, out);
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
    if let Some(n) = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        tch::set_num_threads(n);
    }
    let threads = tch::get_num_threads();
    let _guard = tch::no_grad_guard();
    let cfg = ConvBertConfig::default(); // conv-bert-base shape
    let build = |kind: Kind| {
        tch::manual_seed(0);
        let mut vs = VarStore::new(Device::Cpu);
        let model = ConvBertModel::new(&vs.root(), &cfg).expect("model");
        vs.freeze();
        vs.set_kind(kind);
        (model, vs)
    };
    let (m32, _vs32) = build(Kind::Float);
    let (mut m8, _vs8) = build(Kind::Float);
    let n = convbert_quant::quantize_dynamic_int8(&mut m8).expect("quantize");
    let (m16, _vs16) = build(Kind::BFloat16);
    let ids = Tensor::randint(cfg.vocab_size, [batch, SEQ], (Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([batch, SEQ], (Kind::Int64, Device::Cpu));
    let mut hf = if std::env::var("BENCH_SKIP_HF").is_ok() {
        None
    } else {
        HfForwardServer::start(threads, batch, "cpu")
    };

    let names = ["fp32", "int8", "bf16"];
    let models = [&m32, &m8, &m16];
    // ours[i], hf[i] per variant, one entry per round.
    let mut ours: [Vec<f64>; 3] = Default::default();
    let mut theirs: [Vec<f64>; 3] = Default::default();
    let (mut cos8, mut cos16) = (f64::NAN, f64::NAN);
    for round in 0..rounds {
        let mut outs = Vec::new();
        let mut line = format!("round {round}:");
        for i in 0..3 {
            let (o, out) = tokens_per_s(models[i], &ids, &mask, seconds);
            let h = hf.as_mut().and_then(|h| h.time(names[i], seconds));
            ours[i].push(o);
            theirs[i].extend(h);
            outs.push(out);
            let hs = h.map_or("-".into(), |x| format!("{x:.1}"));
            line += &format!("  {} ours {o:.1} HF {hs}", names[i]);
        }
        cos8 = cosine(&outs[1], &outs[0]);
        cos16 = cosine(&outs[2].to_kind(Kind::Float), &outs[0]);
        println!("{line}");
    }
    let ratio = |a: &[f64], b: &[f64]| {
        let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        median(&r)
    };
    println!(
        "convbert-quant  cpu  threads {threads}  batch {batch} x seq {SEQ}  {rounds} rounds x {seconds} s, medians; {n} int8 GEMMs"
    );
    println!("  ours fp32: {:>8.1} tokens/s", median(&ours[0]));
    println!(
        "  ours int8: {:>8.1} tokens/s   int8/fp32 = {:.2}x   (last_hidden_state cosine vs fp32: {cos8:.6})",
        median(&ours[1]),
        ratio(&ours[1], &ours[0])
    );
    println!(
        "  ours bf16: {:>8.1} tokens/s   bf16/fp32 = {:.2}x   (cosine vs fp32: {cos16:.6})",
        median(&ours[2]),
        ratio(&ours[2], &ours[0])
    );
    if theirs.iter().any(|v| v.len() != rounds) {
        return;
    }
    for i in 0..3 {
        println!(
            "  HF   {}: {:>8.1} tokens/s   ours/HF = {:.2}x{}",
            names[i],
            median(&theirs[i]),
            ratio(&ours[i], &theirs[i]),
            if i == 1 {
                format!("   HF int8/fp32 = {:.2}x", ratio(&theirs[1], &theirs[0]))
            } else {
                String::new()
            }
        );
    }
}
