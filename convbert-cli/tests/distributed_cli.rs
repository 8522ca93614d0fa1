//! `convbert train` as ranks of a torch.distributed job (Gloo over 127.0.0.1): two processes with
//! per-process batch 4 end on the weights of one process with batch 8, with accumulation and
//! clipping; only rank 0 writes and prints; resume needs the same world size; a killed rank makes
//! the other fail within the timeout; torchrun launches the binary as it is.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use convbert_testing::processes::{free_port, wait_all};
use serde_json::Value;
use tch::{Kind, Tensor};

/// A fresh directory holding the docs/finetune data and its config without dropout (two
/// processes with half batches would see other dropout masks than one with whole batches).
fn setup(name: &str) -> PathBuf {
    let dir = common::tmp(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clean");
    }
    std::fs::create_dir_all(&dir).expect("dir");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/finetune");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(docs.join("config.json")).expect("config"))
            .expect("json");
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
    for file in ["train.jsonl", "eval.jsonl"] {
        std::fs::copy(docs.join(file), dir.join(file)).expect("copy");
    }
    dir
}

fn train_args(dir: &Path, out: &str, batch: usize, extra: &[&str]) -> Vec<String> {
    let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let mut args: Vec<String> = [
        "train",
        "--task",
        "text-classification",
        "--config",
        &d("config.json"),
        "--train",
        &d("train.jsonl"),
        "--output",
        &d(out),
        "--batch-size",
        &batch.to_string(),
        "--gradient-accumulation-steps",
        "2",
        "--max-grad-norm",
        "0.5",
        "--learning-rate",
        "3e-3",
        "--warmup-ratio",
        "0.1",
        "--logging-steps",
        "1",
        // Every example cut to 6 tokens: no padding, which ConvBERT's convolution (as in HF) lets
        // leak into the outputs, so half batches would see other padding than whole ones.
        "--max-length",
        "6",
        "--seed",
        "7",
        "--threads",
        "1",
        "--no-progress",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Starts `world` ranks of `convbert args` with the launcher variables torchrun sets.
fn spawn_ranks(args: &[String], world: usize, timeout: &str) -> Vec<Child> {
    let port = free_port().to_string();
    (0..world)
        .map(|rank| {
            Command::new(env!("CARGO_BIN_EXE_convbert"))
                .args(args)
                .args(["--ddp-timeout", timeout])
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("OMP_NUM_THREADS", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn rank")
        })
        .collect()
}

/// `convbert args` as one process, outside any job.
fn run_alone(args: &[String]) -> Output {
    common::convbert(&args.iter().map(String::as_str).collect::<Vec<_>>(), b"")
}

fn run_ranks(args: &[String], world: usize) -> Vec<Output> {
    let outs = wait_all(spawn_ranks(args, world, "120"), Duration::from_secs(300)).expect("ranks");
    for (rank, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", common::stderr(o));
    }
    outs
}

fn weights(dir: &Path) -> Vec<(String, Tensor)> {
    let mut w = Tensor::read_safetensors(dir.join("model.safetensors")).expect("weights");
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn max_weight_diff(a: &Path, b: &Path) -> f64 {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    wa.iter()
        .zip(&wb)
        .map(|((na, ta), (nb, tb))| {
            assert_eq!(na, nb);
            (ta.to_kind(Kind::Double) - tb.to_kind(Kind::Double))
                .abs()
                .max()
                .double_value(&[])
        })
        .fold(0.0, f64::max)
}

fn log_losses(dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(dir.join("train_log.jsonl"))
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("line"))
        .filter_map(|v| Some((v["step"].as_u64()?, v["loss"].as_f64()?)))
        .collect()
}

#[test]
fn two_ranks_of_batch_4_end_where_one_process_of_batch_8_ends() {
    let dir = setup("ddp-equal");
    let eval = dir.join("eval.jsonl").to_string_lossy().into_owned();
    let steps = [
        "--max-steps",
        "6",
        "--save-steps",
        "3",
        "--eval",
        &eval,
        "--eval-steps",
        "3",
    ];
    let single = run_alone(&train_args(&dir, "single", 8, &steps));
    assert!(single.status.success(), "{}", common::stderr(&single));
    let outs = run_ranks(&train_args(&dir, "ddp", 4, &steps), 2);
    let diff = max_weight_diff(&dir.join("single"), &dir.join("ddp"));
    assert!(
        diff < 1e-5,
        "2 x batch 4 vs 1 x batch 8: weights off by {diff:e}"
    );
    // The logged loss is the mean over the ranks: the one process's loss.
    let (a, b) = (
        log_losses(&dir.join("single")),
        log_losses(&dir.join("ddp")),
    );
    assert_eq!(a.len(), 6);
    assert_eq!(
        a.iter().map(|x| x.0).collect::<Vec<_>>(),
        b.iter().map(|x| x.0).collect::<Vec<_>>()
    );
    for ((step, la), (_, lb)) in a.iter().zip(&b) {
        assert!((la - lb).abs() < 1e-5, "step {step}: loss {la} vs {lb}");
    }
    // Rank 0 prints the summary; rank 1 prints and writes nothing of its own.
    let summary: Value = serde_json::from_slice(&outs[0].stdout).expect("summary");
    assert_eq!(summary["global_step"], 6);
    // Evaluation is sharded over the ranks and gathered: the metrics of the whole set.
    let alone: Value = serde_json::from_slice(&single.stdout).expect("summary");
    assert_eq!(summary["eval_metrics"], alone["eval_metrics"]);
    let eval_diff = (summary["eval_loss"].as_f64().expect("loss")
        - alone["eval_loss"].as_f64().expect("loss"))
    .abs();
    assert!(eval_diff < 1e-5, "eval loss off by {eval_diff:e}");
    assert!(
        outs[1].stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&outs[1].stdout)
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("ddp/checkpoint-6/trainer_state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state["world_size"], 2);
    println!("2 x batch 4 vs 1 x batch 8: max |diff| weights {diff:.2e}");
}

#[test]
fn a_resumed_two_rank_run_ends_where_an_uninterrupted_one_ends_and_needs_two_ranks() {
    let dir = setup("ddp-resume");
    let steps = ["--max-steps", "6", "--save-steps", "3"];
    run_ranks(&train_args(&dir, "straight", 4, &steps), 2);
    let resumed_dir = dir.join("resumed");
    std::fs::create_dir_all(resumed_dir.join("checkpoint-3")).expect("dir");
    for entry in std::fs::read_dir(dir.join("straight/checkpoint-3")).expect("checkpoint") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            resumed_dir.join("checkpoint-3").join(entry.file_name()),
        )
        .expect("copy");
    }
    let checkpoint = resumed_dir
        .join("checkpoint-3")
        .to_string_lossy()
        .into_owned();
    let mut resume = steps.to_vec();
    resume.extend(["--resume-from", &checkpoint]);
    // One process cannot take over a two-process run: its share of the data would differ.
    let alone = run_alone(&train_args(&dir, "resumed", 8, &resume));
    assert_eq!(alone.status.code(), Some(1), "{}", common::stderr(&alone));
    let err = common::stderr(&alone);
    assert!(
        err.contains("2 process(es)") && err.contains("WORLD_SIZE=2"),
        "{err}"
    );
    run_ranks(&train_args(&dir, "resumed", 4, &resume), 2);
    let diff = max_weight_diff(&dir.join("straight"), &resumed_dir);
    assert!(
        diff == 0.0,
        "resumed vs uninterrupted: weights off by {diff:e}"
    );
    assert_eq!(log_losses(&dir.join("straight")), log_losses(&resumed_dir));
}

#[test]
fn a_killed_rank_makes_the_other_fail_within_the_timeout() {
    let dir = setup("ddp-killed");
    let args = train_args(&dir, "out", 4, &["--max-steps", "100000"]);
    let mut ranks = spawn_ranks(&args, 2, "20");
    // Wait until the job trains (rank 0's log has a line), then kill rank 1 as `kill -9` would.
    let log = dir.join("out/train_log.jsonl");
    let started = Instant::now();
    while std::fs::read_to_string(&log).map_or(true, |t| t.is_empty()) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ranks[1].kill().expect("kill rank 1");
    let killed_at = Instant::now();
    let outs = wait_all(ranks, Duration::from_secs(90)).expect("ranks");
    let waited = killed_at.elapsed();
    assert_eq!(
        outs[0].status.code(),
        Some(1),
        "{}",
        common::stderr(&outs[0])
    );
    let err = common::stderr(&outs[0]);
    assert!(err.contains("distributed"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        waited < Duration::from_secs(60),
        "rank 0 took {waited:?} to fail"
    );
}

#[test]
fn torchrun_launches_convbert_train_as_it_is() {
    let Some(python) = std::env::var_os("CONVBERT_PYTHON") else {
        eprintln!("CONVBERT_PYTHON is not set: torchrun launch not checked");
        return;
    };
    let torchrun = Path::new(&python).with_file_name("torchrun");
    if !torchrun.exists() {
        eprintln!(
            "no torchrun beside {}: not checked",
            python.to_string_lossy()
        );
        return;
    }
    let dir = setup("ddp-torchrun");
    let steps = ["--max-steps", "4"];
    let single = run_alone(&train_args(&dir, "single", 8, &steps));
    assert!(single.status.success(), "{}", common::stderr(&single));
    let port = free_port().to_string();
    let child = Command::new(&torchrun)
        .args([
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            &port,
        ])
        .arg("--no-python")
        .arg(env!("CARGO_BIN_EXE_convbert"))
        .args(train_args(&dir, "ddp", 4, &steps))
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("torchrun");
    let out = wait_all(vec![child], Duration::from_secs(300))
        .expect("ranks")
        .remove(0);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let diff = max_weight_diff(&dir.join("single"), &dir.join("ddp"));
    assert!(
        diff < 1e-5,
        "torchrun 2 x batch 4 vs 1 x batch 8: weights off by {diff:e}"
    );
}

#[test]
fn a_job_that_cannot_be_joined_is_a_usage_error_naming_what_is_missing() {
    let dir = setup("ddp-usage");
    let args = train_args(&dir, "out", 4, &["--max-steps", "1", "--distributed"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::convbert(&refs, b"");
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("MASTER_ADDR"),
        "{}",
        common::stderr(&out)
    );
    if !cfg!(feature = "nccl") {
        let mut nccl = refs.clone();
        nccl.extend(["--ddp-backend", "nccl"]);
        let out = common::convbert(&nccl, b"");
        assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
        assert!(
            common::stderr(&out).contains("built without NCCL"),
            "{}",
            common::stderr(&out)
        );
    }
    assert!(!dir.join("out").exists(), "nothing is written");
}

/// fixtures/gen_ddp.py ran HF `Trainer` under torchrun (2 processes, Gloo) on these files: every
/// optimizer step averages the gradient over all 16 texts, so any dealing order gives the same
/// update, and `convbert train` with Trainer's arguments must end on Trainer's weights.
#[test]
fn two_ranks_end_on_the_weights_of_hf_trainer_under_torchrun() {
    let golden = PathBuf::from(common::fixture("ddp/trainer"));
    let a: Value =
        serde_json::from_str(&std::fs::read_to_string(golden.join("args.json")).expect("args"))
            .expect("json");
    let out = common::tmp("ddp-hf-trainer");
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("clean");
    }
    let path = |f: &str| golden.join(f).to_string_lossy().into_owned();
    let num = |k: &str| a[k].to_string();
    let args: Vec<String> = [
        "train".to_string(),
        "--task".into(),
        "text-classification".into(),
        "--model".into(),
        path("start"),
        "--tokenizer".into(),
        path("vocab.txt"),
        "--train".into(),
        path("train.jsonl"),
        "--output".into(),
        out.to_string_lossy().into_owned(),
        "--per-device-train-batch-size".into(),
        num("per_device_train_batch_size"),
        "--gradient-accumulation-steps".into(),
        num("gradient_accumulation_steps"),
        "--num-train-epochs".into(),
        num("num_train_epochs"),
        "--learning-rate".into(),
        num("learning_rate"),
        "--warmup-steps".into(),
        num("warmup_steps"),
        "--weight-decay".into(),
        num("weight_decay"),
        "--max-grad-norm".into(),
        num("max_grad_norm"),
        "--seed".into(),
        num("seed"),
        "--max-length".into(),
        num("max_length"),
        "--logging-steps".into(),
        "1".into(),
        "--threads".into(),
        "1".into(),
        "--no-progress".into(),
    ]
    .to_vec();
    run_ranks(&args, 2);
    let want = Tensor::read_safetensors(golden.join("final.safetensors")).expect("golden");
    let got: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(out.join("model.safetensors"))
            .expect("weights")
            .into_iter()
            .collect();
    let mut worst = (0.0f64, String::new());
    for (name, w) in &want {
        let g = got
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in our model"));
        let d = (g.to_kind(Kind::Double) - w.to_kind(Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        if d > worst.0 {
            worst = (d, name.clone());
        }
    }
    assert!(
        worst.0 < 1e-5,
        "weights off by {:e} at {}",
        worst.0,
        worst.1
    );
    // Trainer logs the loss rounded to 4 decimals, the gradient norm in full.
    let hf: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(golden.join("log.json")).expect("log"))
            .expect("json");
    let ours: Vec<Value> = std::fs::read_to_string(out.join("train_log.jsonl"))
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(ours.len(), hf.len());
    for (o, h) in ours.iter().zip(&hf) {
        assert_eq!(o["step"], h["step"]);
        let f = |v: &Value, k: &str| v[k].as_f64().expect(k);
        assert!((f(o, "loss") - f(h, "loss")).abs() <= 5e-5, "{o} vs {h}");
        assert!(
            (f(o, "grad_norm") - f(h, "grad_norm")).abs() < 1e-5,
            "{o} vs {h}"
        );
        assert!(
            (f(o, "learning_rate") - f(h, "learning_rate")).abs() < 1e-12,
            "{o} vs {h}"
        );
    }
    println!(
        "vs HF Trainer under torchrun: max |diff| weights {:.2e} ({})",
        worst.0, worst.1
    );
}
