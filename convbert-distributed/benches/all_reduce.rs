//! Time of one `ProcessGroup::all_reduce_mean` (Gloo, 2 processes on 127.0.0.1) of one flat f32
//! buffer the size of conv-bert-base's gradients (what `convbert train` reduces once per
//! optimizer step), and of 1/4 and 1/16 of it.
//!
//! The parameter count is that of a `ConvBertModel` built by convbert-model from the
//! YituTech/conv-bert-base config (no task head). The bench re-executes itself as the two ranks,
//! as tests/two_process.rs does. Every round starts after a barrier, so it times the collective
//! and not the ranks' skew; a round's time is the slower rank's, as a training step waits for it.
//! GB/s is the algorithmic bandwidth, bytes of the buffer / time (for 2 ranks it equals the bus
//! bandwidth, 2(n-1)/n = 1).
//!
//! Run:
//!
//! ```text
//! . scripts/env.sh && cargo bench -p convbert-distributed --bench all_reduce
//! ```
//!
//! Environment: `BENCH_ROUNDS` timed rounds per size (default 10, after 2 warm-up rounds);
//! `BENCH_THREADS` intra-op threads per rank for the division by the world size (default 1, as
//! `convbert train --threads 1`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use convbert_distributed::{DistEnv, ProcessGroup};
use convbert_model::{ConvBertConfig, ConvBertModel};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Set in the re-executed ranks; holds the element count of the largest buffer.
const NUMEL_VAR: &str = "CONVBERT_BENCH_ALL_REDUCE_NUMEL";
const WARM_UP: usize = 2;
const GROUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the parent waits for both ranks before killing them.
const JOB_LIMIT: Duration = Duration::from_secs(1200);
/// Fractions of the full gradient timed.
const DIVISORS: [usize; 3] = [1, 4, 16];

/// YituTech/conv-bert-base's config.json (the fields that size the model).
const CONV_BERT_BASE: &str = r#"{
  "model_type": "convbert", "vocab_size": 30522, "hidden_size": 768, "embedding_size": 768,
  "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
  "max_position_embeddings": 512, "type_vocab_size": 2, "head_ratio": 2,
  "conv_kernel_size": 9, "num_groups": 1
}"#;

fn main() -> ExitCode {
    let result = match std::env::var(NUMEL_VAR) {
        Ok(numel) => worker(&numel),
        Err(_) => parent(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn conv_bert_base_numel() -> BenchResult<usize> {
    let cfg = ConvBertConfig::from_json_str(CONV_BERT_BASE)?;
    let vs = VarStore::new(Device::Cpu);
    let _model = ConvBertModel::new(&vs.root(), &cfg)?;
    Ok(vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel())
        .sum::<usize>())
}

fn parent() -> BenchResult<()> {
    let numel = conv_bert_base_numel()?;
    let rounds: usize = convbert_testing::bench::env_parse("BENCH_ROUNDS", 10)?;
    println!(
        "all_reduce_mean, Gloo, 2 ranks on 127.0.0.1; cpu: {}, nproc {}, load average {}",
        convbert_testing::bench::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "conv-bert-base (ConvBertModel, no head): {numel} parameters = {:.1} MB of f32 gradients; \
         median of {rounds} rounds after {WARM_UP} warm-up",
        numel as f64 * 4.0 / 1e6
    );
    let exe = std::env::current_exe()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tempfile_dir()?;
    let mut ranks = Vec::new();
    for rank in 0..2 {
        let log = dir.join(format!("rank{rank}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(&exe)
            .env(NUMEL_VAR, numel.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", "2")
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        ranks.push((child, log));
    }
    let ok = wait_all(&mut ranks, JOB_LIMIT)?;
    let logs: Vec<String> = ranks
        .iter()
        .map(|(_, log)| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    if !ok {
        for (rank, log) in logs.iter().enumerate() {
            eprintln!("--- rank {rank}:\n{log}");
        }
        return Err("a rank failed".into());
    }
    // Rank 0 prints the table.
    print!("{}", logs[0]);
    Ok(())
}

fn worker(numel: &str) -> BenchResult<()> {
    let numel: usize = numel.parse()?;
    let rounds: usize = convbert_testing::bench::env_parse("BENCH_ROUNDS", 10)?;
    tch::set_num_threads(convbert_testing::bench::env_parse("BENCH_THREADS", 1)?);
    let group = ProcessGroup::new(&DistEnv::from_env()?, GROUP_TIMEOUT)?;
    let main = group.rank() == 0;
    if main {
        println!();
        println!("| floats | MB | ms / all-reduce (median) | min ms | max ms | GB/s (median) |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    }
    for div in DIVISORS {
        let n = numel / div;
        // Ranks hold different values so that the mean is checked, not assumed.
        let mut t = Tensor::f_full(
            [n as i64],
            (group.rank() + 1) as f64,
            (Kind::Float, Device::Cpu),
        )?;
        let mut mine = Vec::with_capacity(rounds);
        for round in 0..WARM_UP + rounds {
            group.barrier()?;
            let start = Instant::now();
            group.all_reduce_mean(&mut t)?;
            let secs = start.elapsed().as_secs_f64();
            if round >= WARM_UP {
                mine.push(secs);
            }
        }
        // The mean of 1 and 2 is 1.5, and stays so under further means of equal values.
        let (lo, hi) = (t.f_min()?.double_value(&[]), t.f_max()?.double_value(&[]));
        if lo != 1.5 || hi != 1.5 {
            return Err(
                format!("all-reduce of {n} floats gave values in [{lo}, {hi}], not 1.5").into(),
            );
        }
        let all = group.all_gather_f64(&mine)?;
        let mut slowest: Vec<f64> = (0..rounds)
            .map(|i| all.iter().map(|r| r[i]).fold(0.0, f64::max))
            .collect();
        slowest.sort_by(f64::total_cmp);
        let median = slowest[slowest.len() / 2];
        let bytes = n as f64 * 4.0;
        if main {
            println!(
                "| {n} (1/{div}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                bytes / 1e6,
                median * 1e3,
                slowest[0] * 1e3,
                slowest[slowest.len() - 1] * 1e3,
                bytes / median / 1e9
            );
        }
    }
    group.barrier()?;
    Ok(())
}

/// Waits for every child; past `limit` kills them all. `Ok(false)` when one failed.
fn wait_all(children: &mut [(Child, PathBuf)], limit: Duration) -> BenchResult<bool> {
    let start = Instant::now();
    let mut done = vec![None; children.len()];
    while done.iter().any(Option::is_none) {
        for ((child, _), status) in children.iter_mut().zip(&mut done) {
            if status.is_none() {
                *status = child.try_wait()?;
            }
        }
        if start.elapsed() > limit {
            for (child, _) in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(format!("ranks still running after {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(done.iter().flatten().all(|s| s.success()))
}

fn tempfile_dir() -> BenchResult<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("convbert-bench-all-reduce-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}
