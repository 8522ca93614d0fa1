//! Data-parallel step parity with HF Trainer's step under torchrun (fixtures/gen_ddp.py: 2
//! processes, Gloo, DistributedDataParallel with `no_sync` on accumulated micro-batches): two
//! processes of this test binary join a c10d group over 127.0.0.1, each takes its own
//! micro-batches, and both must end on the golden weights (≤ 1e-5) with the golden mean losses,
//! with the CPU's per-parameter AdamW and with libtorch's fused kernels forced.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use convbert_distributed::{DistEnv, ProcessGroup};
use convbert_heads::ConvBertForSequenceClassification;
use convbert_testing::processes::{free_port, wait_all};
use convbert_train::{AdamW, AdamWConfig, DataParallel, LinearSchedule, Warmup};
use tch::{Device, Kind, Tensor};

const ROLE: &str = "CONVBERT_DDP_TEST_SCENARIO";
const TOL: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Runs this test binary's `test` as `world` ranks of one job; panics unless all succeed
/// within the time limit. Returns their outputs.
fn launch(test: &str, role: &str, world: usize) -> Vec<String> {
    let port = free_port().to_string();
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(&exe)
                .args([test, "--exact", "--nocapture", "--test-threads", "1"])
                .env(ROLE, role)
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn rank")
        })
        .collect();
    wait_all(children, Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("the ranks of {role}: {e}"))
        .into_iter()
        .enumerate()
        .map(|(rank, out)| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "rank {rank} of {role} failed:\n{text}"
            );
            text
        })
        .collect()
}

/// One rank: the scenario's steps on this rank's micro-batches, checked against the golden.
fn rank_worker(scenario: &str, fused: bool) {
    let dir = fixtures().join("ddp");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let hp = &manifest[scenario];
    let golden: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(dir.join(format!("{scenario}.safetensors")))
            .expect("golden")
            .into_iter()
            .collect();
    let env = DistEnv::from_env().expect("env");
    assert_eq!(
        env.world_size as u64,
        hp["world_size"].as_u64().expect("world")
    );
    let rank = env.rank;
    let dp = DataParallel::new(ProcessGroup::new(&env, Duration::from_secs(60)).expect("group"));
    let model = ConvBertForSequenceClassification::from_pretrained(
        fixtures().join("train/checkpoint"),
        Device::Cpu,
        Kind::Float,
    )
    .expect("checkpoint");
    let config = AdamWConfig {
        weight_decay: hp["weight_decay"].as_f64().expect("wd"),
        fused: Some(fused),
        ..AdamWConfig::default()
    };
    let mut optimizer = AdamW::new(model.var_store(), config).expect("optimizer");
    let num = |k: &str| hp[k].as_f64().expect(k);
    let schedule = LinearSchedule::new(
        num("lr"),
        Warmup::Steps(num("warmup_steps") as usize),
        num("total_steps") as usize,
    );
    let (accumulation, world) = (num("accumulation") as usize, env.world_size);
    for step in 0..num("steps") as usize {
        let outcome = dp
            .optimizer_step(
                &mut optimizer,
                schedule.lr(step),
                accumulation,
                num("max_grad_norm"),
                step,
                |micro| {
                    let k = (step * accumulation + micro) * world + rank;
                    common::golden_micro_batch_loss(&model, &golden, k)
                },
            )
            .expect("step");
        let want = |k: &str| golden[k].double_value(&[step as i64]);
        let loss_diff = (outcome.loss - want("out.loss")).abs();
        let norm_diff = (outcome.grad_norm - want("out.grad_norm")).abs();
        assert!(
            loss_diff < TOL,
            "rank {rank} step {step}: mean loss off by {loss_diff:e}"
        );
        assert!(
            norm_diff < TOL,
            "rank {rank} step {step}: grad norm off by {norm_diff:e}"
        );
        assert!((outcome.lr - want("out.lr")).abs() < 1e-15);
    }
    let lr = num("lr");
    let mut worst = (0.0f64, String::new());
    let vars = model.var_store().variables();
    for (key, want) in golden.iter().filter(|(k, _)| k.starts_with("param.")) {
        let got = &vars[&key["param.".len()..]];
        let d = (got.to_kind(Kind::Double) - want.to_kind(Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        if key.ends_with("attention.self.key.bias") {
            // A zero gradient but for rounding noise, scaled by Adam (see step_parity.rs).
            assert!(d < 0.2 * lr * num("steps"), "{key} moved by {d:e}");
        } else if d > worst.0 {
            worst = (d, key.clone());
        }
    }
    assert!(
        worst.0 < TOL,
        "rank {rank}: weights off by {:e} at {}",
        worst.0,
        worst.1
    );
    println!(
        "rank {rank} {scenario} (fused {fused}): max |diff| weights {:.2e} ({})",
        worst.0, worst.1
    );
}

/// `fused`: libtorch's fused AdamW kernels instead of the CPU's per-parameter update.
fn run_or_launch(test: &str, scenario: &str, fused: bool) {
    let role = if fused {
        format!("{scenario}+fused")
    } else {
        scenario.to_string()
    };
    match std::env::var(ROLE) {
        Ok(s) if s == role => rank_worker(scenario, fused),
        Ok(_) => {}
        Err(_) => {
            for out in launch(test, &role, 2) {
                print!("{out}");
            }
        }
    }
}

#[test]
fn two_ranks_with_accumulation_match_hf_ddp() {
    run_or_launch(
        "two_ranks_with_accumulation_match_hf_ddp",
        "ddp_accumulated",
        false,
    );
}

#[test]
fn two_ranks_with_clipping_match_hf_ddp() {
    run_or_launch("two_ranks_with_clipping_match_hf_ddp", "ddp_clipped", false);
}

#[test]
fn two_ranks_with_fused_adamw_and_accumulation_match_hf_ddp() {
    run_or_launch(
        "two_ranks_with_fused_adamw_and_accumulation_match_hf_ddp",
        "ddp_accumulated",
        true,
    );
}

#[test]
fn two_ranks_with_fused_adamw_and_clipping_match_hf_ddp() {
    run_or_launch(
        "two_ranks_with_fused_adamw_and_clipping_match_hf_ddp",
        "ddp_clipped",
        true,
    );
}
