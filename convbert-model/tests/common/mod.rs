//! Helpers shared by the integration tests: golden files and element-wise comparison.
#![allow(dead_code)]

pub mod crafted;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

/// `fixtures/model` of the workspace.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
        .join("model")
}

/// Device of the parity tests: `CONVBERT_TEST_DEVICE=cuda` (or `cuda:N`) runs them on a GPU.
pub fn device() -> Device {
    let name = std::env::var("CONVBERT_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    convbert_model::parse_device(&name).expect("CONVBERT_TEST_DEVICE: cpu, cuda or cuda:N")
}

/// `cpu` on the CPU; at least 1e-4 on a GPU, whose kernels sum in other orders.
pub fn tol(cpu: f64) -> f64 {
    if device().is_cuda() {
        cpu.max(1e-4)
    } else {
        cpu
    }
}

/// Every tensor of a golden run file, by name, on [`device`].
pub fn read_run(case: &str, run: &str) -> BTreeMap<String, Tensor> {
    let path = fixtures()
        .join(case)
        .join("runs")
        .join(format!("{run}.safetensors"));
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .map(|(k, t)| (k, t.to_device(device())))
        .collect()
}

/// Max |got - expected| and the worst element's (index, got, expected).
pub fn worst(got: &Tensor, expected: &Tensor) -> (f64, Vec<i64>, f64, f64) {
    assert_eq!(got.size(), expected.size(), "shape differs");
    let got = got.to_device(Device::Cpu).to_kind(Kind::Double);
    let expected = expected.to_device(Device::Cpu).to_kind(Kind::Double);
    let diff = (&got - &expected).abs().flatten(0, -1);
    if diff.numel() == 0 {
        return (0.0, vec![], 0.0, 0.0);
    }
    let flat = diff.argmax(0, false).int64_value(&[]);
    let max = diff.double_value(&[flat]);
    let mut index = vec![0; got.dim()];
    let mut rest = flat;
    for (d, size) in got.size().iter().enumerate().rev() {
        index[d] = rest % size;
        rest /= size;
    }
    let g = got.flatten(0, -1).double_value(&[flat]);
    let e = expected.flatten(0, -1).double_value(&[flat]);
    (max, index, g, e)
}

/// Panics with the worst element when any |got - expected| > tol; returns the max diff.
pub fn assert_close(what: &str, got: &Tensor, expected: &Tensor, tol: f64) -> f64 {
    let (max, index, g, e) = worst(got, expected);
    assert!(
        max <= tol && !max.is_nan(),
        "{what}: max |diff| {max:.3e} > {tol:.0e} at {index:?}: got {g}, expected {e}"
    );
    max
}

/// Cosine similarity of two tensors flattened, in f64.
pub fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let a = a
        .to_device(Device::Cpu)
        .to_kind(Kind::Double)
        .flatten(0, -1);
    let b = b
        .to_device(Device::Cpu)
        .to_kind(Kind::Double)
        .flatten(0, -1);
    let dot = (&a * &b).sum(Kind::Double).double_value(&[]);
    dot / (a.norm().double_value(&[]) * b.norm().double_value(&[]))
}
