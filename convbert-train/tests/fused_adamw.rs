//! libtorch's fused multi-tensor AdamW (`AdamWConfig::fused`, forced here on the CPU) against the
//! per-parameter update: the same steps with decay groups, clipping and accumulation, and an
//! optimizer state that round-trips between the two (int64 step counters). On a GPU with
//! `CONVBERT_TEST_DEVICE=cuda` (1e-5 there: the op-by-op update rounds differently).

mod common;

use std::collections::BTreeMap;

use common::test_device;
use convbert_train::{optimizer_step, AdamW, AdamWConfig, LinearSchedule, Warmup};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The tests draw from libtorch's global generator: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const NAMES: [&str; 4] = [
    "dense.weight",
    "dense.bias",
    "LayerNorm.weight",
    "embeddings.weight",
];

/// A store with one decayed and three other shapes, the same values for every `seed`.
fn store(seed: i64) -> VarStore {
    tch::manual_seed(seed);
    let vs = VarStore::new(test_device());
    let shapes: [&[i64]; 4] = [&[64, 48], &[64], &[48], &[500, 48]];
    for (name, shape) in NAMES.iter().zip(shapes) {
        let init = Tensor::randn(shape, (Kind::Float, Device::Cpu)).to_device(test_device());
        let (module, leaf) = name.split_once('.').expect("module.leaf");
        let _ = (vs.root() / module).var_copy(leaf, &init);
    }
    vs
}

fn optimizer(vs: &VarStore, fused: bool) -> AdamW {
    let config = AdamWConfig {
        weight_decay: 0.1,
        fused: Some(fused),
        ..AdamWConfig::default()
    };
    AdamW::new(vs, config).expect("adamw")
}

/// `steps` optimizer steps from `first` of 2 accumulated micro-batches each, clipped at 1.
fn train(vs: &VarStore, opt: &mut AdamW, first: usize, steps: usize) -> Vec<f64> {
    let vars = vs.variables();
    let schedule = LinearSchedule::new(1e-2, Warmup::Steps(2), 12);
    let mut norms = Vec::new();
    for step in first..first + steps {
        let out = optimizer_step(opt, schedule.lr(step), 2, 1.0, step, |micro| {
            tch::manual_seed((100 * step + micro) as i64);
            let mut loss = Tensor::zeros([], (Kind::Float, test_device()));
            for name in NAMES {
                let p = &vars[name];
                let target =
                    Tensor::randn(p.size(), (Kind::Float, Device::Cpu)).to_device(p.device());
                loss += (p.sin() - target).square().mean(Kind::Float);
            }
            Ok(loss)
        })
        .expect("step");
        norms.push(out.grad_norm);
    }
    norms
}

fn tol() -> f64 {
    if test_device().is_cuda() {
        1e-5
    } else {
        1e-6
    }
}

fn max_diff(a: &VarStore, b: &VarStore) -> f64 {
    let (a, b) = (a.variables(), b.variables());
    NAMES
        .iter()
        .map(|n| {
            (&a[*n] - &b[*n])
                .abs()
                .max()
                .to_device(Device::Cpu)
                .double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn fused_kernels_take_the_per_parameter_steps() {
    let _serial = serial();
    let (vs_f, vs_p) = (store(0), store(0));
    let (mut fused, mut plain) = (optimizer(&vs_f, true), optimizer(&vs_p, false));
    assert!(fused.is_fused() && !plain.is_fused());
    let norms_f = train(&vs_f, &mut fused, 0, 6);
    let norms_p = train(&vs_p, &mut plain, 0, 6);
    let d = max_diff(&vs_f, &vs_p);
    println!("6 steps: max |fused - per-parameter| weights {d:.2e}");
    assert!(d <= tol(), "weights differ by {d:e}");
    assert!(max_diff(&vs_f, &store(0)) > 1e-2, "the weights moved");
    for (a, b) in norms_f.iter().zip(&norms_p) {
        assert!((a - b).abs() <= tol() * b, "grad norm {a} vs {b}");
    }
}

#[test]
fn state_round_trips_between_fused_and_per_parameter_updates() {
    let _serial = serial();
    // Reference: 5 uninterrupted fused steps.
    let vs_ref = store(1);
    let mut reference = optimizer(&vs_ref, true);
    train(&vs_ref, &mut reference, 0, 5);
    // 3 fused steps, the state saved as a checkpoint holds it, then resumed by either update.
    let vs_a = store(1);
    let mut a = optimizer(&vs_a, true);
    train(&vs_a, &mut a, 0, 3);
    let state: BTreeMap<String, Tensor> = a.state_tensors().expect("state").into_iter().collect();
    for name in NAMES {
        let step = &state[&format!("step.{name}")];
        assert_eq!((step.kind(), step.int64_value(&[])), (Kind::Int64, 3));
    }
    for fused in [true, false] {
        let vs_b = store(2);
        tch::no_grad(|| {
            for (name, t) in vs_b.variables() {
                t.shallow_clone().copy_(&vs_a.variables()[&name]);
            }
        });
        let mut b = optimizer(&vs_b, fused);
        b.load_state(&state).expect("load");
        train(&vs_b, &mut b, 3, 2);
        let d = max_diff(&vs_b, &vs_ref);
        println!("resumed (fused {fused}): max |diff| to uninterrupted {d:.2e}");
        assert!(d <= tol(), "fused {fused}: {d:e}");
        let steps = b.state_tensors().expect("state");
        let step = &steps
            .iter()
            .find(|(n, _)| n == "step.dense.weight")
            .expect("step")
            .1;
        assert_eq!(step.int64_value(&[]), 5);
    }
}
