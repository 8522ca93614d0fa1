//! Small-batch GPU inference with and without CUDA graphs, on the conv-bert-base shape (random
//! weights, fp32, seq 128): tokens/s (calls queued back to back, the clock read every 8) and p50
//! latency (each call waited for) of ours eager, ours through a GraphCache (inputs copied from
//! the host on every call, outputs copied out) and HF eager (fixtures/bench_hf.py --serve, run
//! with `$CONVBERT_PYTHON`) in the same run, with the ratios to HF; and the largest difference
//! between the graph's and the eager last_hidden_state.
//!     . scripts/env.sh && cargo bench -p convbert-cuda-graphs --features cuda --bench graphs
//! Env: BENCH_DEVICE (default cuda), BENCH_BATCHES (default 1,8,64), BENCH_SECONDS (default 2
//! per measurement), BENCH_ROUNDS (default 3; medians), BENCH_SKIP_HF=1.

use std::time::Instant;

use convbert_cuda_graphs::{
    GraphCache, GraphError, GraphInputs, GraphPolicy, HostBatch, InputLimits,
};
use convbert_model::{ConvBertConfig, ConvBertModel, ForwardOptions};
use convbert_testing::bench::{env_or, median, HfForwardServer};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const SEQ: usize = 128;

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// (tokens/s with calls queued, p50 ms of a waited-for call) of `run` over `seconds` each.
fn measure(device: Device, tokens: usize, seconds: f64, mut run: impl FnMut()) -> (f64, f64) {
    run();
    run();
    sync(device);
    let (mut n, start) = (0usize, Instant::now());
    let tps = loop {
        run();
        n += 1;
        if n % 8 == 0 {
            sync(device);
            let elapsed = start.elapsed().as_secs_f64();
            if elapsed >= seconds {
                break (n * tokens) as f64 / elapsed;
            }
        }
    };
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds || times.len() < 3 {
        let t0 = Instant::now();
        run();
        sync(device);
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    (tps, median(&times))
}

/// The bench's error: the model's or the cache's, as text.
#[derive(Debug)]
struct BenchError(String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<GraphError> for BenchError {
    fn from(e: GraphError) -> Self {
        Self(e.to_string())
    }
}

fn encoder(m: &ConvBertModel, x: &GraphInputs) -> Result<Vec<Tensor>, BenchError> {
    let opts = ForwardOptions {
        padding_invariant: true,
        ..Default::default()
    };
    let out = m
        .forward_t(&x.model_inputs(), &opts, false)
        .map_err(|e| BenchError(e.to_string()))?;
    Ok(vec![out.last_hidden_state])
}

fn main() {
    let seconds: f64 = env_or("BENCH_SECONDS", 2.0);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let device_name: String = env_or("BENCH_DEVICE", "cuda".to_string());
    let batches: String = env_or("BENCH_BATCHES", "1,8,64".to_string());
    let device = convbert_model::parse_device(&device_name)
        .unwrap_or_else(|| panic!("BENCH_DEVICE: cpu, cuda or cuda:N, not {device_name}"));
    if device.is_cuda() && !tch::Cuda::is_available() {
        println!("convbert-cuda-graphs bench: no CUDA device, nothing to time");
        return;
    }
    let _guard = tch::no_grad_guard();
    let cfg = ConvBertConfig::default(); // conv-bert-base shape
    tch::manual_seed(0);
    let mut vs = VarStore::new(device);
    let model = ConvBertModel::new(&vs.root(), &cfg).expect("model");
    vs.freeze();
    let limits = InputLimits {
        vocab_size: cfg.vocab_size,
        type_vocab_size: cfg.type_vocab_size,
        max_len: cfg.max_position_embeddings as usize,
    };
    let mut cache = GraphCache::new(device, limits, GraphPolicy::default());
    if let Some(why) = cache.unavailable() {
        println!("graphs unavailable, the graph rows run eagerly: {why}");
    }
    println!("convbert-cuda-graphs  {device_name}  fp32  seq {SEQ}  {rounds} rounds x {seconds} s, medians");
    for batch in batches
        .split(',')
        .filter_map(|b| b.trim().parse::<usize>().ok())
    {
        let n = batch * SEQ;
        let ids: Vec<i64> = Tensor::randint(cfg.vocab_size, [n as i64], (Kind::Int64, Device::Cpu))
            .try_into()
            .expect("ids");
        let (mask, types) = (vec![1i64; n], vec![0i64; n]);
        let host = HostBatch {
            input_ids: &ids,
            attention_mask: &mask,
            token_type_ids: &types,
            rows: batch,
            len: SEQ,
            pad_length: true,
        };
        let shape = [batch as i64, SEQ as i64];
        let on_device = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
        let (d_ids, d_mask, d_types) = (on_device(&ids), on_device(&mask), on_device(&types));
        let device_inputs = GraphInputs {
            input_ids: &d_ids,
            attention_mask: &d_mask,
            token_type_ids: &d_types,
        };
        let eager_out = encoder(&model, &device_inputs).expect("eager")[0].to_device(Device::Cpu);
        let graph_out = cache
            .run("encoder", &host, |x| encoder(&model, x))
            .expect("graph")[0]
            .to_device(Device::Cpu);
        let diff = (eager_out - graph_out).abs().max().double_value(&[]);
        let mut hf = if std::env::var("BENCH_SKIP_HF").is_ok() {
            None
        } else {
            HfForwardServer::start(tch::get_num_threads(), batch as i64, &device_name)
        };
        // [eager, graphs, HF] x [tokens/s, p50 ms] per round.
        let mut t: [Vec<f64>; 6] = Default::default();
        for _ in 0..rounds {
            let eager = measure(device, n, seconds, || {
                encoder(&model, &device_inputs).expect("eager");
            });
            let graphs = measure(device, n, seconds, || {
                cache
                    .run("encoder", &host, |x| encoder(&model, x))
                    .expect("graph");
            });
            let hf_row = hf
                .as_mut()
                .and_then(|h| Some((h.time("fp32", seconds)?, h.p50_ms("fp32", seconds)?)));
            t[0].push(eager.0);
            t[1].push(eager.1);
            t[2].push(graphs.0);
            t[3].push(graphs.1);
            if let Some((tps, p50)) = hf_row {
                t[4].push(tps);
                t[5].push(p50);
            }
        }
        let stats = cache.stats();
        println!("batch {batch} x {SEQ}: graph vs eager max |diff| {diff:.2e}  (graphs held {}, captures {}, replays {}, eager {}, failed {})",
            stats.graphs, stats.captures, stats.replays, stats.eager, stats.failed_captures);
        let row = |name: &str, tps: &[f64], p50: &[f64]| {
            println!(
                "  {name:<12} {:>10.0} tokens/s   p50 {:>8.3} ms",
                median(tps),
                median(p50)
            );
        };
        row("ours eager", &t[0], &t[1]);
        row("ours graphs", &t[2], &t[3]);
        if !t[4].is_empty() {
            row("HF eager", &t[4], &t[5]);
            println!(
                "  graphs / HF: tokens/s {:.2}x, p50 latency HF / graphs {:.2}x;  eager / HF: tokens/s {:.2}x",
                median(&t[2]) / median(&t[4]),
                median(&t[5]) / median(&t[3]),
                median(&t[0]) / median(&t[4]),
            );
        }
    }
}
