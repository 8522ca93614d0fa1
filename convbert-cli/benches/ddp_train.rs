//! Data-parallel `convbert train` (Gloo over 127.0.0.1) against one process, on the
//! docs/finetune setup: the same global batch of 16 as one process of `--batch-size 16`
//! (`--threads 1` and `--threads 2`) or two ranks of `--batch-size 8` (`--threads 1` each).
//!
//! Spawns the real `convbert` binary with the launcher variables torchrun sets, as
//! tests/distributed_cli.rs does, and reads examples/s from the summary JSON rank 0 prints (the
//! trainer counts every rank's examples over the optimizer steps' time: no start-up, no saving);
//! wall time is from spawn to the last process's exit. Rows are the medians of `BENCH_ROUNDS`
//! rounds run interleaved, so that a load change on the machine hits every setup alike. With
//! no more cores than ranks x threads this measures the overhead of data parallelism (the
//! gradient all-reduce, the ranks competing for the cores), not a speed-up; compare numbers from
//! the same machine only.
//!
//! Run:
//!
//! ```text
//! . scripts/env.sh && cargo bench -p convbert-cli --bench ddp_train
//! ```
//!
//! Environment: `BENCH_ROUNDS` (default 5), `BENCH_STEPS` optimizer steps per run (default 200:
//! a step of this small model takes about 10 ms, and runs of 60 steps were too short to average
//! out other load on a 2-core machine).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CONVBERT: &str = env!("CARGO_BIN_EXE_convbert");
/// How long one run may take before its processes are killed.
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// Global batch: one process of 16, or two ranks of 8.
const GLOBAL_BATCH: usize = 16;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// One row of the table.
struct Setup {
    processes: usize,
    threads: usize,
}

impl Setup {
    fn batch(&self) -> usize {
        GLOBAL_BATCH / self.processes
    }

    fn label(&self) -> String {
        format!(
            "{} x (--batch-size {}, --threads {})",
            self.processes,
            self.batch(),
            self.threads
        )
    }
}

const SETUPS: [Setup; 3] = [
    Setup {
        processes: 1,
        threads: 1,
    },
    Setup {
        processes: 1,
        threads: 2,
    },
    Setup {
        processes: 2,
        threads: 1,
    },
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> BenchResult<()> {
    let rounds: usize = convbert_testing::bench::env_parse("BENCH_ROUNDS", 5)?;
    let steps: usize = convbert_testing::bench::env_parse("BENCH_STEPS", 200)?;
    if rounds == 0 || steps == 0 {
        return Err("BENCH_ROUNDS and BENCH_STEPS must be at least 1".into());
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/finetune");
    let docs = docs
        .canonicalize()
        .map_err(|e| format!("{}: {e}", docs.display()))?;
    let config = docs.join("config.json");
    let train = docs.join("train.jsonl");
    let examples = std::fs::read_to_string(&train)?.lines().count();
    println!(
        "cpu: {}, nproc {}, load average {}",
        convbert_testing::bench::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    let scratch = std::env::temp_dir().join(format!("convbert-bench-ddp-{}", std::process::id()));
    let mut results: Vec<Vec<(f64, f64)>> = SETUPS.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, (setup, result)) in SETUPS.iter().zip(&mut results).enumerate() {
            let out = scratch.join(format!("r{round}-p{}-t{}", setup.processes, setup.threads));
            let measured = train_once(setup, &config, &train, &out, steps);
            if round == 0 && i == 0 && measured.is_ok() {
                // The trained weights, head included: the gradient all-reduced per step.
                let floats = float_count(&out.join("model.safetensors"))?;
                println!(
                    "docs/finetune: text-classification, {examples} examples, {floats} parameters \
                     ({:.1} MB of f32 gradients per all-reduce); {steps} steps of global batch \
                     {GLOBAL_BATCH}; median of {rounds} interleaved rounds",
                    floats as f64 * 4.0 / 1e6
                );
            }
            let _ = std::fs::remove_dir_all(&out);
            let (eps, wall) = measured?;
            eprintln!(
                "round {round}: {}: {eps:.1} examples/s, {wall:.2} s wall",
                setup.label()
            );
            result.push((eps, wall));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);

    let baseline = convbert_testing::bench::median(results[0].iter().map(|r| r.0));
    println!();
    println!("| setup | examples/s | ms / step | vs 1 x threads 1 | wall s (start-up included) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (setup, result) in SETUPS.iter().zip(&results) {
        let eps = convbert_testing::bench::median(result.iter().map(|r| r.0));
        let wall = convbert_testing::bench::median(result.iter().map(|r| r.1));
        println!(
            "| {} | {eps:.1} | {:.1} | {:.2} | {wall:.2} |",
            setup.label(),
            GLOBAL_BATCH as f64 / eps * 1e3,
            eps / baseline
        );
    }
    Ok(())
}

/// Floating-point elements in a safetensors file (read without libtorch: the bench does not
/// link it).
fn float_count(path: &Path) -> BenchResult<usize> {
    use safetensors::Dtype;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)?;
    Ok(tensors
        .tensors()
        .iter()
        .filter(|(_, t)| {
            matches!(
                t.dtype(),
                Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
            )
        })
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum())
}

/// One training run; (examples/s from rank 0's summary, wall seconds).
fn train_once(
    setup: &Setup,
    config: &Path,
    train: &Path,
    out: &Path,
    steps: usize,
) -> BenchResult<(f64, f64)> {
    let args: Vec<String> = [
        "train",
        "--task",
        "text-classification",
        "--config",
        &path_str(config)?,
        "--train",
        &path_str(train)?,
        "--output",
        &path_str(out)?,
        "--batch-size",
        &setup.batch().to_string(),
        "--max-steps",
        &steps.to_string(),
        "--learning-rate",
        "3e-3",
        "--warmup-ratio",
        "0.1",
        "--seed",
        "42",
        "--threads",
        &setup.threads.to_string(),
        "--no-progress",
    ]
    .map(String::from)
    .to_vec();
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let start = Instant::now();
    let mut children = Vec::new();
    for rank in 0..setup.processes {
        let mut cmd = Command::new(CONVBERT);
        cmd.args(&args)
            // OpenMP sized as --threads, so that no pool outgrows the process's share of cores.
            .env("OMP_NUM_THREADS", setup.threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in [
            "RANK",
            "LOCAL_RANK",
            "WORLD_SIZE",
            "MASTER_ADDR",
            "MASTER_PORT",
        ] {
            cmd.env_remove(var);
        }
        if setup.processes > 1 {
            cmd.env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", setup.processes.to_string())
                .args(["--ddp-timeout", "120"]);
        }
        children.push(cmd.spawn()?);
    }
    let outputs = convbert_testing::processes::wait_all(children, RUN_LIMIT)?;
    let wall = start.elapsed().as_secs_f64();
    for (rank, o) in outputs.iter().enumerate() {
        if !o.status.success() {
            return Err(format!(
                "{} rank {rank} failed ({}):\n{}",
                setup.label(),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            )
            .into());
        }
    }
    let summary: Value =
        serde_json::from_slice(&outputs[0].stdout).map_err(|e| format!("rank 0's summary: {e}"))?;
    if summary["global_step"].as_u64() != Some(steps as u64) {
        return Err(format!("{} did not run {steps} steps: {summary}", setup.label()).into());
    }
    let eps = summary["examples_per_second"]
        .as_f64()
        .ok_or_else(|| format!("no examples_per_second in {summary}"))?;
    Ok((eps, wall))
}

fn path_str(p: &Path) -> BenchResult<String> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not UTF-8", p.display()).into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}
