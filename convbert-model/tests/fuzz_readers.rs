//! Fuzz-style properties of the readers of untrusted bytes: the `data.pkl` pickle reader
//! (inside a torch zip), the safetensors header reader, the `tf_model.h5` (HDF5) reader and the
//! TF1 tensor-bundle index reader. On arbitrary bytes and on mutations (truncation, byte flips,
//! insertions) of a valid small file, opening — and reading every tensor of what opens —
//! returns `Ok` or an error, never panics or aborts.
//!
//! 256 cases per property run by default; the long run (100k cases each) is
//! `cargo test --release -p convbert-model --test fuzz_readers -- --ignored`.

mod common;

use std::path::{Path, PathBuf};

use common::crafted::{f32_bytes, state_dict_pickle, tmp_dir, torch_zip, CraftedTensor};
use common::fixtures;
use convbert_model::Weights;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestRunner};
use tch::{Device, Kind, Tensor};

const SHORT: u32 = 256;
const LONG: u32 = 100_000;

/// Opens `path` and reads every tensor; errors are fine, panics fail the property.
fn open_and_read(path: &Path) {
    if let Ok(w) = Weights::open(path) {
        for name in w.names() {
            let _ = w.tensor(name, Kind::Float, Device::Cpu);
        }
    }
}

/// Truncation, byte flips and insertions applied to a valid file.
#[derive(Debug, Clone)]
struct Mutation {
    flips: Vec<(Index, u8)>,
    inserts: Vec<(Index, u8)>,
    truncate: Option<Index>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        vec((any::<Index>(), 1..=255u8), 0..8),
        vec((any::<Index>(), any::<u8>()), 0..3),
        proptest::option::weighted(0.3, any::<Index>()),
    )
        .prop_map(|(flips, inserts, truncate)| Mutation {
            flips,
            inserts,
            truncate,
        })
}

impl Mutation {
    fn apply(&self, valid: &[u8]) -> Vec<u8> {
        let mut bytes = valid.to_vec();
        for (at, xor) in &self.flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        for (at, b) in &self.inserts {
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, *b);
        }
        if let Some(at) = &self.truncate {
            bytes.truncate(at.index(bytes.len() + 1));
        }
        bytes
    }
}

/// Runs `check` on `cases` values of `strategy`; a panic is reported with the shrunk input.
fn run<S: Strategy>(cases: u32, strategy: S, check: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, |v| {
        check(v);
        Ok(())
    }) {
        panic!("{e}");
    }
}

fn valid_pickle() -> Vec<u8> {
    state_dict_pickle(&[
        CraftedTensor {
            name: "encoder.weight",
            storage_key: "0",
            offset: 2,
            size: &[2, 3],
            stride: &[3, 1],
        },
        CraftedTensor {
            name: "encoder.bias",
            storage_key: "1",
            offset: 0,
            size: &[4],
            stride: &[1],
        },
    ])
}

fn storages() -> Vec<(&'static str, Vec<u8>)> {
    vec![("0", f32_bytes(8)), ("1", f32_bytes(4))]
}

/// The pickle wrapped in a valid zip next to valid storages, written to `path`.
fn write_bin_with_pickle(path: &Path, pkl: &[u8]) {
    let storages = storages();
    let refs: Vec<(&str, &[u8])> = storages.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    std::fs::write(path, torch_zip(pkl, &refs)).unwrap();
}

fn valid_safetensors() -> Vec<u8> {
    let dir = tmp_dir("fuzz-valid-st");
    let path = dir.join("model.safetensors");
    let tensors = [
        (
            "encoder.weight",
            Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]),
        ),
        (
            "encoder.bias",
            Tensor::arange(4, (Kind::Int64, Device::Cpu)),
        ),
    ];
    Tensor::write_safetensors(&tensors, &path).unwrap();
    std::fs::read(&path).unwrap()
}

/// Opcodes of the pickle reader (and some it refuses), mixed with arbitrary bytes: sequences
/// of these reach far deeper into the interpreter than uniform bytes.
const OPCODES: &[u8] = &[
    0x80, 0x95, b'.', b'(', b'}', b']', b')', b'N', 0x88, 0x89, b'K', b'M', b'J', 0x8a, b'G', b'X',
    0x8c, 0x8d, b'U', b'C', b'T', b'B', b'c', 0x93, b'q', b'r', 0x94, b'h', b'j', b't', 0x85, 0x86,
    0x87, b'l', b'a', b'e', b'd', b's', b'u', b'Q', b'R', 0x81, b'b', b'0', b'1', b'2', 0x8b, 0x8f,
    0x90, b'I',
];

fn pickle_properties(cases: u32, name: &str) {
    let dir = tmp_dir(name);
    let path: PathBuf = dir.join("pytorch_model.bin");
    // The control: the unmutated file opens and every tensor reads.
    write_bin_with_pickle(&path, &valid_pickle());
    assert_eq!(Weights::open(&path).unwrap().len(), 2);

    run(cases, vec(any::<u8>(), 0..1024), |pkl| {
        write_bin_with_pickle(&path, &pkl);
        open_and_read(&path);
    });
    let op_or_byte = prop_oneof![3 => select(OPCODES), 1 => any::<u8>()];
    run(cases, vec(op_or_byte, 0..512), |pkl| {
        write_bin_with_pickle(&path, &pkl);
        open_and_read(&path);
    });
    let valid = valid_pickle();
    run(cases, mutation(), |m| {
        write_bin_with_pickle(&path, &m.apply(&valid));
        open_and_read(&path);
    });
    // Mutations of the whole archive (zip structure, storages and pickle together).
    let storages = storages();
    let refs: Vec<(&str, &[u8])> = storages.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let archive = torch_zip(&valid, &refs);
    run(cases, mutation(), |m| {
        std::fs::write(&path, m.apply(&archive)).unwrap();
        open_and_read(&path);
    });
}

fn safetensors_properties(cases: u32, name: &str) {
    let dir = tmp_dir(name);
    let path = dir.join("model.safetensors");
    let valid = valid_safetensors();
    std::fs::write(&path, &valid).unwrap();
    assert_eq!(Weights::open(&path).unwrap().len(), 2);

    run(cases, vec(any::<u8>(), 0..1024), |bytes| {
        std::fs::write(&path, bytes).unwrap();
        open_and_read(&path);
    });
    // A valid 8-byte length in front of an arbitrary header.
    run(cases, vec(any::<u8>(), 0..512), |header| {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header);
        std::fs::write(&path, bytes).unwrap();
        open_and_read(&path);
    });
    run(cases, mutation(), |m| {
        std::fs::write(&path, m.apply(&valid)).unwrap();
        open_and_read(&path);
    });
    // Mutations inside the JSON header only (the data stays a valid size).
    let header_end = 8 + u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    run(cases, vec((8..header_end, 1..=255u8), 1..6), |flips| {
        let mut bytes = valid.clone();
        for (i, xor) in flips {
            bytes[i] ^= xor;
        }
        std::fs::write(&path, bytes).unwrap();
        open_and_read(&path);
    });
}

/// The smallest valid `tf_model.h5` of the fixtures (the base model, 150 KB).
fn valid_h5() -> Vec<u8> {
    let path = fixtures().join("../tf/base/model/checkpoint/tf_model.h5");
    std::fs::read(path).unwrap()
}

fn h5_properties(cases: u32, name: &str) {
    let dir = tmp_dir(name);
    let path = dir.join("tf_model.h5");
    let valid = valid_h5();
    std::fs::write(&path, &valid).unwrap();
    assert!(!Weights::open(&path).unwrap().is_empty());

    // Arbitrary bytes behind a valid HDF5 signature, so the superblock parser is reached.
    run(cases, vec(any::<u8>(), 0..1024), |tail| {
        let mut bytes = b"\x89HDF\r\n\x1a\n".to_vec();
        bytes.extend(tail);
        std::fs::write(&path, bytes).unwrap();
        open_and_read(&path);
    });
    run(cases, mutation(), |m| {
        std::fs::write(&path, m.apply(&valid)).unwrap();
        open_and_read(&path);
    });
    // Flips in the first 4 KB, where the superblock, root group and object headers lie.
    let head = valid.len().min(4096);
    run(cases, vec((0..head, 1..=255u8), 1..6), |flips| {
        let mut bytes = valid.clone();
        for (i, xor) in flips {
            bytes[i] ^= xor;
        }
        std::fs::write(&path, bytes).unwrap();
        open_and_read(&path);
    });
}

/// Mutations of a TF1 checkpoint's `.index` (LevelDB table of BundleEntryProtos) beside its
/// valid data shards.
fn tf1_index_properties(cases: u32, name: &str) {
    let src = fixtures().join("../tf/tf1/checkpoint");
    let dir = tmp_dir(name);
    for entry in std::fs::read_dir(&src).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(&from, dir.join(from.file_name().unwrap())).unwrap();
    }
    let path = dir.join("model.ckpt-7.index");
    let valid = std::fs::read(&path).unwrap();
    assert!(!Weights::open(&path).unwrap().is_empty());

    run(cases, vec(any::<u8>(), 0..1024), |bytes| {
        std::fs::write(&path, bytes).unwrap();
        open_and_read(&path);
    });
    run(cases, mutation(), |m| {
        std::fs::write(&path, m.apply(&valid)).unwrap();
        open_and_read(&path);
    });
}

#[test]
fn pickle_reader_never_panics() {
    pickle_properties(SHORT, "fuzz-pickle");
}

#[test]
fn safetensors_reader_never_panics() {
    safetensors_properties(SHORT, "fuzz-safetensors");
}

#[test]
fn h5_reader_never_panics() {
    h5_properties(SHORT, "fuzz-h5");
}

#[test]
fn tf1_index_reader_never_panics() {
    tf1_index_properties(SHORT, "fuzz-tf1");
}

#[test]
#[ignore = "long fuzz run: cargo test --release -p convbert-model --test fuzz_readers -- --ignored"]
fn pickle_reader_never_panics_long() {
    pickle_properties(LONG, "fuzz-pickle-long");
}

#[test]
#[ignore = "long fuzz run: cargo test --release -p convbert-model --test fuzz_readers -- --ignored"]
fn safetensors_reader_never_panics_long() {
    safetensors_properties(LONG, "fuzz-safetensors-long");
}

#[test]
#[ignore = "long fuzz run: cargo test --release -p convbert-model --test fuzz_readers -- --ignored"]
fn h5_reader_never_panics_long() {
    h5_properties(LONG, "fuzz-h5-long");
}

#[test]
#[ignore = "long fuzz run: cargo test --release -p convbert-model --test fuzz_readers -- --ignored"]
fn tf1_index_reader_never_panics_long() {
    tf1_index_properties(LONG, "fuzz-tf1-long");
}
